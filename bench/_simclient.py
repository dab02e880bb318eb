# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Simulated netboot clients for the rack benches: real protocols, cheap clients.

* DHCP: whole Ethernet frames built from the DHCP requests real firmware sent
  (OVMF's PXE and the iPXE it loads, captured in the unit tests' fixtures),
  with each machine's MAC, GUID, client id, xid and address written in. They
  go out of an AF_PACKET socket; a second AF_PACKET socket, filtered in the
  kernel (classic BPF) to UDP 67/68/4011, sees both our requests leaving and
  the answers arriving, each with a kernel timestamp (SO_TIMESTAMPNS), so a
  request -> answer delay does not include the client's own Python time.
* TFTP: an RFC 1350/2347/2348/7440 read client that behaves like OVMF (a
  tsize probe it aborts with error 8, then blksize 1468 and windowsize 4).
* HTTP: a minimal HTTP/1.1 client (one request per connection, as iPXE and
  the agent's wget/curl do) that reads bodies into one reusable buffer.
* :func:`machine`: one machine's whole boot, firmware to phone-home.

A machine's TFTP and HTTP sockets are bound to its address and, when it has
one, to its own interface (:func:`machine_socket`), so that what it sends
leaves with its own MAC, as from a machine of its own.

Nothing here imports the collection: the clients know the protocols, not
the server.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import json
import os
import random
import re
import select
import socket
import struct
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests", "unit", "plugins", "module_utils", "netboot", "fixtures", "ovmf-pxe.pcap")

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
SO_ATTACH_FILTER = 26
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
BROADCAST_MAC = b"\xff" * 6
MAGIC_COOKIE = b"\x63\x82\x53\x63"

OPT_MESSAGE_TYPE = 53
OPT_REQUESTED_IP = 50
OPT_SERVER_ID = 54
OPT_CLIENT_ID = 61
OPT_USER_CLASS = 77
OPT_GUID = 97
OPT_BOOTFILE = 67
DISCOVER, OFFER, REQUEST, ACK = 1, 2, 3, 5


# ------------------------------------------------------------------ templates from real firmware


def read_pcap(path):
    """Frames of a classic pcap file (Ethernet link type)."""
    with open(path, "rb") as handle:
        data = handle.read()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    offset, frames = 24, []
    while offset + 16 <= len(data):
        dummy, dummy2, caplen, dummy3 = struct.unpack(endian + "IIII", data[offset:offset + 16])
        frames.append(data[offset + 16:offset + 16 + caplen])
        offset += 16 + caplen
    return frames


def udp_of(frame):
    """(src ip, dst ip, sport, dport, payload) of an IPv4 UDP frame, or None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    ihl = (frame[14] & 0x0F) * 4
    at = 14 + ihl
    sport, dport, length = struct.unpack("!HHH", frame[at:at + 6])
    return (socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34]), sport, dport,
            frame[at + 8:at + length])


def parse_options(payload):
    """The options of a BOOTP payload as an ordered list of (code, value)."""
    out, i = [], 240
    while i < len(payload):
        code = payload[i]
        if code == 0:
            i += 1
            continue
        if code == 255:
            break
        size = payload[i + 1]
        out.append((code, payload[i + 2:i + 2 + size]))
        i += 2 + size
    return out


def firmware_templates(path=FIXTURE):
    """The client requests of a real OVMF -> iPXE boot, by role.

    Roles: ``pxe_discover``, ``pxe_select`` (the broadcast REQUEST of the site's
    address), ``pxe_4011`` (OVMF's request from port 4011), and the same three
    for the iPXE it loaded (``ipxe_*``, user class iPXE, its 4011 request from port 68).
    """
    roles = {}
    for frame in read_pcap(path):
        udp = udp_of(frame)
        if udp is None or udp[3] not in (67, 4011) or len(udp[4]) < 240 or udp[4][0] != 1:
            continue
        payload = udp[4]
        options = parse_options(payload)
        codes = dict(options)
        vendor = codes.get(60, b"")
        if not vendor.startswith(b"PXEClient"):
            continue  # the installer's own udhcpc
        kind = "ipxe" if codes.get(OPT_USER_CLASS) == b"iPXE" else "pxe"
        mtype = codes[OPT_MESSAGE_TYPE][0]
        role = "%s_%s" % (kind, "4011" if udp[3] == 4011 else ("discover" if mtype == DISCOVER else "select"))
        roles.setdefault(role, (payload, options, udp[2]))
    missing = {"pxe_discover", "pxe_select", "pxe_4011", "ipxe_discover", "ipxe_select", "ipxe_4011"} - set(roles)
    if missing:
        raise RuntimeError("%s lacks the requests %s" % (path, ", ".join(sorted(missing))))
    return roles


def bootp_request(template, mac, xid, ciaddr="0.0.0.0", requested=None, server_id=None):
    """A request like ``template`` (payload, options) from another machine: MAC, GUID, client id, xid."""
    payload, options, dummy = template
    raw_mac = bytes.fromhex(mac.replace(":", ""))
    head = bytearray(payload[:240])
    struct.pack_into("!I", head, 4, xid)
    head[12:16] = socket.inet_aton(ciaddr)
    head[28:44] = raw_mac + bytes(10)
    parts = [bytes(head)]
    for code, value in options:
        if code == OPT_GUID and len(value) == 17:
            value = b"\x00" + hashlib.md5(raw_mac).digest()  # a stable GUID per machine
        elif code == OPT_CLIENT_ID and len(value) == 7:
            value = b"\x01" + raw_mac
        elif code == OPT_REQUESTED_IP and requested:
            value = socket.inet_aton(requested)
        elif code == OPT_SERVER_ID and server_id:
            value = socket.inet_aton(server_id)
        parts.append(bytes((code, len(value))) + value)
    parts.append(b"\xff")
    out = b"".join(parts)
    return out + bytes(max(0, 300 - len(out)))


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(src_mac, dst_mac, src_ip, dst_ip, sport, dport, payload, ident=0):
    """An Ethernet + IPv4 + UDP frame with correct checksums."""
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    length = 8 + len(payload)
    udp = struct.pack("!HHHH", sport, dport, length, 0) + payload
    check = _checksum(src + dst + struct.pack("!BBH", 0, 17, length) + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", check) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, ident & 0xFFFF, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + udp


def mac_bytes(mac):
    return bytes.fromhex(mac.replace(":", ""))


# ------------------------------------------------------------------ the raw link


def _bpf_dhcp_udp():
    """Classic BPF: accept unfragmented IPv4 UDP frames from or to port 67, 68 or 4011."""
    ops = {"ldh": 0x28, "ldb": 0x30, "jeq": 0x15, "jset": 0x45, "ldxmsh": 0xb1, "ldhind": 0x48, "ret": 0x06}
    # (op, k, label if true, label if false); None falls through to the next instruction.
    program = [
        ("ldh", 12, None, None), ("jeq", 0x0800, None, "drop"),           # EtherType IPv4
        ("ldb", 23, None, None), ("jeq", 17, None, "drop"),               # protocol UDP
        ("ldh", 20, None, None), ("jset", 0x1FFF, "drop", None),          # not a later fragment
        ("ldxmsh", 14, None, None),                                       # X = IP header length
        ("ldhind", 14, None, None),                                       # source port
        ("jeq", 67, "accept", None), ("jeq", 68, "accept", None), ("jeq", 4011, "accept", None),
        ("ldhind", 16, None, None),                                       # destination port
        ("jeq", 67, "accept", None), ("jeq", 68, "accept", None), ("jeq", 4011, "accept", "drop"),
        ("ret", 0xFFFF, "accept", None), ("ret", 0, "drop", None),
    ]
    labels = {label: at for at, (op, k, label, dummy) in enumerate(program) if op == "ret"}
    code = []
    for at, (op, k, when_true, when_false) in enumerate(program):
        jt = jf = 0
        if op.startswith("j"):
            jt = labels[when_true] - at - 1 if when_true else 0
            jf = labels[when_false] - at - 1 if when_false else 0
        code.append(struct.pack("HBBI", ops[op], jt, jf, k))
    return b"".join(code)


class RawLink:
    """Send frames on an interface and see every DHCP frame on it, with kernel timestamps."""

    def __init__(self, ifname, rcvbuf=64 << 20):
        self.ifname = ifname
        self.tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: never receives
        self.tx.bind((ifname, 0))
        self.rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        code = _bpf_dhcp_udp()
        self._filter = ctypes.create_string_buffer(code)
        fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(self._filter))
        self.rx.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        try:
            self.rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.rx.bind((ifname, ETH_P_ALL))
        self.rx.setblocking(False)
        self.drain()
        self.mac = self.rx.getsockname()[4]

    def send(self, frame):
        self.tx.send(frame)

    def read(self):
        """Every frame queued now: [(kernel time, outgoing?, frame)]."""
        out = []
        recvmsg = self.rx.recvmsg
        while True:
            try:
                frame, ancillary, dummy, address = recvmsg(2048, 64)
            except BlockingIOError:
                return out
            stamp = None
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanos = struct.unpack("qq", data[:16])
                    stamp = seconds + nanos * 1e-9
            out.append((stamp if stamp is not None else time.time(), address[2] == PACKET_OUTGOING, frame))

    def collect(self, quiet, limit):
        """Read until no frame came for ``quiet`` seconds, or ``limit`` seconds passed."""
        frames = []
        end = time.monotonic() + limit
        last = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= end or now - last >= quiet:
                return frames
            ready, dummy, dummy2 = select.select([self.rx], [], [], min(quiet, end - now))
            if ready:
                got = self.read()
                if got:
                    frames.extend(got)
                    last = time.monotonic()

    def drain(self):
        self.read()

    def close(self):
        self.tx.close()
        self.rx.close()


def decode_dhcp(frame):
    """What the benches need from a DHCP frame, or None: a dict of addresses, ports and fields."""
    udp = udp_of(frame)
    if udp is None or len(udp[4]) < 240 or udp[4][236:240] != MAGIC_COOKIE:
        return None
    payload = udp[4]
    options = dict(parse_options(payload))
    mtype = options.get(OPT_MESSAGE_TYPE, b"\0")[0]
    boot_file = options.get(OPT_BOOTFILE) or payload[108:236]
    return {"src": udp[0], "dst": udp[1], "sport": udp[2], "dport": udp[3], "op": payload[0],
            "xid": struct.unpack("!I", payload[4:8])[0], "mac": payload[28:34].hex(":"), "type": mtype,
            "yiaddr": socket.inet_ntoa(payload[16:20]),
            "file": boot_file.split(b"\0", 1)[0].decode("latin-1")}


def percentile(values, fraction):
    """The value below which ``fraction`` of ``values`` lie (nearest rank), or None."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(-(-fraction * len(ordered) // 1)))
    return ordered[min(len(ordered), rank) - 1]


PR_SET_TIMERSLACK = 29


def precise_sleeps():
    """Ask the kernel for 1 us timer slack (default 50 us), so short sleeps pace sends without spinning.

    Spinning would keep the client's CPU busy and push every other task of a
    shared machine onto the server's CPU.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def paced_send(link, frames, rate):
    """Send ``frames`` at ``rate`` per second (0: as fast as possible) on an absolute schedule.

    The schedule is absolute: a late wake-up sends what is due at once, so the
    average rate holds; the real send times are the kernel's timestamps.
    """
    if not rate:
        for frame in frames:
            link.send(frame)
        return
    precise_sleeps()
    interval = 1.0 / rate
    start = time.perf_counter()
    for index, frame in enumerate(frames):
        left = start + index * interval - time.perf_counter()
        if left > 0:
            time.sleep(left)
        link.send(frame)


# ------------------------------------------------------------------ a machine's own sockets


def machine_socket(kind, local_ip=None, device=None):
    """A non-blocking IPv4 socket (``kind``: SOCK_STREAM or SOCK_DGRAM) from ``local_ip`` through ``device``.

    Linux picks the way out by the destination alone, whatever address a
    socket is bound to: without ``device`` every simulated machine would send
    through the client namespace's first interface, with its MAC. Bound to the
    machine's own interface (SO_BINDTODEVICE, root only), its packets carry its
    own MAC, as a real machine's do.
    """
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.setblocking(False)
        if device:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, device.encode())
        if local_ip:
            sock.bind((local_ip, 0))
    except OSError:
        sock.close()
        raise
    return sock


# ------------------------------------------------------------------ TFTP client


class TftpRead(asyncio.DatagramProtocol):
    """One TFTP read; ``done`` resolves to a dict (bytes, sha256, windowsize, timeouts, error)."""

    def __init__(self, server, filename, options, probe=False, timeout=2.0, retries=5):
        self.server = server
        self.rrq = (b"\x00\x01" + filename.encode() + b"\x00octet\x00"
                    + b"".join(k.encode() + b"\x00" + str(v).encode() + b"\x00" for k, v in options.items()))
        self.probe = probe
        self.timeout = timeout
        self.retries = retries
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()
        self.transport = None
        self.tid = None
        self.blksize = 512
        self.windowsize = 1
        self.expected = 1
        self.in_window = 0
        self.received = 0
        self.digest = hashlib.sha256()
        self.last = self.rrq
        self.tries = 0
        self.timeouts = 0
        self.timer = None
        self.options = {}

    def connection_made(self, transport):
        self.transport = transport
        transport.sendto(self.rrq, self.server)
        self._arm()

    def _arm(self):
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(self.timeout, self._on_timeout)

    def _finish(self, error=None):
        if self.timer is not None:
            self.timer.cancel()
        if not self.done.done():
            self.done.set_result({"bytes": self.received, "sha256": self.digest.hexdigest(), "blksize": self.blksize,
                                  "windowsize": self.windowsize, "timeouts": self.timeouts, "error": error,
                                  "options": self.options})
        self.transport.close()

    def _on_timeout(self):
        self.timer = None
        self.timeouts += 1
        self.tries += 1
        if self.tries > self.retries:
            self._finish("timed out after %d retries" % self.retries)
            return
        self.in_window = 0
        self.transport.sendto(self.last, self.tid or self.server)
        self._arm()

    def _ack(self, block):
        self.last = b"\x00\x04" + (block & 0xFFFF).to_bytes(2, "big")
        self.transport.sendto(self.last, self.tid)

    def datagram_received(self, data, addr):
        if self.done.done() or len(data) < 4:
            return
        if self.tid is None:
            self.tid = addr
        elif addr != self.tid:
            self.transport.sendto(b"\x00\x05\x00\x05unknown transfer ID\x00", addr)
            return
        opcode = data[1]
        if opcode == 6:
            fields = data[2:].split(b"\0")
            self.options = {fields[i].decode().lower(): fields[i + 1].decode() for i in range(0, len(fields) - 1, 2)}
            if self.probe:  # OVMF: the size is all it wanted
                self.transport.sendto(b"\x00\x05\x00\x08User aborted the transfer\x00", self.tid)
                self._finish()
                return
            self.blksize = int(self.options.get("blksize", 512))
            self.windowsize = int(self.options.get("windowsize", 1))
            self.tries = 0
            self._ack(0)
            self._arm()
        elif opcode == 3:
            block = (data[2] << 8) | data[3]
            if block == self.expected & 0xFFFF:
                payload = data[4:]
                self.digest.update(payload)
                self.received += len(payload)
                self.expected += 1
                self.in_window += 1
                self.tries = 0
                if len(payload) < self.blksize:
                    self._ack(block)
                    self._finish()
                    return
                if self.in_window >= self.windowsize:
                    self.in_window = 0
                    self._ack(block)
                self._arm()
            elif ((block - self.expected) & 0xFFFF) < 0x8000:  # a gap: ask again from the last in-order block
                self.in_window = 0
                self._ack(self.expected - 1)
        elif opcode == 5:
            self._finish("server error %d: %s" % ((data[2] << 8) | data[3], data[4:].split(b"\0", 1)[0].decode("latin-1")))

    def error_received(self, exc):
        pass


async def tftp_read(local_ip, server, filename, options, probe=False, timeout=2.0, retries=5, device=None):
    loop = asyncio.get_running_loop()
    protocol = TftpRead((server, 69), filename, options, probe, timeout, retries)
    await loop.create_datagram_endpoint(lambda: protocol, sock=machine_socket(socket.SOCK_DGRAM, local_ip, device))
    return await protocol.done


# ------------------------------------------------------------------ HTTP client


class HttpExchange(asyncio.BufferedProtocol):
    """One HTTP/1.1 request on its own connection; the body is hashed (optionally) and counted."""

    def __init__(self, request, hash_body):
        self.request = request
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()
        self.buffer = bytearray(256 * 1024)
        self.view = memoryview(self.buffer)
        self.head = b""
        self.status = None
        self.length = None
        self.body = bytearray()
        self.keep_body = True
        self.received = 0
        self.digest = hashlib.sha256() if hash_body else None
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def get_buffer(self, sizehint):
        return self.view

    def buffer_updated(self, nbytes):
        chunk = self.view[:nbytes]
        if self.status is None:
            self.head += bytes(chunk)
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.head[:end].decode("latin-1").split("\r\n")
            self.status = int(lines[0].split()[1])
            headers = {}
            for line in lines[1:]:
                name, dummy, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "content-length" not in headers:
                self._finish("no Content-Length (%s)" % headers.get("transfer-encoding", "?"))
                return
            self.length = int(headers["content-length"])
            self.keep_body = self.length <= 1 << 20
            chunk = memoryview(self.head[end + 4:])
            self.head = b""
        self.received += len(chunk)
        if self.digest is not None:
            self.digest.update(chunk)
        if self.keep_body:
            self.body += chunk
        if self.received >= self.length:
            self._finish(None)

    def _finish(self, error):
        if not self.done.done():
            self.done.set_result({"status": self.status, "bytes": self.received, "error": error,
                                  "sha256": self.digest.hexdigest() if self.digest is not None else None,
                                  "body": bytes(self.body) if self.keep_body else None})
        self.transport.close()

    def eof_received(self):
        if not self.done.done():
            self._finish("connection closed after %d of %s body bytes" % (self.received, self.length))

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result({"status": self.status, "bytes": self.received, "error": "connection lost: %s" % exc,
                                  "sha256": None, "body": None})


def http_request(method, host, port, path, headers=None, body=b""):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s:%d" % (host, port), "Connection: close",
             "User-Agent: nixie-bench"]
    for name, value in (headers or {}).items():
        lines.append("%s: %s" % (name, value))
    if body or method == "POST":
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def http_call(local_ip, url, method="GET", headers=None, body=b"", hash_body=False, timeout=120.0, device=None):
    match = re.match(r"^http://([0-9.]+):([0-9]+)(/.*)$", url)
    if not match:
        raise ValueError("not a plain http://ip:port/ URL: %r" % url)
    host, port, path = match.group(1), int(match.group(2)), match.group(3)
    loop = asyncio.get_running_loop()
    protocol = HttpExchange(http_request(method, host, port, path, headers, body), hash_body)
    sock = machine_socket(socket.SOCK_STREAM, local_ip, device)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
    except BaseException:
        sock.close()
        raise
    await loop.create_connection(lambda: protocol, sock=sock)
    return await asyncio.wait_for(protocol.done, timeout)


class HttpBurst:
    """Many HTTP/1.1 requests at once from one epoll loop (one connection each, Connection: close).

    Cheaper per connection than asyncio's transports by an order of
    magnitude, so a thousand concurrent requests measure the server, not
    the client. ``start`` opens a connection now; ``run`` serves every open
    connection until the given ones are done (or for ``seconds``).
    """

    def __init__(self):
        self.epoll = select.epoll()
        self.open = {}      # fd -> exchange
        self.results = {}   # key -> exchange

    def start(self, key, local_ip, url, method="GET", headers=None, body=b"", device=None):
        match = re.match(r"^http://([0-9.]+):([0-9]+)(/.*)$", url)
        host, port, path = match.group(1), int(match.group(2)), match.group(3)
        sock = machine_socket(socket.SOCK_STREAM, local_ip, device)
        exchange = {"key": key, "sock": sock, "request": http_request(method, host, port, path, headers, body),
                    "start": time.perf_counter(), "end": None, "status": None, "body": None, "error": None, "data": bytearray()}
        code = sock.connect_ex((host, port))
        if code not in (0, 115):  # EINPROGRESS
            exchange["error"] = os.strerror(code)
            exchange["end"] = time.perf_counter()
            sock.close()
            self.results[key] = exchange
            return
        self.open[sock.fileno()] = exchange
        self.results[key] = exchange
        self.epoll.register(sock.fileno(), select.EPOLLOUT)

    def _close(self, fd, exchange, error=None):
        exchange["end"] = time.perf_counter()
        exchange["error"] = exchange["error"] or error
        self.epoll.unregister(fd)
        exchange["sock"].close()
        del self.open[fd]

    def _received(self, fd, exchange):
        try:
            chunk = exchange["sock"].recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(fd, exchange, str(exc))
            return
        data = exchange["data"]
        data += chunk
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            head = data[:end].decode("latin-1").split("\r\n")
            length = None
            for line in head[1:]:
                name, dummy, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if length is not None and len(data) - end - 4 >= length:
                exchange["status"] = int(head[0].split()[1])
                exchange["body"] = bytes(data[end + 4:end + 4 + length])
                self._close(fd, exchange)
                return
        if not chunk:
            self._close(fd, exchange, "connection closed before the whole answer (%d bytes)" % len(data))

    def run(self, keys=None, seconds=None, timeout=120.0):
        """Serve connections until every exchange in ``keys`` is done, or for ``seconds``."""
        deadline = time.perf_counter() + (seconds if seconds is not None else timeout)
        pending = set(keys) if keys is not None else None
        while True:
            if pending is not None:
                pending = {key for key in pending if self.results[key]["end"] is None}
                if not pending:
                    return True
            left = deadline - time.perf_counter()
            if left <= 0:
                return pending is None
            for fd, events in self.epoll.poll(min(left, 0.5)):
                exchange = self.open.get(fd)
                if exchange is None:
                    continue
                if events & select.EPOLLOUT:
                    error = exchange["sock"].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if error:
                        self._close(fd, exchange, os.strerror(error))
                        continue
                    exchange["sock"].send(exchange["request"])
                    exchange["connected"] = time.perf_counter()
                    self.epoll.modify(fd, select.EPOLLIN)
                elif events & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                    self._received(fd, exchange)

    def close(self):
        for fd, exchange in list(self.open.items()):
            self._close(fd, exchange, "abandoned")
        self.epoll.close()


# ------------------------------------------------------------------ one machine


class DhcpMux:
    """The machines' shared raw link inside an asyncio loop: send a frame, await its answer."""

    def __init__(self, link, server_ip):
        self.link = link
        self.server_ip = server_ip
        self.waiting = {}  # (xid, mac, server port) -> future
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(link.rx.fileno(), self._readable)

    def _readable(self):
        for dummy, outgoing, frame in self.link.read():
            if outgoing:
                continue
            reply = decode_dhcp(frame)
            if reply is None or reply["op"] != 2 or reply["src"] != self.server_ip:
                continue
            future = self.waiting.get((reply["xid"], reply["mac"], reply["sport"]))
            if future is not None and not future.done():
                future.set_result(reply)

    async def exchange(self, frame, xid, mac, port, timeouts):
        """Send ``frame`` and wait for the server's answer from ``port``; retransmit after each timeout.

        Returns (reply or None, number of retransmissions).
        """
        key = (xid, mac, port)
        for attempt, timeout in enumerate(timeouts):
            future = self.loop.create_future()
            self.waiting[key] = future
            self.link.send(frame)
            try:
                return await asyncio.wait_for(future, timeout), attempt
            except asyncio.TimeoutError:
                continue
            finally:
                self.waiting.pop(key, None)
        return None, len(timeouts)

    def close(self):
        self.loop.remove_reader(self.link.rx.fileno())


# Retransmission schedules (seconds to wait for an answer before sending again).
PXE_DISCOVER_TIMEOUTS = (4, 8, 16, 32)      # PXE 2.1 / EDK2
PXE_4011_TIMEOUTS = (2, 4, 8)
IPXE_DISCOVER_TIMEOUTS = (1, 2, 4, 8)       # iPXE's DHCP starts at 1 s and doubles
IPXE_4011_TIMEOUTS = (1, 2, 4)
ARTIFACT_TIMEOUT = 900.0                    # a whole rack sharing one link for an 800 MB initrd


class MachineSpec:
    """What one simulated machine is and how much it may wait."""

    def __init__(self, index, mac, ip, server_ip, server_mac, templates, start_delay, boot_delay, step_jitter,
                 expected, rng_seed, device=None):
        self.index = index
        self.mac = mac
        self.ip = ip
        self.device = device  # the machine's own interface, or None (sockets then leave by the route)
        self.server_ip = server_ip
        self.server_mac = server_mac
        self.templates = templates
        self.start_delay = start_delay
        self.boot_delay = boot_delay
        self.step_jitter = step_jitter
        self.expected = expected  # {"ipxe.efi": (size, sha256), "kernel": ..., "initrd": ...}
        self.rng = random.Random(rng_seed)


def _broadcast(spec, payload):
    return udp_frame(mac_bytes(spec.mac), BROADCAST_MAC, "0.0.0.0", "255.255.255.255", 68, 67, payload)


def _unicast(spec, payload, sport):
    return udp_frame(mac_bytes(spec.mac), spec.server_mac, spec.ip, spec.server_ip, sport, 4011, payload)


async def _dhcp_stage(mux, spec, kind, record):
    """DISCOVER -> proxy OFFER, the broadcast REQUEST of the site's address, then 4011 -> ACK.

    Returns the boot file: from the 4011 ACK, else (iPXE) from the OFFER.
    """
    xid = spec.rng.getrandbits(32)
    discover = bootp_request(spec.templates[kind + "_discover"], spec.mac, xid)
    timeouts = PXE_DISCOVER_TIMEOUTS if kind == "pxe" else IPXE_DISCOVER_TIMEOUTS
    offer, retries = await mux.exchange(_broadcast(spec, discover), xid, spec.mac, 67, timeouts)
    record["retransmissions"] += retries
    if offer is None:
        raise RuntimeError("%s: no proxy offer after %d DISCOVERs" % (kind, len(timeouts)))
    # The address comes from the site's server (not simulated: each machine's address is on
    # the client interface already); the REQUEST that takes it is broadcast, and the proxy sees it.
    select_request = bootp_request(spec.templates[kind + "_select"], spec.mac, xid, requested=spec.ip,
                                   server_id="10.77.0.2")
    mux.link.send(_broadcast(spec, select_request))
    await asyncio.sleep(spec.rng.uniform(0, spec.step_jitter))
    # OVMF asks from port 4011 with a new xid; iPXE from port 68 with the same xid.
    if kind == "pxe":
        xid = spec.rng.getrandbits(32)
        sport, timeouts = 4011, PXE_4011_TIMEOUTS
    else:
        sport, timeouts = 68, IPXE_4011_TIMEOUTS
    request = bootp_request(spec.templates[kind + "_4011"], spec.mac, xid, ciaddr=spec.ip, server_id=spec.server_ip)
    ack, retries = await mux.exchange(_unicast(spec, request, sport), xid, spec.mac, 4011, timeouts)
    record["retransmissions"] += retries
    if ack is not None and ack["file"]:
        return ack["file"]
    if kind == "ipxe" and offer["file"]:
        return offer["file"]  # iPXE boots from the proxy offer when 4011 stays silent
    raise RuntimeError("%s: no boot file (4011 answered: %s)" % (kind, ack is not None))


def _script_steps(script, mac):
    """(kernel URL, kernel arguments, initrd URL) of an iPXE script, ${net0/mac} expanded."""
    text = script.replace("${net0/mac}", mac).replace("${mac}", mac)
    kernel = initrd = None
    args = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "kernel" and kernel is None:
            kernel = words[1]
            args = [w for w in words[2:] if w not in ("||", "goto") and not w.startswith("nixie_")]
        elif words[0] == "initrd" and initrd is None:
            initrd = [w for w in words[1:] if w.startswith("http")][0]
    if kernel is None or initrd is None:
        raise RuntimeError("the iPXE script has no kernel or initrd line:\n%s" % script[:500])
    return kernel, args, initrd


def _check_file(name, got, spec, record):
    size, digest = spec.expected[name]
    if got.get("error") or got.get("status", 200) not in (200, None):
        raise RuntimeError("%s: %s (status %s)" % (name, got.get("error"), got.get("status")))
    if got["bytes"] != size or (digest and got.get("sha256") and got["sha256"] != digest):
        raise RuntimeError("%s: got %d bytes (sha256 %s), expected %d (%s)" % (name, got["bytes"], got.get("sha256"), size, digest))
    record["bytes"] += got["bytes"]


async def machine(mux, spec, clock):
    """One machine's boot, firmware PXE to phone-home; returns its record (never raises)."""
    record = {"index": spec.index, "mac": spec.mac, "ok": False, "error": None, "step": None, "retransmissions": 0,
              "tftp_timeouts": 0, "bytes": 0, "marks": {}}
    await asyncio.sleep(spec.start_delay)
    start = clock()
    record["start"] = start

    def mark(name):
        record["step"] = name
        record["marks"][name] = round(clock() - start, 4)

    try:
        mark("pxe_dhcp")
        boot_file = await _dhcp_stage(mux, spec, "pxe", record)
        mark("tftp")
        probe = await tftp_read(spec.ip, spec.server_ip, boot_file, {"tsize": 0, "blksize": 1468, "windowsize": 4}, probe=True,
                                device=spec.device)
        record["tftp_timeouts"] += probe["timeouts"]
        if probe["error"]:
            raise RuntimeError("TFTP size probe: %s" % probe["error"])
        got = await tftp_read(spec.ip, spec.server_ip, boot_file, {"blksize": 1468, "windowsize": 4}, device=spec.device)
        record["tftp_timeouts"] += got["timeouts"]
        record["tftp_windowsize"] = got["windowsize"]
        _check_file("ipxe.efi", got, spec, record)
        await asyncio.sleep(spec.rng.uniform(0, spec.step_jitter))
        mark("ipxe_dhcp")
        script_url = await _dhcp_stage(mux, spec, "ipxe", record)
        mark("script")
        script = await http_call(spec.ip, script_url, device=spec.device)
        if script["status"] != 200 or script["body"] is None:
            raise RuntimeError("script %s: status %s %s" % (script_url, script["status"], script["error"]))
        kernel_url, args, initrd_url = _script_steps(script["body"].decode("utf-8", "replace"), spec.mac)
        mark("kernel")
        _check_file("kernel", await http_call(spec.ip, kernel_url, hash_body=spec.expected["kernel"][1] is not None,
                                              timeout=ARTIFACT_TIMEOUT, device=spec.device), spec, record)
        mark("initrd")
        _check_file("initrd", await http_call(spec.ip, initrd_url, hash_body=spec.expected["initrd"][1] is not None,
                                              timeout=ARTIFACT_TIMEOUT, device=spec.device), spec, record)
        mark("boot")
        await asyncio.sleep(spec.boot_delay)
        cmdline = dict(arg.split("=", 1) for arg in args if "=" in arg)
        mark("phone_home")
        report = {"mac": cmdline.get("nixie.mac", spec.mac),
                  "addresses": [{"ifname": "eth0", "mac": spec.mac, "address": spec.ip, "prefix": 16}],
                  "ssh_host_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI%s" % hashlib.sha256(spec.mac.encode()).hexdigest()[:43]],
                  "hostname": "nixos", "uptime": round(spec.boot_delay, 2)}
        answer = await http_call(spec.ip, cmdline["nixie.api"] + "/phone-home", "POST",
                                 {"Authorization": "Bearer " + cmdline["nixie.token"], "Content-Type": "application/json"},
                                 json.dumps(report).encode(), device=spec.device)
        if answer["status"] != 200:
            raise RuntimeError("phone-home: status %s %s" % (answer["status"], (answer["body"] or b"")[:200]))
        mark("done")
        record["ok"] = True
    except (RuntimeError, OSError, ValueError, KeyError, IndexError, asyncio.TimeoutError) as exc:
        record["error"] = "%s: %s" % (record["step"], str(exc) or type(exc).__name__)
    record["seconds"] = round(clock() - start, 4)
    record["end"] = clock()
    return record
