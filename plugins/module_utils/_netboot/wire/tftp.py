# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""TFTP packets (RFC 1350, options RFC 2347-2349, windowsize RFC 7440): bytes <-> requests and datagrams.

No sockets and no decisions: what a request asks for is read here, whether it
is served is decided in :mod:`..decide.tftp_transfer`, and the server that
moves the datagrams is :mod:`..serve.tftp`. See docs/tftp.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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

DEFAULT_BLKSIZE = 512
MIN_BLKSIZE = 8
MAX_BLKSIZE = 65464
MAX_REQUEST = 2048

ACK_PREFIX = b"\x00\x04"
ERROR_PREFIX = b"\x00\x05"
_MODES = ("octet", "netascii", "mail")


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


def build_error(code: int, message: str) -> bytes:
    return ERROR_PREFIX + code.to_bytes(2, "big") + message.encode("ascii", "replace") + b"\0"


def build_oack(options: dict) -> bytes:
    parts = [b"\x00\x06"]
    for name, value in options.items():
        parts.append(name.encode("ascii") + b"\0" + str(value).encode("ascii") + b"\0")
    return b"".join(parts)


def build_ack(block: int) -> bytes:
    return ACK_PREFIX + (block & 0xFFFF).to_bytes(2, "big")


def build_data(block: int, payload: bytes | bytearray | memoryview) -> bytes:
    return b"\x00\x03" + (block & 0xFFFF).to_bytes(2, "big") + bytes(payload)


def build_request(filename: str, mode: str = "octet", options: Mapping[str, object] | None = None, opcode: int = OP_RRQ) -> bytes:
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
