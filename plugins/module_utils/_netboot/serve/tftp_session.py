# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One TFTP transfer's socket (:class:`Session`) and the epoll set that serves them all (:class:`Poller`).

A session moves datagrams between its connected UDP socket and the
socket-free :class:`..decide.tftp_transfer.Transfer`; :class:`.tftp.TftpServer`
admits requests and makes the sessions. Sends use Linux UDP GSO where the
kernel has it (:func:`gso_probe`).
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
from collections.abc import Callable, Iterable
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.tftp_transfer import DataBlocks, Transfer
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.tftp import ERR_UNDEFINED, MAX_REQUEST, build_error

log = logging.getLogger(__name__)

#: Linux UDP GSO (setsockopt SOL_UDP UDP_SEGMENT); limits of one GSO send.
UDP_SEGMENT = 103
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65000


def gso_probe(family: int) -> bool:
    """True when the kernel accepts UDP_SEGMENT (Linux >= 4.18)."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.IPPROTO_UDP, UDP_SEGMENT, 1472)
        return True
    except OSError:
        return False


class Poller:
    """Transfer sockets in one epoll set, itself watched by the asyncio loop.

    One loop callback then serves every transfer socket that is ready,
    instead of one callback per socket (measured in docs/tftp.md).  Falls
    back to ``loop.add_reader`` per socket where epoll is missing.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.handlers = {}
        self.ep = select.epoll() if hasattr(select, "epoll") else None
        if self.ep is not None:
            loop.add_reader(self.ep.fileno(), self._dispatch)

    def add(self, fd: int, callback: Callable[[], object]) -> None:
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


class Session:
    """Edge of one transfer: its own ephemeral UDP socket, connected to the client.

    The socket is watched with ``loop.add_reader`` and drained in one
    callback; datagrams are sent with ``socket.send``.  A full send buffer
    (EAGAIN) counts as a lost datagram: the retransmission timer recovers.
    """

    def __init__(self, server: Any, sock: socket.socket, client: tuple, filename: str, transfer: Transfer, timeout: float,
                 t0: float, plain_blocks: DataBlocks | None = None) -> None:
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

    def _send(self, packets: Iterable[bytes | memoryview]) -> None:
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
