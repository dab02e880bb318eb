# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent API of one run: :class:`AgentApi` answers every request under ``/api/`` with the run's state.

It reads the registry, waits for its events (long-polls, :class:`ChangeNotifier`)
and asks the kernel who sent a phone-home (the segment check) before the
registry reads it; what it answers, and with which status, is
:mod:`..decide.api`. Its front ends are :mod:`.api_http` and :mod:`.http`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._hosts import normalize_mac
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import events
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import trust
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.agent_report import RegistryError
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.api import (
    API_PREFIX, BEARER_CHALLENGE, DEFAULT_MAX_BODY, DEFAULT_MAX_WAIT, ApiAnswer, ApiRequest, bearer_token, decode_json_body, endpoint, failure,
    status_of, wait_params)
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.binding import SegmentCheck
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.registry import Registry

# Long-polls are answered once registry events pause this long, and at most WAKE_MAX_DELAY
# after the first (see ChangeNotifier), in seconds.
WAKE_QUIET = 0.01
WAKE_MAX_DELAY = 0.5


class ChangeNotifier:
    """Wakes long-polls when the registry changes; safe to call from any thread.

    A waiter names what it waits for: one host's MAC, or None for any change.
    An event wakes the waiters of its own host and those of any change only,
    so a rack of wait_for_agent long-polls costs one wake-up per event instead
    of one per waiting host. Waiters are woken once events pause for
    :data:`WAKE_QUIET` (at most :data:`WAKE_MAX_DELAY` after the first): when
    a rack phones home at once, the installers are answered first and the
    controller's long-polls after (docs/performance.md).
    """

    def __init__(self) -> None:
        self._loop = None
        self._waiters = {}  # MAC or None -> set of futures
        self._changed = set()  # MACs with events not yet told to their waiters
        self._first = self._last = 0.0
        self._flush = None
        self.closing = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __call__(self, event: Mapping[str, Any] | None = None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        key = event.get("mac") if isinstance(event, dict) else None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._changed_now(key)
        else:
            loop.call_soon_threadsafe(self._changed_now, key)

    def _changed_now(self, key: str | None) -> None:
        now = self._loop.time()
        self._last = now
        if key is not None:
            self._changed.add(key)
        if self._flush is None:
            self._first = now
            self._flush = self._loop.call_at(now + WAKE_QUIET, self._wake_changed)

    def _wake_changed(self) -> None:
        settled_at = min(self._last + WAKE_QUIET, self._first + WAKE_MAX_DELAY)
        if self._loop.time() < settled_at:
            self._flush = self._loop.call_at(settled_at, self._wake_changed)
            return
        self._flush = None
        changed, self._changed = self._changed, set()
        self._wake(list(changed) + [None])

    def _wake(self, keys: Iterable[str | None]) -> None:
        for each in keys:
            for future in self._waiters.pop(each, ()):
                if not future.done():
                    future.set_result(None)

    def close(self) -> None:
        self.closing = True
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._wake(list(self._waiters))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, key: str | None = None) -> bool:
        """Wait until ``predicate()`` is true or ``timeout`` seconds pass; return predicate().

        ``key``: the MAC whose events can make the predicate true, or None for any event.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate() and not self.closing:
            remaining = deadline - loop.time()
            if remaining <= 0 or self._loop is None:
                break
            future = loop.create_future()
            waiters = self._waiters.setdefault(key, set())
            waiters.add(future)
            timer = loop.call_at(deadline, _set_if_pending, future)
            try:
                await future
            finally:
                timer.cancel()
                waiters.discard(future)
                if not waiters and self._waiters.get(key) is waiters:
                    del self._waiters[key]
        return predicate()


def _set_if_pending(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class AgentApi:
    """The API of one run: ``answer(request)`` for every request under ``/api/``.

    Attributes the server may use: ``stop_requested`` (an asyncio.Event set
    by POST /api/v1/stop, made by :meth:`attach`), ``stop_reason``,
    ``notifier``.
    """

    def __init__(self, registry: Registry, on_event: Callable[[dict[str, Any]], object] | None = None,
                 admin_token: str | None = None, max_wait: float = DEFAULT_MAX_WAIT, run_id: str | None = None,
                 logger: logging.Logger | None = None, max_body: int = DEFAULT_MAX_BODY, segment: SegmentCheck | None = None) -> None:
        self.registry = registry
        self.segment = segment
        self.on_event = on_event
        self.admin_token = admin_token
        self.max_wait = float(max_wait)
        self.run_id = run_id
        self.max_body = int(max_body)
        self.log = logger
        self.notifier = ChangeNotifier()
        self.stop_requested = None
        self.stop_reason = None
        self._remove_listener = None

    # -- lifecycle -----------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start answering in ``loop``: long-polls wake on registry events from now on."""
        self.notifier.attach(loop)
        self.stop_requested = asyncio.Event()
        self._remove_listener = self.registry.add_listener(self.notifier)

    def close(self) -> None:
        """Answer every waiting long-poll now (``stopping: true``) and stop listening to the registry."""
        self.notifier.close()
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None

    def emit(self, event: Mapping[str, Any] | None) -> None:
        if event is None or self.on_event is None:
            return
        try:
            self.on_event(dict(event))
        except Exception:
            self.log.exception("on_event hook failed for event %r", event.get("event"))

    # -- dispatch ------------------------------------------------------------

    def answer(self, request: ApiRequest) -> ApiAnswer | Coroutine[Any, Any, ApiAnswer]:
        """The :class:`ApiAnswer` to ``request``, or for a long-poll a coroutine that returns it.

        Everything but a long-poll is answered at once, without a task: a rack's
        phone-homes cost the event loop as little as possible.
        """
        found = endpoint(request.method, request.path)
        if isinstance(found, ApiAnswer):
            return found
        name, mac = found
        if name == "health":
            return self.health()
        if name == "phone_home":
            return self.phone_home(request)
        if name == "stop":
            return self.stop(request)
        try:
            wait, after = wait_params(request.query, self.max_wait)
        except ValueError as exc:
            return failure(400, str(exc), "bad_query")
        if name == "hosts":
            return self._long_poll(self.hosts_answer, lambda: self.registry.seq > after, wait, after)
        normal = normalize_mac(mac)
        if normal is None:
            return failure(400, "%r is not a MAC address; use the form 52:54:00:12:34:01" % mac[:40], "bad_mac")
        if not self.registry.is_known(normal):
            return failure(404, "%s is not a host of this run; GET %s/hosts lists them" % (normal, API_PREFIX), "unknown_host")
        return self._long_poll(lambda timed_out: self.host_answer(normal, timed_out),
                               lambda: self.registry.last_seq(normal) > after, wait, after, key=normal)

    def _long_poll(self, answer: Callable[[bool], ApiAnswer], has_news: Callable[[], bool], wait: float, after: int | None,
                   key: str | None = None) -> ApiAnswer | Coroutine[Any, Any, ApiAnswer]:
        if after is None or wait <= 0 or has_news():
            return answer(False)
        if self.notifier.closing:
            return answer(True)
        return self._wait_then(answer, has_news, wait, key)

    async def _wait_then(self, answer: Callable[[bool], ApiAnswer], has_news: Callable[[], bool], wait: float,
                         key: str | None) -> ApiAnswer:
        news = await self.notifier.wait_for(has_news, wait, key=key)
        return answer(not news)

    # -- endpoints -----------------------------------------------------------

    def health(self) -> ApiAnswer:
        return ApiAnswer(200, {"ok": True, "service": "nixie.metal", "run_id": self.run_id,
                               "seq": self.registry.seq, "all_done": self.registry.all_done()})

    def phone_home(self, request: ApiRequest) -> ApiAnswer | Coroutine[Any, Any, ApiAnswer]:
        """The phone-home, judged first by who sent it: the token's host must be the peer's MAC on the segment.

        The check is synchronous (two netlink round trips); only a peer the
        kernel has no entry for yet makes this a coroutine that waits for it.
        """
        token = bearer_token(request.headers)
        mac = self.registry.mac_for_token(token) if self.segment is not None else None
        if mac is None:
            return self._phone_home(request, token, None)
        binding = self.segment.check(request.peer, mac)
        if trust.needs_resolving(binding):
            return self._phone_home_settled(request, token, mac)
        return self._phone_home(request, token, binding)

    async def _phone_home_settled(self, request: ApiRequest, token: str | None, mac: str) -> ApiAnswer:
        return self._phone_home(request, token, await self.segment.settled(request.peer, mac))

    def _phone_home(self, request: ApiRequest, token: str | None, binding: trust.Binding | None) -> ApiAnswer:
        peer = request.peer
        report = None
        if token is not None:  # without one the registry refuses (401) before the body matters
            try:
                report = decode_json_body(request.body)
            except ValueError:
                self.log.warning("phone-home from %s rejected: body is not JSON", peer)
                return failure(400, "the body is not UTF-8 JSON; send the report object the nixie-agent builds", "bad_json")
        try:
            accepted = self.registry.phone_home(token, report, peer, binding=binding)
        except RegistryError as exc:
            status = status_of(exc.code)
            self.log.warning("phone-home from %s rejected (%d %s): %s", peer, status, exc.code, exc.message)
            self.emit({"event": events.PHONE_HOME_REJECTED, "peer": peer, "status": status, "code": exc.code})
            return failure(status, exc.message, exc.code, BEARER_CHALLENGE if status == 401 else ())
        if accepted["repeat"]:
            self.log.info("repeated phone-home of %s (%s) from %s: same report, nothing changed", accepted["host"], accepted["mac"], peer)
        else:
            self.log.info("host %s (%s) phoned home from %s", accepted["host"], accepted["mac"], peer)
            self.emit(self.registry.last_event(accepted["mac"]))
        return ApiAnswer(200, dict(accepted, ok=True))

    def hosts_answer(self, timed_out: bool) -> ApiAnswer:
        payload = self.registry.snapshot()
        payload.update(ok=True, timed_out=timed_out, stopping=self.notifier.closing, run_id=self.run_id)
        return ApiAnswer(200, payload)

    def host_answer(self, mac: str, timed_out: bool) -> ApiAnswer:
        return ApiAnswer(200, {"ok": True, "host": self.registry.host_snapshot(mac), "seq": self.registry.seq,
                               "timed_out": timed_out, "stopping": self.notifier.closing, "run_id": self.run_id})

    def stop(self, request: ApiRequest) -> ApiAnswer:
        peer = request.peer
        if not self.admin_token:
            return failure(403, "stopping through the API is disabled on this server; stop the pxe_server job instead", "stop_disabled")
        token = bearer_token(request.headers)
        if token is None:
            return failure(401, "no token: send \"Authorization: Bearer <admin token>\" as given to the pxe_server module", "token_missing",
                           BEARER_CHALLENGE)
        if not hmac.compare_digest(token.encode("utf-8", "surrogateescape"), self.admin_token.encode("utf-8")):
            self.log.warning("stop request from %s rejected: wrong admin token", peer)
            return failure(403, "wrong admin token; use the one the pxe_server module was started with", "token_rejected")
        reason = "stop requested through the API"
        if request.body.strip():
            try:
                body = decode_json_body(request.body)
            except ValueError:
                return failure(400, "the body must be empty or a JSON object such as {\"reason\": \"...\"}", "bad_json")
            if not isinstance(body, dict) or not isinstance(body.get("reason", ""), str):
                return failure(400, "the body must be a JSON object whose optional \"reason\" is a string", "bad_body")
            reason = body.get("reason") or reason
        reason = reason[:200]
        self.stop_reason = reason
        self.log.info("stop requested by %s: %s", peer, reason)
        if self.stop_requested is not None:
            self.stop_requested.set()
        self.emit({"event": events.STOP_REQUESTED, "reason": reason, "peer": peer})
        return ApiAnswer(202, {"ok": True, "stopping": True, "reason": reason})
