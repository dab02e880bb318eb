# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Raw Ethernet frames in and out of one interface, driven over stdin/stdout (JSON lines).

Runs inside the test's client namespace (``ip netns exec NS python rawclient.py IFACE``)
and plays any number of DHCP clients at once: the test builds whole frames with scapy
(Ether/IP/UDP/BOOTP/DHCP, each with its own source MAC) and this process only puts them
on the wire through an AF_PACKET socket and collects what comes back. Keeping the
socket open for the whole test means no reply is missed between two requests.

Request line: ``{"send": ["<frame hex>", ...], "listen": SECONDS}``; answer line:
``{"frames": [{"time": T, "hex": "<frame hex>"}, ...]}`` with every IPv4 UDP frame
received from port 67 or 4011 (BOOTP replies, from any server) during ``listen``
seconds after the frames were sent. Frames that were queued before the request are
dropped first. The interface is put in promiscuous mode so that replies unicast to
a client's own MAC (not this interface's) are seen too. Ends at EOF.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_OUTGOING = 4
SERVER_PORTS = (67, 4011)


def open_socket(interface):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((interface, 0))
    index = socket.if_nametoindex(interface)
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b""))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.setblocking(False)
    return sock


def is_server_udp(frame):
    """An IPv4 UDP frame sent from port 67 or 4011."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return False
    header = (frame[14] & 0x0F) * 4
    if len(frame) < 14 + header + 8:
        return False
    source_port = struct.unpack("!H", frame[14 + header:16 + header])[0]
    return source_port in SERVER_PORTS


def drain(sock):
    while True:
        try:
            sock.recvfrom(65535)
        except BlockingIOError:
            return


def exchange(sock, frames, listen):
    drain(sock)
    for frame in frames:
        sock.send(frame)
    received = []
    deadline = time.monotonic() + listen
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        readable, dummy, dummy2 = select.select([sock], [], [], remaining)
        if not readable:
            continue
        while True:
            try:
                frame, address = sock.recvfrom(65535)
            except BlockingIOError:
                break
            if address[2] != PACKET_OUTGOING and is_server_udp(frame):
                received.append({"time": time.time(), "hex": frame.hex()})
    return received


def main():
    sock = open_socket(sys.argv[1])
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        frames = [bytes.fromhex(item) for item in request.get("send", [])]
        answer = {"frames": exchange(sock, frames, float(request.get("listen", 1.0)))}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
