# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Packet loss and reordering on one machine's link, in user space: what `tc qdisc ... netem` would do.

    impair.py TAP LISTEN_PORT QEMU_PORT STATS_FILE [LOSS] [REORDER] [SEED]

This kernel is built without sch_netem (CONFIG_NET_SCH_NETEM is not set, and there is no module
to load), so the link itself is impaired instead: QEMU's NIC is a `-netdev dgram` endpoint on
loopback, and this relay moves every Ethernet frame between it and the machine's tap on the lab
bridge. Each frame, in either direction, is dropped with probability LOSS (default 0.10); of the
rest, a share REORDER (default 0.25) is held back and sent after the next frame of the same
direction (or after 20 ms when none comes), so it arrives out of order. Seeded, counted, and
written to STATS_FILE on SIGTERM or exit.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
HOLD_SECONDS = 0.02


def open_tap(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


class Direction:
    """One way of the link: drop, hold back (reorder) or pass each frame."""

    def __init__(self, name, send, loss, reorder, rng):
        self.name = name
        self.send = send
        self.loss = loss
        self.reorder = reorder
        self.rng = rng
        self.held = None
        self.held_at = 0.0
        self.stats = {"frames": 0, "dropped": 0, "reordered": 0, "passed": 0}

    def frame(self, data):
        self.stats["frames"] += 1
        if self.rng.random() < self.loss:
            self.stats["dropped"] += 1
            return
        if self.held is None and self.rng.random() < self.reorder:
            self.held, self.held_at = data, time.monotonic()
            return
        self._send(data)
        if self.held is not None:       # the held frame goes after this later one: reordered
            self.stats["reordered"] += 1
            self._send(self.held)
            self.held = None

    def flush_if_due(self, now):
        if self.held is not None and now - self.held_at >= HOLD_SECONDS:
            self._send(self.held)       # nothing overtook it: merely delayed
            self.held = None

    def _send(self, data):
        try:
            self.send(data)
            self.stats["passed"] += 1
        except OSError:
            self.stats["dropped"] += 1


def main():
    tap_name, listen_port, qemu_port, stats_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    loss = float(sys.argv[5]) if len(sys.argv) > 5 else 0.10
    reorder = float(sys.argv[6]) if len(sys.argv) > 6 else 0.25
    rng = random.Random(int(sys.argv[7]) if len(sys.argv) > 7 else 6)
    tap = open_tap(tap_name)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", listen_port))
    udp.setblocking(False)
    qemu = ("127.0.0.1", qemu_port)
    to_machine = Direction("to_machine", lambda data: udp.sendto(data, qemu), loss, reorder, rng)
    from_machine = Direction("from_machine", lambda data: os.write(tap, data), loss, reorder, rng)
    running = [True]

    def write_stats(*dummy):
        running[0] = False

    signal.signal(signal.SIGTERM, write_stats)
    signal.signal(signal.SIGINT, write_stats)
    started = time.time()
    while running[0]:
        try:
            ready, dummy, dummy2 = select.select([tap, udp], [], [], HOLD_SECONDS / 2)
        except InterruptedError:
            continue
        if tap in ready:
            try:
                to_machine.frame(os.read(tap, 65536))
            except BlockingIOError:
                pass
        if udp in ready:
            try:
                from_machine.frame(udp.recv(65536))
            except BlockingIOError:
                pass
        now = time.monotonic()
        to_machine.flush_if_due(now)
        from_machine.flush_if_due(now)
    stats = {"loss": loss, "reorder": reorder, "seconds": round(time.time() - started, 1),
             "to_machine": to_machine.stats, "from_machine": from_machine.stats}
    with open(stats_path, "w", encoding="utf-8") as handle:
        json.dump(stats, handle)


if __name__ == "__main__":
    main()
