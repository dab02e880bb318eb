# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

# Read-only asyncio TFTP server for the registered iPXE binaries.
#
# Protocol decisions are pure functions and a socket-free state machine
# (parse_request, check_request, negotiate, Transfer); TftpServer only moves
# datagrams between them and asyncio transports.  Options: blksize (RFC 2348),
# timeout and tsize (RFC 2349), windowsize (RFC 7440).  See docs/tftp.md.

import asyncio
import logging
import os
import select
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# Opcodes (RFC 1350, RFC 2347)
OP_RRQ = 1
OP_WRQ = 2
OP_DATA = 3
OP_ACK = 4
OP_ERROR = 5
OP_OACK = 6

# Error codes (RFC 1350, RFC 2347)
ERR_UNDEFINED = 0
ERR_NOT_FOUND = 1
ERR_ACCESS = 2
ERR_DISK_FULL = 3
ERR_ILLEGAL_OP = 4
ERR_UNKNOWN_TID = 5
ERR_EXISTS = 6
ERR_NO_USER = 7
ERR_OPTION = 8

#: The only file names TFTP serves (engine contract).
IPXE_FILES = ("undionly.kpxe", "ipxe.efi", "snponly.efi", "ipxe-arm64.efi")
DEFAULT_DIRECTORY = "/usr/lib/ipxe"

DEFAULT_BLKSIZE = 512
MIN_BLKSIZE = 8
MAX_BLKSIZE = 65464
#: 1500 (Ethernet MTU) - 20 (IPv4) - 8 (UDP) - 4 (TFTP header); what OVMF asks.
DEFAULT_MAX_BLKSIZE = 1468
MAX_WINDOWSIZE = 64
MIN_TIMEOUT = 1
MAX_TIMEOUT = 255
MAX_FILENAME = 128
MAX_REQUEST = 2048
MAX_FILE_SIZE = 64 * 1024 * 1024
#: Above this many blocks DATA datagrams are built per send instead of cached.
MAX_CACHED_BLOCKS = 1 << 17
#: Linux UDP GSO (setsockopt SOL_UDP UDP_SEGMENT); limits of one GSO send.
UDP_SEGMENT = 103
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65000
DEFAULT_PORT = 69

_ACK_PREFIX = b"\x00\x04"
_ERROR_PREFIX = b"\x00\x05"
_MODES = ("octet", "netascii", "mail")
_FORBIDDEN_CHARS = frozenset("/\\%:\0")


class TftpError(Exception):
    """A request the server refuses; ``code`` is the TFTP error code to send."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------- packets


@dataclass(frozen=True)
class Request:
    opcode: int  # OP_RRQ or OP_WRQ
    filename: str
    mode: str  # lower-cased
    options: dict = field(default_factory=dict)  # lower-cased name -> value (str), request order


def _ascii(raw: bytes, what: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise TftpError(ERR_ILLEGAL_OP, "malformed request: %s is not ASCII" % what) from None


def parse_request(data: bytes) -> Request:
    """Parse an RRQ or WRQ datagram.

    Raises :class:`TftpError` (code 4, illegal operation) for anything
    malformed: wrong opcode, missing NUL terminators, empty file name,
    unknown mode, an option without value, non-ASCII bytes, oversize.
    Option names are lower-cased; the first occurrence of an option wins.
    """
    if len(data) < 4:
        raise TftpError(ERR_ILLEGAL_OP, "malformed request: too short")
    if len(data) > MAX_REQUEST:
        raise TftpError(ERR_ILLEGAL_OP, "malformed request: too long")
    opcode = (data[0] << 8) | data[1]
    if opcode not in (OP_RRQ, OP_WRQ):
        raise TftpError(ERR_ILLEGAL_OP, "illegal operation %d" % opcode)
    if data[-1] != 0:
        raise TftpError(ERR_ILLEGAL_OP, "malformed request: not NUL-terminated")
    fields = data[2:-1].split(b"\0")
    if len(fields) < 2:
        raise TftpError(ERR_ILLEGAL_OP, "malformed request: no mode")
    filename = fields[0].decode("latin-1")  # any bytes; check_filename judges them
    if not filename:
        raise TftpError(ERR_ILLEGAL_OP, "malformed request: empty file name")
    mode = _ascii(fields[1], "mode").lower()
    if mode not in _MODES:
        raise TftpError(ERR_ILLEGAL_OP, "malformed request: unknown mode %r" % mode)
    rest = fields[2:]
    while rest and rest[-1] == b"":
        rest.pop()  # some ROMs pad the request with NULs
    if len(rest) % 2:
        raise TftpError(ERR_ILLEGAL_OP, "malformed request: option without value")
    options = {}
    for i in range(0, len(rest), 2):
        name = _ascii(rest[i], "option name").lower()
        if not name:
            raise TftpError(ERR_ILLEGAL_OP, "malformed request: empty option name")
        options.setdefault(name, _ascii(rest[i + 1], "option value"))
    return Request(opcode, filename, mode, options)


def is_bare_name(name: str) -> bool:
    """True when ``name`` is a plain file name: no path component, no escape."""
    return (
        0 < len(name) <= MAX_FILENAME
        and name not in (".", "..")
        and not name.startswith(".")
        and name.isascii()
        and name.isprintable()
        and name == name.strip()
        and not (_FORBIDDEN_CHARS & set(name))
    )


def check_filename(name: str, files) -> str:
    """Return ``name`` if it is served; raise :class:`TftpError` otherwise.

    Anything that looks like a path (``/``, ``\\``, ``..``, ``%``-escapes,
    NUL, control characters, overlong) is an access violation (error 2);
    a bare name that is not registered is "file not found" (error 1).
    Matching is exact (case-sensitive); there is no path resolution at all.
    """
    if not is_bare_name(name):
        raise TftpError(ERR_ACCESS, "access violation")
    if name not in files:
        raise TftpError(ERR_NOT_FOUND, "file not found")
    return name


def check_request(req: Request, files) -> str:
    """Refusals that do not depend on options: WRQ, modes, file name."""
    if req.opcode == OP_WRQ:
        raise TftpError(ERR_ACCESS, "read-only server")
    if req.mode != "octet":
        # netascii would make the client rewrite CR/LF inside the binary.
        raise TftpError(ERR_UNDEFINED, "only octet (binary) mode is served")
    return check_filename(req.filename, files)


def build_error(code: int, message: str) -> bytes:
    return _ERROR_PREFIX + code.to_bytes(2, "big") + message.encode("ascii", "replace") + b"\0"


def build_oack(options: dict) -> bytes:
    parts = [b"\x00\x06"]
    for name, value in options.items():
        parts.append(name.encode("ascii") + b"\0" + str(value).encode("ascii") + b"\0")
    return b"".join(parts)


def build_ack(block: int) -> bytes:
    return _ACK_PREFIX + (block & 0xFFFF).to_bytes(2, "big")


def build_data(block: int, payload) -> bytes:
    return b"\x00\x03" + (block & 0xFFFF).to_bytes(2, "big") + bytes(payload)


def build_request(filename: str, mode: str = "octet", options=None, opcode: int = OP_RRQ) -> bytes:
    """Client-side helper (tests, bench)."""
    out = opcode.to_bytes(2, "big") + filename.encode("latin-1") + b"\0" + mode.encode("ascii") + b"\0"
    for name, value in (options or {}).items():
        out += name.encode("ascii") + b"\0" + str(value).encode("ascii") + b"\0"
    return out


def parse_oack(data: bytes) -> dict:
    """Client-side helper: options of an OACK packet."""
    fields = data[2:].split(b"\0")
    if fields and fields[-1] == b"":
        fields.pop()
    return {fields[i].decode().lower(): fields[i + 1].decode() for i in range(0, len(fields) - 1, 2)}


def parse_error(data: bytes) -> tuple:
    """(code, message) of an ERROR packet; tolerant of a missing terminator."""
    code = int.from_bytes(data[2:4], "big") if len(data) >= 4 else ERR_UNDEFINED
    return code, data[4:].split(b"\0", 1)[0].decode("ascii", "replace")


# ------------------------------------------------------------ negotiation


def blksize_for_mtu(mtu: int, ipv6: bool = False) -> int:
    """Largest blksize whose DATA datagram fits ``mtu`` unfragmented."""
    return max(MIN_BLKSIZE, min(MAX_BLKSIZE, mtu - (40 if ipv6 else 20) - 8 - 4))


def _int_option(value: str):
    value = value.strip()
    if not value.isdigit() or len(value) > 10:
        return None
    return int(value)


@dataclass(frozen=True)
class Negotiated:
    blksize: int = DEFAULT_BLKSIZE
    windowsize: int = 1
    timeout: int | None = None  # seconds asked by the client, or None (server default)
    tsize: int | None = None  # answered file size, when the client asked
    oack: dict = field(default_factory=dict)  # options to acknowledge, request order; empty: no OACK


def negotiate(options: dict, size: int, max_blksize: int = DEFAULT_MAX_BLKSIZE, max_windowsize: int = MAX_WINDOWSIZE) -> Negotiated:
    """Decide the options of a read transfer of a file of ``size`` bytes.

    * blksize: values below 8 or not numbers are ignored (default 512 is
      used); larger ones are lowered to ``min(65464, max_blksize)`` —
      ``max_blksize`` is what fits the caller's MTU (see :func:`blksize_for_mtu`).
    * windowsize: values below 1 are ignored; larger ones lowered to
      ``max_windowsize`` (itself at most 65535).
    * timeout: accepted as asked when in 1..255, otherwise ignored (RFC 2349
      forbids answering another value).
    * tsize: answered with the real size.
    Unknown options are ignored.  Only accepted options appear in the OACK.
    """
    cap_blk = max(MIN_BLKSIZE, min(MAX_BLKSIZE, int(max_blksize)))
    cap_win = max(1, min(65535, int(max_windowsize)))
    blksize, windowsize, timeout, tsize = DEFAULT_BLKSIZE, 1, None, None
    oack = {}
    for name, raw in options.items():
        value = _int_option(raw)
        if value is None:
            continue
        if name == "blksize" and value >= MIN_BLKSIZE:
            blksize = min(value, cap_blk)
            oack[name] = str(blksize)
        elif name == "windowsize" and value >= 1:
            windowsize = min(value, cap_win)
            oack[name] = str(windowsize)
        elif name == "timeout" and MIN_TIMEOUT <= value <= MAX_TIMEOUT:
            timeout = value
            oack[name] = str(timeout)
        elif name == "tsize":
            tsize = size
            oack[name] = str(size)
    return Negotiated(blksize, windowsize, timeout, tsize, oack)


# ---------------------------------------------------------- state machine


def build_data_packets(data: bytes, blksize: int) -> list:
    """Every DATA datagram of ``data`` (block numbers wrap 65535 -> 0).

    The list has ``len(data) // blksize + 1`` entries: the last one is short,
    and empty when the size is a multiple of ``blksize``.
    """
    view = memoryview(data)
    count = len(data) // blksize + 1
    out = []
    append = out.append
    for i in range(count):
        append(b"\x00\x03" + ((i + 1) & 0xFFFF).to_bytes(2, "big") + view[i * blksize:(i + 1) * blksize])
    return out


class DataBlocks:
    """Precomputed DATA datagrams of one file at one blksize, shared by transfers.

    ``window(first, last)`` returns the datagrams of blocks ``first..last``
    (1-based sequence numbers).  With ``gso_segments`` > 1 it returns instead
    slices of one contiguous buffer of consecutive datagrams, each holding at
    most that many of them, to be sent on a socket with UDP_SEGMENT set to
    ``blksize + 4`` (Linux UDP GSO: the kernel cuts it into the datagrams).
    """

    def __init__(self, data: bytes, blksize: int, gso_segments: int = 0) -> None:
        self.blksize = blksize
        self.packets = build_data_packets(data, blksize)
        self.total = len(self.packets)
        self.gso = gso_segments if gso_segments > 1 else 0
        if self.gso:
            self.stream = memoryview(b"".join(self.packets))
            self.stride = blksize + 4

    def __getitem__(self, index):
        return self.packets[index]

    def __len__(self) -> int:
        return self.total

    def window(self, first: int, last: int) -> list:
        if not self.gso or last == first:
            return self.packets[first - 1:last]
        stride, step, stream = self.stride, self.gso, self.stream
        return [stream[(start - 1) * stride:min(start + step - 1, last) * stride] for start in range(first, last + 1, step)]


class Transfer:
    """Socket-free state of one read transfer.

    Blocks are counted internally as a sequence ``1..total`` without wrap;
    on the wire the number is ``seq & 0xFFFF``.  Methods return the list of
    datagrams to send now.  ``outcome`` becomes ``"finished"``, ``"failed"``
    or ``"aborted"`` (client refused our OACK with error 8 before any data,
    i.e. a tsize probe) when the transfer is over.
    """

    def __init__(self, data: bytes, negotiated: Negotiated, retries: int = 5, blocks=None) -> None:
        self.data = data
        self.size = len(data)
        self.blksize = negotiated.blksize
        self.windowsize = negotiated.windowsize
        self.negotiated = negotiated
        self.total = self.size // self.blksize + 1
        self.blocks = blocks  # DataBlocks for this blksize, or None: build datagrams on demand
        self.max_retries = retries
        self.retries = 0
        self.acked = 0  # highest block (sequence) acknowledged
        self.sent = 0  # highest block (sequence) sent
        self.oack = build_oack(negotiated.oack) if negotiated.oack else None
        self.awaiting_oack = self.oack is not None
        self.started = False  # first DATA sent
        self.progress = 0  # increments on every accepted ACK
        self.outcome = None
        self.error = None
        self.error_code = None

    # -- helpers
    @property
    def done(self) -> bool:
        return self.outcome is not None

    @property
    def bytes_acked(self) -> int:
        return min(self.acked * self.blksize, self.size)

    def _packet(self, seq: int) -> bytes:
        if self.blocks is not None:
            return self.blocks[seq - 1]
        start = (seq - 1) * self.blksize
        return build_data(seq, memoryview(self.data)[start:start + self.blksize])

    def _window(self) -> list:
        first = self.acked + 1
        last = min(self.acked + self.windowsize, self.total)
        self.sent = last
        self.started = True
        if self.blocks is not None:
            return self.blocks.window(first, last)
        return [self._packet(seq) for seq in range(first, last + 1)]

    def _fail(self, message: str, code=None, outcome="failed") -> list:
        self.outcome = outcome
        self.error = message
        self.error_code = code
        return []

    # -- events
    def start(self) -> list:
        """Datagrams that open the transfer: the OACK, or the first window."""
        if self.awaiting_oack:
            return [self.oack]
        return self._window()

    def on_ack(self, block: int) -> list:
        if self.outcome is not None:
            return []
        if self.awaiting_oack:
            if block != 0:
                return []
            self.awaiting_oack = False
            self.retries = 0
            self.progress += 1
            return self._window()
        seq = self.acked + ((block - self.acked) & 0xFFFF)
        if seq <= self.acked or seq > self.sent:
            return []  # duplicate or stale ACK: never retransmit on it (Sorcerer's Apprentice)
        self.acked = seq
        self.retries = 0
        self.progress += 1
        if seq >= self.total:
            self.outcome = "finished"
            return []
        # RFC 7440: the next window starts right after the acknowledged block,
        # which also resends whatever the client reported missing.
        return self._window()

    def on_error(self, code: int, message: str) -> list:
        if self.outcome is not None:
            return []
        if code == ERR_OPTION and not self.started:
            return self._fail("client declined options (%s)" % message, code, "aborted")
        return self._fail("client error %d: %s" % (code, message), code)

    def on_packet(self, data: bytes) -> list:
        """Dispatch a datagram from the client's transfer port."""
        if len(data) >= 4 and data[:2] == _ACK_PREFIX:
            return self.on_ack((data[2] << 8) | data[3])
        if len(data) >= 4 and data[:2] == _ERROR_PREFIX:
            return self.on_error(*parse_error(data))
        return []  # anything else is ignored (RFC 1350 leaves it to the implementation)

    def on_retransmit(self) -> list:
        """Datagrams of the current window again (or the OACK), without counting a retry."""
        if self.outcome is not None:
            return []
        if self.awaiting_oack:
            return [self.oack]
        return self._window()

    def on_timeout(self) -> list:
        """No progress for one timeout: retransmit, or give up after the retries."""
        if self.outcome is not None:
            return []
        if self.retries >= self.max_retries:
            return self._fail("timed out after %d retries" % self.retries)
        self.retries += 1
        if self.awaiting_oack:
            return [self.oack]
        return self._window()


# ------------------------------------------------------------------ files


def load_files(directory: str = DEFAULT_DIRECTORY, names=IPXE_FILES, max_size: int = MAX_FILE_SIZE) -> dict:
    """Read the registered files found in ``directory`` into memory.

    Only the given bare ``names`` are looked up (symlinks are followed, as
    Debian's ipxe.efi is one); missing ones are skipped.  Returns
    ``{name: bytes}``.  Raises ValueError for a non-bare name or a file over
    ``max_size``.
    """
    files = {}
    for name in names:
        if not is_bare_name(name):
            raise ValueError("not a bare file name: %r" % (name,))
        path = os.path.join(directory, name)
        try:
            with open(path, "rb") as f:
                data = f.read(max_size + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            log.debug("tftp: %s not present", path)
            continue
        if len(data) > max_size:
            raise ValueError("%s is larger than %d bytes" % (path, max_size))
        files[name] = data
    return files


# ------------------------------------------------------------------ server


@dataclass(frozen=True)
class TftpEvent:
    """Reported to ``on_event``.  ``kind``: started | finished | failed | refused."""
    kind: str
    client: tuple  # (ip, port) as the socket reports it
    filename: str
    size: int = 0  # file size (0 when refused)
    bytes_sent: int = 0  # bytes acknowledged by the client
    duration: float = 0.0  # seconds since the request arrived
    blksize: int = DEFAULT_BLKSIZE
    windowsize: int = 1
    error: str | None = None


def _client_address(addr) -> tuple:
    """(ip, port) of a socket address; IPv4-mapped IPv6 as plain IPv4."""
    ip = addr[0]
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip[7:]
    return (ip, addr[1])


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, server: "TftpServer") -> None:
        self.server = server

    def datagram_received(self, data, addr) -> None:
        self.server._on_request(data, addr)

    def error_received(self, exc) -> None:
        log.debug("tftp listener: %s", exc)


def _gso_probe(family: int) -> bool:
    """True when the kernel accepts UDP_SEGMENT (Linux >= 4.18)."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.IPPROTO_UDP, UDP_SEGMENT, 1472)
        return True
    except OSError:
        return False


class _Poller:
    """Transfer sockets in one epoll set, itself watched by the asyncio loop.

    One loop callback then serves every transfer socket that is ready,
    instead of one callback per socket (measured in docs/tftp.md).  Falls
    back to ``loop.add_reader`` per socket where epoll is missing.
    """

    def __init__(self, loop) -> None:
        self.loop = loop
        self.handlers = {}
        self.ep = select.epoll() if hasattr(select, "epoll") else None
        if self.ep is not None:
            loop.add_reader(self.ep.fileno(), self._dispatch)

    def add(self, fd: int, callback) -> None:
        if self.ep is None:
            self.loop.add_reader(fd, callback)
            return
        self.handlers[fd] = callback
        self.ep.register(fd, select.EPOLLIN)

    def remove(self, fd: int) -> None:
        if self.ep is None:
            self.loop.remove_reader(fd)
            return
        if self.handlers.pop(fd, None) is not None:
            self.ep.unregister(fd)

    def _dispatch(self) -> None:
        handlers = self.handlers
        for fd, dummy in self.ep.poll(0):
            callback = handlers.get(fd)
            if callback is not None:
                callback()

    def close(self) -> None:
        if self.ep is not None:
            self.loop.remove_reader(self.ep.fileno())
            self.ep.close()
            self.ep = None
        self.handlers.clear()


class _Session:
    """Edge of one transfer: its own ephemeral UDP socket, connected to the client.

    The socket is watched with ``loop.add_reader`` and drained in one
    callback; datagrams are sent with ``socket.send``.  A full send buffer
    (EAGAIN) counts as a lost datagram: the retransmission timer recovers.
    """

    def __init__(self, server, sock, client, filename, transfer, timeout, t0, plain_blocks=None) -> None:
        self.server = server
        self.sock = sock
        self.client = client
        self.filename = filename
        self.transfer = transfer
        self.timeout = timeout
        self.t0 = t0
        self.plain_blocks = plain_blocks  # fallback when GSO sends fail
        self.loop = asyncio.get_running_loop()
        self.deadline = 0.0
        self.timer = None
        self.closed = False
        self.progress = 0
        self.started_reported = False

    def open(self) -> None:
        self.fd = self.sock.fileno()
        self.server._poller.add(self.fd, self._on_readable)
        self._send(self.transfer.start())
        self.deadline = self.loop.time() + self.timeout
        self.timer = self.loop.call_at(self.deadline, self._on_timer)
        self._check()

    def _send(self, packets) -> None:
        send = self.sock.send
        for p in packets:
            try:
                send(p)
            except (BlockingIOError, InterruptedError):
                return  # treated as loss; the client or our timer asks again
            except ConnectionRefusedError:
                self.transfer._fail("client unreachable")
                return
            except OSError as exc:
                if self.plain_blocks is not None and self.transfer.blocks is not self.plain_blocks:
                    log.debug("tftp %s: GSO send failed (%s), sending datagrams one by one", self.client, exc)
                    self.transfer.blocks = self.plain_blocks
                    try:
                        self.sock.setsockopt(socket.IPPROTO_UDP, UDP_SEGMENT, 0)
                    except OSError:
                        pass
                    self._send(self.transfer.on_retransmit())
                else:
                    self.transfer._fail("send failed: %s" % exc)
                return

    def _on_readable(self) -> None:
        # One datagram per callback: a client sends one ACK per window, so a
        # drain loop would mostly pay for a failing recv; epoll is
        # level-triggered and calls again when more is queued.
        transfer = self.transfer
        try:
            data = self.sock.recv(MAX_REQUEST)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionRefusedError:
            # ICMP port unreachable on the connected socket: the client is gone.
            transfer._fail("client unreachable")
            self._finish()
            return
        except OSError as exc:
            transfer._fail("receive failed: %s" % exc)
            self._finish()
            return
        packets = transfer.on_packet(data)
        if packets:
            self._send(packets)
        if transfer.progress != self.progress:
            self.progress = transfer.progress
            self.deadline = self.loop.time() + self.timeout
        if transfer.outcome is not None or not self.started_reported:
            self._check()

    def _on_timer(self) -> None:
        self.timer = None
        if self.closed:
            return
        now = self.loop.time()
        if now < self.deadline:
            self.timer = self.loop.call_at(self.deadline, self._on_timer)
            return
        self._send(self.transfer.on_timeout())
        self.deadline = now + self.timeout
        self._check()
        if not self.closed:
            self.timer = self.loop.call_at(self.deadline, self._on_timer)

    def _check(self) -> None:
        transfer = self.transfer
        if transfer.started and not self.started_reported:
            self.started_reported = True
            self.server._emit("started", self)
        if transfer.outcome is not None:
            self._finish()

    def abort(self, message: str) -> None:
        if not self.transfer.done:
            self.transfer._fail(message)
            try:
                self.sock.send(build_error(ERR_UNDEFINED, message))
            except OSError:
                pass
        self._finish()

    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        transfer = self.transfer
        if transfer.outcome is None:
            transfer._fail("closed")
        self.server._poller.remove(self.fd)
        self.sock.close()
        self.server._forget(self)
        if transfer.outcome == "finished":
            self.server._emit("finished", self)
        elif transfer.outcome == "failed":
            self.server._emit("failed", self, transfer.error)
        else:
            log.debug("tftp %s %s: %s", self.client, self.filename, transfer.error)


class TftpServer:
    """Read-only TFTP server of a fixed set of in-memory files.

    ``files`` maps bare names to contents (see :func:`load_files`).
    ``on_event(TftpEvent)`` is called synchronously from the loop; its
    exceptions are logged and swallowed.  ``timeout`` (seconds) is the
    retransmission timeout unless the client negotiates one; after
    ``retries`` retransmissions without progress a transfer fails, so a
    vanished client holds its slot at most ``(retries + 1) * timeout``.
    At most ``max_transfers`` run at once; further requests are dropped
    unanswered (the client's own retransmission retries later). With
    ``max_transfers_per_client``, one client address runs at most that many
    at once, so a host that opens transfers and abandons them cannot take
    every slot from the machines that are booting.
    blksize is capped to what fits ``mtu`` unfragmented (1468 for IPv4 and
    1448 for IPv6 clients at 1500), or to ``max_blksize`` when given.
    ``gso`` allows Linux UDP GSO to send a window in one system call.
    Event client addresses are ``(ip, port)``, IPv4-mapped IPv6 shown as IPv4.
    """

    def __init__(self, files, on_event=None, max_transfers: int = 64, retries: int = 5, timeout: float = 1.0,
                 mtu: int = 1500, max_blksize: int | None = None, max_windowsize: int = MAX_WINDOWSIZE, gso: bool = True,
                 max_transfers_per_client: int | None = None) -> None:
        for name in files:
            if not is_bare_name(name):
                raise ValueError("not a bare file name: %r" % (name,))
        self.files = {name: bytes(data) for name, data in files.items()}
        self.on_event = on_event
        self.max_transfers = max_transfers
        self.max_transfers_per_client = max_transfers_per_client
        self._per_client = {}  # client IP -> transfers running
        self.retries = retries
        self.timeout = timeout
        self.mtu = mtu
        self.max_blksize = max_blksize
        self.max_windowsize = max_windowsize
        self.gso = gso
        self.host = None
        self._gso_ok = {}  # address family -> bool
        self._listener = None
        self._poller = None
        self._sessions = {}  # client address -> _Session
        self._blocks = OrderedDict()  # (filename, blksize, gso segments) -> DataBlocks
        self._blocks_cache_size = 16

    # -- public
    async def start(self, host: str = "0.0.0.0", port: int = DEFAULT_PORT) -> None:
        """Listen on ``host``:``port`` (UDP).  Transfers use ephemeral ports on ``host``."""
        loop = asyncio.get_running_loop()
        self._listener, dummy = await loop.create_datagram_endpoint(lambda: _Listener(self), local_addr=(host, port))
        self.host = host
        self._poller = _Poller(loop)

    @property
    def address(self):
        """(host, port) the listener is bound to (the real port when 0 was asked)."""
        return self._listener.get_extra_info("sockname")[:2] if self._listener else None

    @property
    def active_transfers(self) -> int:
        return len(self._sessions)

    async def close(self) -> None:
        """Stop listening and abort running transfers (the client gets error 0)."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for session in list(self._sessions.values()):
            session.abort("server shutting down")
        self._sessions.clear()
        self._per_client.clear()
        if self._poller is not None:
            self._poller.close()
            self._poller = None
        await asyncio.sleep(0)

    # -- internals
    def _emit(self, kind, session, error=None, client=None, filename=None) -> None:
        if self.on_event is None:
            return
        if session is not None:
            t = session.transfer
            event = TftpEvent(kind, _client_address(session.client), session.filename, t.size, t.bytes_acked,
                              time.monotonic() - session.t0, t.blksize, t.windowsize, error)
        else:
            event = TftpEvent(kind, _client_address(client), filename, error=error)
        try:
            self.on_event(event)
        except Exception:  # the hook must never break the server
            log.exception("tftp on_event hook failed")

    def _forget(self, session) -> None:
        if self._sessions.get(session.client) is session:
            del self._sessions[session.client]
            ip = session.client[0]
            left = self._per_client.get(ip, 1) - 1
            if left > 0:
                self._per_client[ip] = left
            else:
                self._per_client.pop(ip, None)

    def _blocks_for(self, filename: str, blksize: int, gso: int = 0):
        if len(self.files[filename]) // blksize >= MAX_CACHED_BLOCKS:
            return None
        key = (filename, blksize, gso)
        blocks = self._blocks.get(key)
        if blocks is None:
            blocks = DataBlocks(self.files[filename], blksize, gso)
            self._blocks[key] = blocks
            while len(self._blocks) > self._blocks_cache_size:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(key)
        return blocks

    def _refuse(self, addr, code, message, filename="") -> None:
        if self._listener is not None:
            self._listener.sendto(build_error(code, message), addr)
        self._emit("refused", None, message, addr, filename)

    def _on_request(self, data: bytes, addr) -> None:
        if len(data) < 2 or data[0] != 0 or data[1] not in (OP_RRQ, OP_WRQ):
            return  # not a request: stay silent on the well-known port
        if addr in self._sessions:
            return  # retransmitted RRQ of a running transfer: its timer resends
        try:
            req = parse_request(data)
            name = check_request(req, self.files)
        except TftpError as exc:
            filename = data[2:2 + MAX_FILENAME].split(b"\0", 1)[0].decode("latin-1")
            self._refuse(addr, exc.code, exc.message, filename)
            return
        if len(self._sessions) >= self.max_transfers:
            log.warning("tftp: %d transfers running, dropping request from %s", len(self._sessions), addr)
            self._emit("refused", None, "too many transfers", addr, name)
            return
        if self.max_transfers_per_client is not None and self._per_client.get(addr[0], 0) >= self.max_transfers_per_client:
            log.debug("tftp: %s already runs %d transfers, dropping its request", addr[0], self._per_client[addr[0]])
            self._emit("refused", None, "too many transfers from this client", addr, name)
            return
        content = self.files[name]
        cap = self.max_blksize
        if cap is None:
            cap = blksize_for_mtu(self.mtu, ipv6=":" in addr[0] and not addr[0].startswith("::ffff:"))
        neg = negotiate(req.options, len(content), cap, self.max_windowsize)
        try:
            sock = self._transfer_socket(addr)
        except OSError as exc:
            log.warning("tftp: cannot open a transfer socket for %s: %s", addr, exc)
            self._refuse(addr, ERR_UNDEFINED, "server error", name)
            return
        plain = self._blocks_for(name, neg.blksize)
        blocks = plain
        segments = min(GSO_MAX_SEGMENTS, GSO_MAX_BYTES // (neg.blksize + 4), neg.windowsize)
        if self.gso and plain is not None and segments > 1 and self._gso_ok.get(sock.family):
            try:
                sock.setsockopt(socket.IPPROTO_UDP, UDP_SEGMENT, neg.blksize + 4)
                blocks = self._blocks_for(name, neg.blksize, segments)
            except OSError:
                blocks = plain
        transfer = Transfer(content, neg, self.retries, blocks)
        timeout = float(neg.timeout) if neg.timeout is not None else self.timeout
        session = _Session(self, sock, addr, name, transfer, timeout, time.monotonic(), plain)
        self._sessions[addr] = session
        self._per_client[addr[0]] = self._per_client.get(addr[0], 0) + 1
        session.open()

    def _transfer_socket(self, addr):
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        if self.gso and family not in self._gso_ok:
            self._gso_ok[family] = _gso_probe(family)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            host = self.host or ""
            if family == socket.AF_INET6:
                sock.bind((host if ":" in host else "::", 0))
            else:
                sock.bind((host if host and ":" not in host else "0.0.0.0", 0))
            sock.connect(addr)
        except OSError:
            sock.close()
            raise
        return sock
