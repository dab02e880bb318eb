# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Packet loss and reordering on one machine's link, in user space: what `tc qdisc ... netem` would do.

    impair.py TAP LISTEN_PORT QEMU_PORT STATS_FILE [LOSS] [REORDER] [SEED] [CAPTURE_PREFIX]

This kernel is built without sch_netem (CONFIG_NET_SCH_NETEM is not set, and there is no module
to load), so the link itself is impaired instead: QEMU's NIC is a `-netdev dgram` endpoint on
loopback, and this relay moves every Ethernet frame between it and the machine's tap on the lab
bridge. Each frame, in either direction, is dropped with probability LOSS (default 0.10); of the
rest, a share REORDER (default 0.25) is held back and sent after the next frame of the same
direction (or after 20 ms when none comes), so it arrives out of order.

Each flow of each direction draws from its own generator, seeded with SEED, the direction and the
flow (ARP; or the IP protocol, the IPv4 addresses and the lower of the two ports: the site's DHCP
answers, ours, HTTP on 8080, ...), so the n-th frame of our DHCP answers towards the machine meets
the same fate in every run with that seed, whatever the other traffic on the bridge does in between.
Counted, and written to STATS_FILE on SIGTERM or exit. With CAPTURE_PREFIX, both sides of the link
are kept as pcap files: PREFIX-machine.pcap (what the machine sent and what reached it) and
PREFIX-bridge.pcap (what the bridge sent and what reached it), so a lost frame is the one in the
sender's file that is missing from the other.
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
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)   # classic pcap, Ethernet


def open_tap(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


class Pcap:
    """Frames written as they pass, flushed at once: a relay killed mid-boot still leaves its capture."""

    def __init__(self, path):
        self.handle = open(path, "wb") if path else None   # pylint: disable=consider-using-with
        if self.handle:
            self.handle.write(PCAP_HEADER)

    def write(self, data):
        if self.handle:
            now = time.time()
            self.handle.write(struct.pack("<IIII", int(now), int(now % 1 * 1e6), len(data), len(data)) + data)
            self.handle.flush()


def flow(frame):
    """What a frame belongs to, without what differs from run to run (addresses, ephemeral ports)."""
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == 0x0800 and len(frame) >= 34:
        # The lab's IPv4 addresses are the same in every run: the site's offer and ours are two flows.
        protocol, ports_at, addresses = frame[23], 14 + (frame[14] & 0x0F) * 4, frame[26:34].hex()
    elif ethertype == 0x86DD and len(frame) >= 54:
        # Not the IPv6 addresses: the bridge's link-local one changes from run to run.
        protocol, ports_at, addresses = frame[20], 54, ""
    else:
        return "ethertype-%04x" % ethertype
    if protocol in (6, 17) and len(frame) >= ports_at + 4:
        ports = int.from_bytes(frame[ports_at:ports_at + 2], "big"), int.from_bytes(frame[ports_at + 2:ports_at + 4], "big")
        return "ip-%d-%s-port-%d" % (protocol, addresses, min(ports))
    return "ip-%d-%s" % (protocol, addresses)


class Direction:
    """One way of the link: drop, hold back (reorder) or pass each frame."""

    def __init__(self, name, send, loss, reorder, seed, sent_capture, received_capture):
        self.name = name
        self.send = send
        self.loss = loss
        self.reorder = reorder
        self.seed = seed
        self.rngs = {}
        self.sent_capture = sent_capture
        self.received_capture = received_capture
        self.held = None
        self.held_at = 0.0
        self.stats = {"frames": 0, "dropped": 0, "reordered": 0, "passed": 0}

    def frame(self, data):
        self.stats["frames"] += 1
        self.sent_capture.write(data)
        key = flow(data)
        rng = self.rngs.get(key)
        if rng is None:
            rng = self.rngs[key] = random.Random("%s/%s/%s" % (self.seed, self.name, key))
        # Both draws are made for every frame, so one frame's fate never shifts the next one's.
        lost, held = rng.random() < self.loss, rng.random() < self.reorder
        if lost:
            self.stats["dropped"] += 1
            return
        if self.held is None and held:
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
            self.received_capture.write(data)
        except OSError:
            self.stats["dropped"] += 1


def main():
    tap_name, listen_port, qemu_port, stats_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    loss = float(sys.argv[5]) if len(sys.argv) > 5 else 0.10
    reorder = float(sys.argv[6]) if len(sys.argv) > 6 else 0.25
    seed = int(sys.argv[7]) if len(sys.argv) > 7 else 6
    capture_prefix = sys.argv[8] if len(sys.argv) > 8 else None
    machine_side = Pcap(capture_prefix and capture_prefix + "-machine.pcap")
    bridge_side = Pcap(capture_prefix and capture_prefix + "-bridge.pcap")
    tap = open_tap(tap_name)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", listen_port))
    udp.setblocking(False)
    qemu = ("127.0.0.1", qemu_port)
    to_machine = Direction("to_machine", lambda data: udp.sendto(data, qemu), loss, reorder, seed, bridge_side, machine_side)
    from_machine = Direction("from_machine", lambda data: os.write(tap, data), loss, reorder, seed, machine_side, bridge_side)
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
    stats = {"loss": loss, "reorder": reorder, "seed": seed, "seconds": round(time.time() - started, 1),
             "to_machine": to_machine.stats, "from_machine": from_machine.stats}
    with open(stats_path, "w", encoding="utf-8") as handle:
        json.dump(stats, handle)


if __name__ == "__main__":
    main()
