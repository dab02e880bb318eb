# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a TFTP read is allowed and how it runs: file names, option negotiation, the transfer's state machine.

Pure and socket-free: :class:`Transfer` takes the client's datagrams and
timeouts and answers with the datagrams to send; :mod:`..serve.tftp` moves
them between it and the sockets. The packets are :mod:`..wire.tftp`.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.tftp import (
    DEFAULT_BLKSIZE, ERR_ACCESS, ERR_NOT_FOUND, ERR_OPTION, ERR_UNDEFINED, OP_WRQ, MAX_BLKSIZE, MIN_BLKSIZE, ACK_PREFIX, ERROR_PREFIX,
    Request, TftpError, build_data, build_oack, parse_error)

#: 1500 (Ethernet MTU) - 20 (IPv4) - 8 (UDP) - 4 (TFTP header); what OVMF asks.
DEFAULT_MAX_BLKSIZE = 1468
MAX_WINDOWSIZE = 64
MIN_TIMEOUT = 1
MAX_TIMEOUT = 255
MAX_FILENAME = 128

_FORBIDDEN_CHARS = frozenset("/\\%:\0")


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


def check_filename(name: str, files: Container[str]) -> str:
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


def check_request(req: Request, files: Container[str]) -> str:
    """Refusals that do not depend on options: WRQ, modes, file name."""
    if req.opcode == OP_WRQ:
        raise TftpError(ERR_ACCESS, "read-only server")
    if req.mode != "octet":
        # netascii would make the client rewrite CR/LF inside the binary.
        raise TftpError(ERR_UNDEFINED, "only octet (binary) mode is served")
    return check_filename(req.filename, files)


# ------------------------------------------------------------ negotiation


def blksize_for_mtu(mtu: int, ipv6: bool = False) -> int:
    """Largest blksize whose DATA datagram fits ``mtu`` unfragmented."""
    return max(MIN_BLKSIZE, min(MAX_BLKSIZE, mtu - (40 if ipv6 else 20) - 8 - 4))


def _int_option(value: str) -> int | None:
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

    def __getitem__(self, index: int) -> bytes:
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

    def __init__(self, data: bytes, negotiated: Negotiated, retries: int = 5, blocks: DataBlocks | None = None) -> None:
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

    def _fail(self, message: str, code: int | None = None, outcome: str = "failed") -> list:
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
        if len(data) >= 4 and data[:2] == ACK_PREFIX:
            return self.on_ack((data[2] << 8) | data[3])
        if len(data) >= 4 and data[:2] == ERROR_PREFIX:
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
