# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A hostile host on the segment: malformed and random UDP to 67, 4011 and 69, junk HTTP to 8080.

    storm.py SERVER_IP SECONDS STATS_FILE [UDP_PER_SECOND]

Runs in the lab's site namespace (a machine across the bridge). Bounded in time and rate, it
stops by itself after SECONDS (or on SIGTERM) and writes what it sent to STATS_FILE as JSON.
UDP mix: random bytes; well-formed PXE DISCOVERs and REQUESTs from random MACs that are not in
the inventory (broadcast to 67, unicast to 4011) and the same with random bytes flipped; TFTP
read requests for random and traversal names, writes, and read requests for ipxe.efi that are
never acknowledged. HTTP mix: random bytes, request lines over the size limit, requests left half
sent (held open), POSTs of junk to the phone-home endpoint with random tokens, and plain GETs.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import time

RNG = random.Random(20261126)
MAX_HELD_CONNECTIONS = 100


def pxe_request(message_type, mac):
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s4s", 1, 1, 6, 0, RNG.getrandbits(32), 0, 0x8000,
                       b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, mac + b"\0" * 10, b"\0" * 64, b"\0" * 128, b"\x63\x82\x53\x63")
    options = [(53, bytes((message_type,))), (93, b"\x00\x07"), (94, b"\x01\x03\x00"),
               (60, b"PXEClient:Arch:00007:UNDI:003000"), (97, b"\x00" + RNG.randbytes(16))]
    if RNG.random() < 0.5:
        options.append((77, b"iPXE"))
    return head + b"".join(bytes((code, len(value))) + value for code, value in options) + b"\xff"


def stranger_mac():
    # Locally administered, never one of the lab's 52:54:00:12:34:xx.
    return bytes((0x02, 0xBA, 0xD0)) + RNG.randbytes(3)


def flip(data, count):
    data = bytearray(data)
    for dummy in range(count):
        data[RNG.randrange(len(data))] = RNG.randrange(256)
    return bytes(data)


TFTP_NAMES = [b"../../etc/passwd", b"/etc/shadow", b"%2e%2e/x", b"ipxe.efi\0../x", b"a" * 500]


def udp_payload(kind):
    if kind == "random67" or kind == "random4011" or kind == "random69":
        return RNG.randbytes(RNG.randrange(0, 1500))
    if kind == "stranger_discover":
        return pxe_request(1, stranger_mac())
    if kind == "stranger_request":
        return pxe_request(3, stranger_mac())
    if kind == "mutated_dhcp":
        return flip(pxe_request(RNG.choice((1, 3)), stranger_mac()), RNG.randrange(1, 12))
    if kind == "tftp_junk":
        name = RNG.choice(TFTP_NAMES + [RNG.randbytes(RNG.randrange(1, 64))])
        return RNG.choice((b"\x00\x01", b"\x00\x02")) + name + b"\x00octet\x00"
    if kind == "tftp_abandoned":
        return b"\x00\x01ipxe.efi\x00octet\x00blksize\x001468\x00"
    raise KeyError(kind)


UDP_MIX = [  # (kind, port, broadcast, weight)
    ("random67", 67, True, 3), ("random4011", 4011, False, 2), ("random69", 69, False, 2),
    ("stranger_discover", 67, True, 3), ("stranger_request", 4011, False, 2), ("mutated_dhcp", 67, True, 3),
    ("tftp_junk", 69, False, 2), ("tftp_abandoned", 69, False, 1),
]


def udp_storm(server, seconds, rate, stats, stop):
    senders = {False: socket.socket(socket.AF_INET, socket.SOCK_DGRAM), True: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)}
    senders[True].setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    # No default route on the segment: the limited broadcast leaves through the site's one interface.
    senders[True].setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
    abandoned = []   # a socket per abandoned TFTP transfer, so the server meets silence, not ICMP
    weights = [entry[3] for entry in UDP_MIX]
    deadline = time.monotonic() + seconds
    interval = 1.0 / rate
    next_send = time.monotonic()
    while not stop.is_set() and time.monotonic() < deadline:
        kind, port, broadcast, dummy = RNG.choices(UDP_MIX, weights)[0]
        payload = udp_payload(kind)
        target = ("255.255.255.255" if broadcast else server, port)
        try:
            if kind == "tftp_abandoned" and len(abandoned) < 200:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.sendto(payload, target)
                abandoned.append(sock)
            else:
                senders[broadcast].sendto(payload, target)
            stats["udp"][kind] = stats["udp"].get(kind, 0) + 1
        except OSError as exc:
            stats["errors"][type(exc).__name__] = stats["errors"].get(type(exc).__name__, 0) + 1
        next_send += interval
        delay = next_send - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    for sock in abandoned:
        sock.close()


def http_one(server, kind, held):
    sock = socket.create_connection((server, 8080), timeout=3)
    try:
        if kind == "random":
            sock.sendall(RNG.randbytes(RNG.randrange(1, 4096)))
        elif kind == "huge_line":
            sock.sendall(b"GET /" + b"A" * 20000 + b" HTTP/1.1\r\n\r\n")
        elif kind == "huge_header":
            sock.sendall(b"GET /api/v1/hosts HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"B" * 20000 + b"\r\n\r\n")
        elif kind == "junk_phone_home":
            body = RNG.choice([RNG.randbytes(200), b"{" * 500, json.dumps({"mac": "02:ba:d0:00:00:01"}).encode()])
            sock.sendall(b"POST /api/v1/phone-home HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + RNG.randbytes(24).hex().encode()
                         + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        elif kind == "bad_method":
            sock.sendall(RNG.choice([b"BREW", b"DELETE", b"\x00\x01", b"GET"]) + b" /boot/" + RNG.randbytes(8).hex().encode() + b"/kernel HTTP/9.9\r\n\r\n")
        elif kind == "get_hosts":
            sock.sendall(b"GET /api/v1/hosts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        elif kind == "half_sent":
            sock.sendall(b"GET /api/v1/hosts HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            if len(held) < MAX_HELD_CONNECTIONS:
                held.append(sock)
                return
        sock.settimeout(0.5)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass
    finally:
        if sock not in held:
            sock.close()


HTTP_KINDS = ["random", "huge_line", "huge_header", "junk_phone_home", "bad_method", "get_hosts", "half_sent"]


def http_storm(server, seconds, rate, stats, stop):
    held = []
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        kind = RNG.choice(HTTP_KINDS)
        try:
            http_one(server, kind, held)
            stats["http"][kind] = stats["http"].get(kind, 0) + 1
        except OSError as exc:
            stats["errors"]["http " + type(exc).__name__] = stats["errors"].get("http " + type(exc).__name__, 0) + 1
        time.sleep(1.0 / rate)
    stats["held_connections"] = len(held)
    for sock in held:
        sock.close()


def main():
    server, seconds, stats_path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else 1000.0
    stats = {"udp": {}, "http": {}, "errors": {}, "udp_per_second": rate, "started": time.time()}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *dummy: stop.set())
    workers = [threading.Thread(target=udp_storm, args=(server, seconds, rate, stats, stop)),
               threading.Thread(target=http_storm, args=(server, seconds, 40.0, stats, stop))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stats["seconds"] = round(time.time() - stats["started"], 2)
    stats["udp_total"] = sum(stats["udp"].values())
    stats["http_total"] = sum(stats["http"].values())
    temporary = stats_path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(stats, handle)
    os.replace(temporary, stats_path)


if __name__ == "__main__":
    main()
