# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent API's own HTTP/1.1 connections, in front of aiohttp on the same port.

Every connection to the HTTP port starts here. When its first request is a
plain API request — GET, HEAD or POST of a path under ``/api/``, HTTP/1.0 or
1.1, a head within :data:`..wire.http_api.MAX_HEAD`, no body or one announced by
Content-Length within the API's limit, no Transfer-Encoding or Upgrade —
this module reads it, :class:`~.api_service.AgentApi` answers it, and the answer
goes out with ``Connection: close``: right when the connection is accepted
if the request is whole by then and needs no waiting, else once the
connection is an asyncio transport. That is every phone-home (curl,
busybox wget) and every wait_for_agent long-poll. Anything else — boot
files, and any request this reader does not take, malformed ones included —
is handed with the bytes read so far to aiohttp's request handler, which
serves it with full HTTP semantics (its ``/api/`` route asks the same
:class:`~.api_service.AgentApi`).

Why not aiohttp for everything: a rack's installers phone home in the same
instant, and aiohttp's work per connection (request object, router,
middlewares, a task per request) was most of their cost; docs/performance.md
has the figures.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import logging
import socket
import struct
import time
from collections.abc import Coroutine
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import api as agent_api
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.api_service import AgentApi
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.http_api import HAND_OVER, MAX_HEAD, NEED_MORE, RequestHead, encode_answer, read_head

# A connection that has not sent a whole request head this long after it opened is closed.
HEAD_TIMEOUT = 15.0
# How often connections are checked for a request head or body that is late, in seconds.
SWEEP_INTERVAL = 1.0
# Connections open on the HTTP port at most (the server sets it from its open-files limit).
DEFAULT_MAX_CONNECTIONS = 4096
# Connections accepted per wake-up of a listening socket (asyncio's create_server takes its backlog).
ACCEPT_BATCH = 256
# Seconds the kernel holds a connection that has sent nothing before handing it over anyway.
DEFER_ACCEPT_SECONDS = 5


class _HttpDate:
    """The Date header's value, formatted once a second."""

    def __init__(self) -> None:
        self._second = None
        self._text = None

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second, self._text = now, email.utils.formatdate(now, usegmt=True)
        return self._text


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking TCP socket listening on ``host``:``port``; OSError when it cannot bind.

    With ``TCP_DEFER_ACCEPT`` (Linux) the kernel hands a connection over once its
    first bytes are there, so most API requests are whole when accepted.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # beside the IPv4 listener
        if hasattr(socket, "TCP_DEFER_ACCEPT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT_SECONDS)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class ApiConnections:
    """The HTTP port: API requests answered here, every other connection handed to aiohttp.

    ``api``: the run's :class:`~.api_service.AgentApi`. ``hand_over``: aiohttp's
    ``web.Server`` (``AppRunner.server``), which makes the protocol of a
    connection handed to it and knows those it serves.

    A connection accepted with a whole API request that is answered at once
    (a phone-home, a long-poll with news) is answered and closed right there,
    with no transport, protocol or task: a rack's phone-homes arriving in the
    same instant cost the event loop as little as they can. Any other
    connection becomes an asyncio transport with :class:`_ApiConnection` as its
    protocol, which reads the rest, answers long-polls when they end, or hands
    the connection to aiohttp. Those are kept, so :meth:`close` can end them at
    shutdown, and ended when their request does not arrive in time: one sweep a
    second for all of them. A connection beyond ``max_connections`` open on the
    port (here and in aiohttp) is reset at once: a host flooding the port cannot
    take the file descriptors TFTP transfers need.
    """

    def __init__(self, api: AgentApi, hand_over: Any, access_log: logging.Logger | None = None,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        self.api = api
        self.hand_over = hand_over
        self.access_log = access_log or logging.getLogger("nixie.metal.netboot.http.access")
        self.max_connections = max_connections
        self.live = set()
        self.refused = 0
        self.answered_at_once = 0
        self.date = _HttpDate()
        self.sockets = []
        self._loop = None
        self._adopting = set()
        self._sweeper = None

    # -- listening -------------------------------------------------------------

    def listen(self, host: str, port: int, backlog: int) -> None:
        """Accept connections on ``host``:``port`` from now on; OSError when it cannot bind."""
        self._loop = asyncio.get_running_loop()
        sock = listening_socket(host, port, backlog)
        self.sockets.append(sock)
        self._loop.add_reader(sock.fileno(), self._accept_ready, sock)

    def stop_accepting(self) -> None:
        for sock in self.sockets:
            if not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self.sockets = []

    def _accept_ready(self, listener: socket.socket) -> None:
        for dummy in range(ACCEPT_BATCH):
            try:
                conn, dummy = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors or memory: stop accepting for a while, as asyncio does.
                    self.api.log.warning("HTTP: cannot accept connections for now (%s); trying again in 1 s", exc)
                    self._loop.remove_reader(listener.fileno())
                    self._loop.call_later(1.0, self._resume, listener)
                return
            self._accepted(conn)

    def _resume(self, listener: socket.socket) -> None:
        if listener in self.sockets:
            self._loop.add_reader(listener.fileno(), self._accept_ready, listener)

    def full(self) -> bool:
        """Whether the port already has ``max_connections`` open."""
        return len(self.live) + len(self.hand_over.connections) >= self.max_connections

    def _accepted(self, conn: socket.socket) -> None:
        if self.full():
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                self.api.log.warning("HTTP connections refused: %d open is the limit (%d refused so far)",
                                     self.max_connections, self.refused)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset, not a goodbye
            conn.close()
            return
        conn.setblocking(False)
        started = time.monotonic()
        try:
            data = conn.recv(MAX_HEAD + self.api.max_body)
        except (BlockingIOError, InterruptedError):
            data = b""
        except OSError:
            conn.close()
            return
        wire = self._answer_at_once(conn, data, started) if data else None
        if wire is None:
            self._adopt(conn, _ApiConnection(self, data, started))
            return
        try:
            sent = conn.send(wire)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            conn.close()
            return
        if sent == len(wire):
            conn.close()
        else:
            self._adopt(conn, _Remainder(wire[sent:]))

    def _answer_at_once(self, conn: socket.socket, data: bytes, started: float) -> bytes | None:
        """The bytes answering ``data`` when it is a whole API request answered without waiting, else None."""
        head = read_head(data, self.api.max_body)
        if not isinstance(head, RequestHead) or len(data) - head.size < head.content_length:
            return None
        try:
            peer = conn.getpeername()[0]
        except OSError:
            return None
        request = agent_api.ApiRequest(method=head.method, path=head.path, query=head.query, headers=head.headers,
                                       body=data[head.size:head.size + head.content_length], peer=peer)
        answer = _answer(self.api, request)
        if not isinstance(answer, agent_api.ApiAnswer):
            answer.close()  # a long-poll: asked again once the connection is a transport that can wait
            return None
        self.answered_at_once += 1
        return self.wire(head, answer, peer, started)

    def _adopt(self, conn: socket.socket, protocol: asyncio.Protocol) -> None:
        task = self._loop.create_task(self._make_transport(conn, protocol))
        self._adopting.add(task)
        task.add_done_callback(self._adopting.discard)

    async def _make_transport(self, conn: socket.socket, protocol: asyncio.Protocol) -> None:
        try:
            await self._loop.connect_accepted_socket(lambda: protocol, conn)
        except OSError:
            conn.close()

    # -- connections -----------------------------------------------------------

    def wire(self, head: RequestHead, answer: agent_api.ApiAnswer, peer: str | None, started: float) -> bytes:
        """The bytes of ``answer`` to ``head`` (an access log line when that log is on)."""
        data = encode_answer(answer, head_only=head.method == "HEAD", date=self.date())
        if self.access_log.isEnabledFor(logging.INFO):
            self.access_log.info('%s "%s %s %s" %d %d %.6fs "%s"', peer, head.method, head.target[:200], head.version,
                                 answer.status, len(data), time.monotonic() - started, head.headers.get("user-agent", "-")[:200])
        return data

    def opened(self, connection: _ApiConnection) -> None:
        self.live.add(connection)
        if self._sweeper is None:
            self._sweeper = self._loop.call_later(SWEEP_INTERVAL, self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        for connection in [c for c in self.live if c.deadline is not None and c.deadline <= now]:
            connection.timed_out()
        self._sweeper = self._loop.call_later(SWEEP_INTERVAL, self._sweep) if self.live else None

    async def close(self, grace: float = 1.0) -> None:
        """Stop accepting; close every connection still here once long-polls the API already answered are sent.

        A long-poll still waiting after ``grace`` seconds is cancelled with its connection.
        """
        self.stop_accepting()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._adopting:
            await asyncio.wait(list(self._adopting), timeout=grace)
        answering = [c.task for c in self.live if c.task is not None and not c.task.done()]
        if answering:
            await asyncio.wait(answering, timeout=grace)
        for connection in list(self.live):
            connection.close()


def _answer(api: AgentApi, request: agent_api.ApiRequest) -> agent_api.ApiAnswer | Coroutine[Any, Any, agent_api.ApiAnswer]:
    """``api.answer(request)``, or a 500 answer (logged) when it fails."""
    try:
        return api.answer(request)
    except Exception:
        api.log.exception("internal error on %s %s", request.method, request.path[:200])
        return agent_api.internal_error()


class _Remainder(asyncio.Protocol):
    """Sends the rest of an answer that did not fit in the socket's buffer, then closes."""

    def __init__(self, rest: bytes) -> None:
        self.rest = rest

    def connection_made(self, transport: Any) -> None:
        transport.write(self.rest)
        transport.close()


class _ApiConnection(asyncio.Protocol):
    """One connection until its first request is answered here or handed to aiohttp.

    ``initial``: the bytes read when the connection was accepted.
    """

    def __init__(self, owner: ApiConnections, initial: bytes = b"", started: float | None = None) -> None:
        self.owner = owner
        self.transport = None
        self.peer = None
        self.buffer = bytearray()
        self.initial = initial
        self.head = None
        self.task = None
        self.started = started or time.monotonic()
        # Until when the request head (then its body) may take to arrive; None once it has.
        self.deadline = self.started + HEAD_TIMEOUT

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.owner.opened(self)
        initial, self.initial = self.initial, None
        if initial:
            self.data_received(initial)

    def data_received(self, data: bytes) -> None:
        if self.buffer is None:
            return  # anything after the request (pipelining) is dropped: the answer says Connection: close
        self.buffer += data
        if self.head is None:
            head = read_head(self.buffer, self.owner.api.max_body)
            if head is NEED_MORE:
                return
            if head is HAND_OVER:
                self._hand_over()
                return
            self.head = head
            if len(self.buffer) - head.size < head.content_length:
                self.deadline = time.monotonic() + agent_api.BODY_TIMEOUT
                if head.expect_continue:
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return
        if len(self.buffer) - self.head.size >= self.head.content_length:
            self._answer(bytes(self.buffer[self.head.size:self.head.size + self.head.content_length]))

    def _hand_over(self) -> None:
        self.owner.live.discard(self)
        protocol = self.owner.hand_over()
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(bytes(self.buffer))
        self.buffer = None

    def timed_out(self) -> None:
        """The head or the body did not arrive in time: close, or answer 408 to a body that is late."""
        self.deadline = None
        if self.head is None:
            self.close()
        else:
            self.buffer = None
            self._send(agent_api.body_timeout())

    def _answer(self, body: bytes) -> None:
        self.buffer = None
        self.deadline = None
        head = self.head
        self.peer = _peer(self.transport)
        request = agent_api.ApiRequest(method=head.method, path=head.path, query=head.query, headers=head.headers,
                                       body=body, peer=self.peer)
        answer = _answer(self.owner.api, request)
        if isinstance(answer, agent_api.ApiAnswer):
            self._send(answer)
        else:
            self.task = asyncio.get_running_loop().create_task(self._send_when_done(answer))

    async def _send_when_done(self, waiting: Coroutine[Any, Any, agent_api.ApiAnswer]) -> None:
        try:
            answer = await waiting
        except asyncio.CancelledError:
            raise
        except Exception:
            self.owner.api.log.exception("internal error on %s %s", self.head.method, self.head.path[:200])
            answer = agent_api.internal_error()
        self._send(answer)

    def _send(self, answer: agent_api.ApiAnswer) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(self.owner.wire(self.head, answer, self.peer, self.started))
        self.transport.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.owner.live.discard(self)


def _peer(transport: Any) -> str | None:
    peername = transport.get_extra_info("peername")
    return peername[0] if peername else None
