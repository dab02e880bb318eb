# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wake-on-LAN for libvirt domains: a UDP listener that powers a domain on when its magic packet arrives.

It plays the part of the machines' NICs in the lab. Run it in a namespace
attached to the lab bridge (``nixielab.libvirt`` uses its "wol" namespace,
10.N.0.3, behind a veth on br0), so a magic packet sent by the controller
really crosses the bridge::

    ip netns exec NS python -m nixielab.wol_listener --uri URI --log wol.jsonl [--port 9 --port 7]

A magic packet is 6 x 0xFF then the target MAC 16 times, optionally followed
by a SecureOn password of 4 or 6 bytes; anything else is logged as
``malformed`` and ignored. The MAC is looked up among the domains of the
libvirt at ``--uri`` (their NICs, as ``virsh domiflist`` lists them) at each
packet, so domains defined after the listener started are known too; an
unknown MAC is logged and ignored. A known domain that is shut off is started
(``virsh start``); one that is already running is left alone, as a powered-on
machine ignores WoL. ``--secureon XX:XX:XX:XX:XX:XX`` makes the listener
require that password.

Every datagram and every action is one JSON object per line in ``--log``:
``{"time", "event": "packet", "src", "port", "length", "verdict", "mac", "secureon"}``
and ``{"time", "event": "action", "mac", "domain", "action": "start|none", "state_before", "ok", "error"}``.
Ends on SIGTERM/SIGINT (stop it by PID).
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SYNC = b"\xff" * 6


def format_mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def parse_magic(payload: bytes) -> tuple[str, str | None] | None:
    """(mac, secureon or None) for a magic packet, or None when it is not one.

    Accepted lengths: 102 (no password), 106 or 108 (SecureOn, 4 or 6 bytes).
    The MAC must not be the broadcast or an all-zero address.
    """
    if len(payload) not in (102, 106, 108) or not payload.startswith(SYNC):
        return None
    mac = payload[6:12]
    if payload[6:102] != mac * 16 or mac in (b"\xff" * 6, b"\x00" * 6):
        return None
    password = payload[102:]
    return format_mac(mac), (format_mac(password) if password else None)


class Libvirt:
    """The few virsh calls the listener needs."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def virsh(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["virsh", "-q", "-c", self.uri, *args], capture_output=True, text=True,
                              check=False, timeout=60)

    def domain_for_mac(self, mac: str) -> str | None:
        names = self.virsh("list", "--all", "--name").stdout.split()
        for name in names:
            for line in self.virsh("domiflist", name).stdout.splitlines():
                fields = line.split()
                if fields and fields[-1].lower() == mac:
                    return name
        return None

    def state(self, name: str) -> str:
        return self.virsh("domstate", name).stdout.strip()

    def start(self, name: str) -> subprocess.CompletedProcess:
        return self.virsh("start", name)


class Listener:
    def __init__(self, libvirt: Libvirt, log: Path, ports: list[int], *, secureon: str | None = None,
                 bind4: str = "0.0.0.0", bind6: str | None = "::") -> None:
        self.libvirt = libvirt
        self.log_path = log
        self.ports = ports
        self.secureon = secureon.lower() if secureon else None
        self.bind4 = bind4
        self.bind6 = bind6
        self.selector = selectors.DefaultSelector()
        self.stopping = False

    def log(self, record: dict) -> None:
        record = {"time": round(time.time(), 3), **record}
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def open_sockets(self) -> None:
        for port in self.ports:
            s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s4.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            s4.bind((self.bind4, port))
            self.selector.register(s4, selectors.EVENT_READ, port)
            if self.bind6 is not None and socket.has_ipv6:
                try:
                    s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s6.bind((self.bind6, port))
                except OSError:
                    continue
                self.selector.register(s6, selectors.EVENT_READ, port)

    def handle(self, payload: bytes, src: str, port: int) -> None:
        parsed = parse_magic(payload)
        record = {"event": "packet", "src": src, "port": port, "length": len(payload)}
        if parsed is None:
            self.log({**record, "verdict": "malformed"})
            return
        mac, password = parsed
        if self.secureon is not None and password != self.secureon:
            self.log({**record, "verdict": "bad_secureon", "mac": mac, "secureon": password})
            return
        domain = self.libvirt.domain_for_mac(mac)
        if domain is None:
            self.log({**record, "verdict": "unknown_mac", "mac": mac, "secureon": password})
            return
        self.log({**record, "verdict": "magic", "mac": mac, "secureon": password, "domain": domain})
        before = self.libvirt.state(domain)
        if before == "running":
            self.log({"event": "action", "mac": mac, "domain": domain, "action": "none",
                      "state_before": before, "ok": True, "error": None})
            return
        result = self.libvirt.start(domain)
        self.log({"event": "action", "mac": mac, "domain": domain, "action": "start", "state_before": before,
                  "ok": result.returncode == 0, "error": (result.stderr.strip() or None) if result.returncode else None})

    def run(self, ready: Path | None = None) -> None:
        self.open_sockets()
        self.log({"event": "listening", "ports": self.ports, "pid": os.getpid(), "uri": self.libvirt.uri})
        if ready is not None:
            ready.write_text(str(os.getpid()))
        while not self.stopping:
            for key, dummy in self.selector.select(timeout=0.5):
                try:
                    payload, addr = key.fileobj.recvfrom(2048)
                except OSError:
                    continue
                self.handle(payload, addr[0], key.data)
        self.log({"event": "stopped", "pid": os.getpid()})

    def stop(self, *dummy) -> None:
        self.stopping = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nixielab.wol_listener", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--uri", required=True, help="libvirt URI, e.g. qemu+unix:///system?socket=/path/libvirt-sock")
    parser.add_argument("--log", required=True, type=Path, help="JSON-lines log of packets and actions")
    parser.add_argument("--port", type=int, action="append", help="UDP port (repeatable; default 9 and 7)")
    parser.add_argument("--ready", type=Path, help="file written (with the PID) once the sockets are bound")
    parser.add_argument("--secureon", help="require this SecureOn password (6 bytes, colon-separated)")
    parser.add_argument("--no-ipv6", action="store_true")
    args = parser.parse_args(argv)
    listener = Listener(Libvirt(args.uri), args.log, args.port or [9, 7], secureon=args.secureon,
                        bind6=None if args.no_ipv6 else "::")
    signal.signal(signal.SIGTERM, listener.stop)
    signal.signal(signal.SIGINT, listener.stop)
    listener.run(args.ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
