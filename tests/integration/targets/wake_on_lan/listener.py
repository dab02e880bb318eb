# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""UDP listener for the wake_on_lan target: one JSON line per datagram received.

Usage: python listener.py LOG READY PORT [PORT...]  (runs until SIGTERM)
Listens on 0.0.0.0 and [::] on each port, with SO_BROADCAST, as a sleeping
machine's NIC would see any magic packet on its link.
"""

from __future__ import annotations

import json
import selectors
import signal
import socket
import sys
import time


def main(log_path, ready_path, ports):
    selector = selectors.DefaultSelector()
    for port in ports:
        v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        v4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        v4.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        v4.bind(("0.0.0.0", port))
        selector.register(v4, selectors.EVENT_READ, ("ipv4", port))
        v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        v6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        v6.bind(("::", port))
        selector.register(v6, selectors.EVENT_READ, ("ipv6", port))
    running = [True]
    signal.signal(signal.SIGTERM, lambda *args: running.__setitem__(0, False))
    with open(ready_path, "w", encoding="utf-8") as ready:
        ready.write("ready\n")
    with open(log_path, "a", encoding="utf-8") as log:
        while running[0]:
            for key, dummy in selector.select(timeout=0.2):
                data, source = key.fileobj.recvfrom(65535)
                family, port = key.data
                log.write(json.dumps(dict(time=time.time(), family=family, port=port, source=source[0], hex=data.hex())) + "\n")
                log.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], [int(port) for port in sys.argv[3:]])
