# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hostile clients that speak raw UDP and raw HTTP request lines (curl and tftp clients clean paths up).

Run inside the lab namespace: ``probe.py COMMAND JSON-ARGS``; prints one JSON document.

* ``tftp NAMES``: one read request per name (hex, sent as is); the first answer to each.
* ``tftp-write``: write requests, and a stray DATA packet, to port 69.
* ``http TARGETS``: one raw request line per target (hex, sent as is); status and body of each.
* ``tftp-abandon {"transfers": N}``: N read requests from one address, never acknowledged; vanish when told.
* ``http-hold {"connections": N, "wait": S}``: N connections that send half a request and wait.
* ``tftp-vanish {"how": "silent"|"close", "acks": N}``: start a transfer, acknowledge N blocks, print a
  line, and vanish once a line arrives on stdin.
"""

from __future__ import annotations

import json
import resource
import socket
import sys
import time

SERVER = "10.77.0.1"


def tftp_rrq(name, mode=b"octet", options=(), opcode=1):
    out = opcode.to_bytes(2, "big") + name + b"\0" + mode + b"\0"
    for option in options:
        out += option + b"\0"
    return out


def first_answer(sock, timeout=1.5):
    """(opcode, code or block, text) of the first datagram that comes back, or None."""
    sock.settimeout(timeout)
    try:
        data, peer = sock.recvfrom(70000)
    except socket.timeout:
        return None
    opcode = int.from_bytes(data[:2], "big")
    number = int.from_bytes(data[2:4], "big") if len(data) >= 4 else None
    text = data[4:].split(b"\0", 1)[0].decode("latin-1") if opcode == 5 else ""
    return {"opcode": opcode, "number": number, "text": text, "bytes": len(data), "from_port": peer[1]}


def tftp(args):
    results = []
    for entry in args["requests"]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        packet = bytes.fromhex(entry["packet"])
        sock.sendto(packet, (SERVER, 69))
        answer = first_answer(sock)
        if answer and answer["opcode"] == 3:
            # Served: tell the server we are done so it does not retransmit.
            sock.sendto(b"\x00\x05\x00\x00done\x00", (SERVER, answer["from_port"]))
        if answer and answer["opcode"] == 6:
            sock.sendto(b"\x00\x05\x00\x08done\x00", (SERVER, answer["from_port"]))
        sock.close()
        results.append(dict(entry, answer=answer))
    return results


def tftp_write(args):
    results = []
    for name in args["names"]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.sendto(tftp_rrq(name.encode(), opcode=2), (SERVER, 69))
        results.append({"what": "WRQ %s" % name, "answer": first_answer(sock)})
        sock.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.sendto(b"\x00\x03\x00\x01" + b"X" * 512, (SERVER, 69))
    results.append({"what": "DATA block 1 to port 69", "answer": first_answer(sock, 1.0)})
    sock.close()
    return results


def http(args):
    results = []
    for entry in args["requests"]:
        raw = bytes.fromhex(entry["raw"])
        sock = socket.create_connection((SERVER, args.get("port", 8080)), timeout=5)
        sock.sendall(raw)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (socket.timeout, ConnectionResetError):
            pass
        sock.close()
        response = b"".join(chunks)
        head, dummy, body = response.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        results.append(dict(entry, status=status, status_line=status_line, body=body.hex(), closed_without_answer=not response))
    return results


def tftp_vanish(args):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.sendto(tftp_rrq(b"ipxe.efi", options=(b"blksize", b"512")), (SERVER, 69))
    acked = 0
    port = None
    started = time.monotonic()
    while acked < args["acks"]:
        answer = first_answer(sock, 3)
        if answer is None:
            break
        port = answer["from_port"]
        if answer["opcode"] == 6:
            sock.sendto(b"\x00\x04\x00\x00", (SERVER, port))
        elif answer["opcode"] == 3:
            sock.sendto(b"\x00\x04" + answer["number"].to_bytes(2, "big"), (SERVER, port))
            acked = answer["number"]
    # Say so, and vanish when told: the test first checks the server holds the transfer's socket.
    print(json.dumps({"acked": acked, "transfer_port": port, "seconds": round(time.monotonic() - started, 3)}), flush=True)
    sys.stdin.readline()
    if args["how"] == "close":
        sock.close()         # the server's next datagram meets a closed port: ICMP port unreachable
        return {"acked": acked, "transfer_port": port}
    # "silent": keep the port open and never answer again, like a machine that lost power
    # (its firmware's socket is simply gone, nothing tells the server).
    deadline = time.monotonic() + args.get("linger", 0)
    resent = 0
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            sock.recvfrom(70000)
            resent += 1
        except socket.timeout:
            pass
    return {"acked": acked, "transfer_port": port, "retransmissions_seen": resent}


def tftp_abandon(args):
    """Open many transfers from this one address and never acknowledge anything; vanish when told."""
    # ansible-test runs targets with a soft limit of 1,024 open files, fewer than the transfers opened here.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args["transfers"] + 64
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard))
    sockets = []
    for dummy in range(args["transfers"]):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.sendto(tftp_rrq(b"ipxe.efi"), (SERVER, 69))
        sockets.append(sock)
    time.sleep(1.0)
    answered = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            sock.recvfrom(70000)
            answered += 1
        except BlockingIOError:
            pass
    print(json.dumps({"sent": len(sockets), "answered": answered}), flush=True)
    sys.stdin.readline()
    for sock in sockets:
        sock.close()
    return {"closed": len(sockets)}


def http_hold(args):
    """Open connections that send half a request (headers, or a body) and wait; report when the server closes each."""
    import selectors  # pylint: disable=import-outside-toplevel
    held = selectors.DefaultSelector()
    for index in range(args["connections"]):
        sock = socket.create_connection((SERVER, 8080), timeout=5)
        if index % 3 == 1:
            sock.sendall(b"POST /api/v1/phone-home HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer xxxxxxxxxxxxxxxxxxxxxxxx\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"mac\": ")
            kind = "body"
        elif index % 3 == 2:  # not the API: aiohttp holds it
            sock.sendall(b"GET /boot/52:54:00:12:34:01/kernel HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            kind = "boot_headers"
        else:
            sock.sendall(b"GET /api/v1/hosts HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            kind = "headers"
        sock.setblocking(False)
        held.register(sock, selectors.EVENT_READ, {"kind": kind, "answer": b""})
    opened = time.monotonic()
    print(json.dumps({"opened": args["connections"]}), flush=True)
    closed = []
    deadline = opened + args["wait"]
    while held.get_map() and time.monotonic() < deadline:
        for key, dummy in held.select(0.2):
            try:
                chunk = key.fileobj.recv(4096)
            except OSError:
                chunk = b""
            if chunk:
                key.data["answer"] += chunk
                continue
            held.unregister(key.fileobj)
            key.fileobj.close()
            status = key.data["answer"].split(b"\r\n", 1)[0].decode("latin-1")
            closed.append({"kind": key.data["kind"], "after": round(time.monotonic() - opened, 2), "status": status})
    left = len(held.get_map())
    for key in list(held.get_map().values()):
        key.fileobj.close()
    return {"closed": closed, "still_open": left}


COMMANDS = {"tftp": tftp, "tftp-write": tftp_write, "http": http, "tftp-vanish": tftp_vanish, "http-hold": http_hold, "tftp-abandon": tftp_abandon}

if __name__ == "__main__":
    print(json.dumps(COMMANDS[sys.argv[1]](json.loads(sys.argv[2]))))
