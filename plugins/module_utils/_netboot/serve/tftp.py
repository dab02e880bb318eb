# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

# Read-only asyncio TFTP server for the registered iPXE binaries.
#
# Protocol decisions are pure functions and a socket-free state machine
# (wire.tftp.parse_request, decide.tftp_transfer: check_request, negotiate,
# Transfer); TftpServer only moves datagrams between them and asyncio
# transports.  Options: blksize (RFC 2348), timeout and tsize (RFC 2349),
# windowsize (RFC 7440).  See docs/tftp.md.

import asyncio
import logging
import os
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass

from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.tftp_transfer import (
    MAX_FILENAME, MAX_WINDOWSIZE, DataBlocks, Transfer, blksize_for_mtu, check_request, is_bare_name, negotiate)
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import tftp_session
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.options import IPXE_DIR
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.tftp import (
    DEFAULT_BLKSIZE, ERR_UNDEFINED, OP_RRQ, OP_WRQ, TftpError, build_error, parse_request)

log = logging.getLogger(__name__)

#: The only file names TFTP serves (engine contract).
IPXE_FILES = ("undionly.kpxe", "ipxe.efi", "snponly.efi", "ipxe-arm64.efi")

MAX_FILE_SIZE = 64 * 1024 * 1024
#: Above this many blocks DATA datagrams are built per send instead of cached.
MAX_CACHED_BLOCKS = 1 << 17
DEFAULT_PORT = 69


# ------------------------------------------------------------------ files


def load_files(directory: str = IPXE_DIR, names: Iterable[str] = IPXE_FILES, max_size: int = MAX_FILE_SIZE) -> dict:
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


def _client_address(addr: tuple) -> tuple:
    """(ip, port) of a socket address; IPv4-mapped IPv6 as plain IPv4."""
    ip = addr[0]
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip[7:]
    return (ip, addr[1])


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, server: "TftpServer") -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.server._on_request(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("tftp listener: %s", exc)


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

    def __init__(self, files: Mapping[str, bytes], on_event: Callable[[TftpEvent], object] | None = None,
                 max_transfers: int = 64, retries: int = 5, timeout: float = 1.0, mtu: int = 1500,
                 max_blksize: int | None = None, max_windowsize: int = MAX_WINDOWSIZE, gso: bool = True,
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
        self._sessions = {}  # client address -> tftp_session.Session
        self._blocks = OrderedDict()  # (filename, blksize, gso segments) -> DataBlocks
        self._blocks_cache_size = 16

    # -- public
    async def start(self, host: str = "0.0.0.0", port: int = DEFAULT_PORT) -> None:
        """Listen on ``host``:``port`` (UDP).  Transfers use ephemeral ports on ``host``."""
        loop = asyncio.get_running_loop()
        self._listener, dummy = await loop.create_datagram_endpoint(lambda: _Listener(self), local_addr=(host, port))
        self.host = host
        self._poller = tftp_session.Poller(loop)

    @property
    def address(self) -> tuple | None:
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
    def _emit(self, kind: str, session: tftp_session.Session | None, error: str | None = None, client: tuple | None = None,
              filename: str | None = None) -> None:
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

    def _forget(self, session: tftp_session.Session) -> None:
        if self._sessions.get(session.client) is session:
            del self._sessions[session.client]
            ip = session.client[0]
            left = self._per_client.get(ip, 1) - 1
            if left > 0:
                self._per_client[ip] = left
            else:
                self._per_client.pop(ip, None)

    def _blocks_for(self, filename: str, blksize: int, gso: int = 0) -> DataBlocks | None:
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

    def _refuse(self, addr: tuple, code: int, message: str, filename: str = "") -> None:
        if self._listener is not None:
            self._listener.sendto(build_error(code, message), addr)
        self._emit("refused", None, message, addr, filename)

    def _on_request(self, data: bytes, addr: tuple) -> None:
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
        segments = min(tftp_session.GSO_MAX_SEGMENTS, tftp_session.GSO_MAX_BYTES // (neg.blksize + 4), neg.windowsize)
        if self.gso and plain is not None and segments > 1 and self._gso_ok.get(sock.family):
            try:
                sock.setsockopt(socket.IPPROTO_UDP, tftp_session.UDP_SEGMENT, neg.blksize + 4)
                blocks = self._blocks_for(name, neg.blksize, segments)
            except OSError:
                blocks = plain
        transfer = Transfer(content, neg, self.retries, blocks)
        timeout = float(neg.timeout) if neg.timeout is not None else self.timeout
        session = tftp_session.Session(self, sock, addr, name, transfer, timeout, time.monotonic(), plain)
        self._sessions[addr] = session
        self._per_client[addr[0]] = self._per_client.get(addr[0], 0) + 1
        session.open()

    def _transfer_socket(self, addr: tuple) -> socket.socket:
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        if self.gso and family not in self._gso_ok:
            self._gso_ok[family] = tftp_session.gso_probe(family)
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
