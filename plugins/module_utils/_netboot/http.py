# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTTP side of the netboot server: iPXE script, kernel/initrd, iPXE binaries, agent API.

:func:`create_app` builds an ``aiohttp.web.Application`` around a
:class:`~.registry.Registry`; the caller runs it (see :func:`create_runner`)
in the server's asyncio loop next to DHCP and TFTP. Endpoints and JSON
shapes are described in docs/api.md.

Boot routes answer iPXE in plain text (iPXE prints the reason of a 404);
every ``/api/`` answer is JSON ``{"ok": true, ...}`` or
``{"ok": false, "error": "...", "code": "..."}``. Tokens never appear in a
GET answer of the API nor in a log line; the iPXE script is the one place a
host's token leaves the server, on the kernel command line it hands over.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
import traceback

try:
    from aiohttp import hdrs, web
except ImportError:
    hdrs = web = None
    AIOHTTP_IMPORT_ERROR = traceback.format_exc()
else:
    AIOHTTP_IMPORT_ERROR = None

from ansible_collections.nixie.metal.plugins.module_utils._netboot import ipxe
from ansible_collections.nixie.metal.plugins.module_utils._netboot.registry import (
    RegistryError,
    normalize_mac,
)

DEFAULT_MAX_WAIT = 60.0
# Bytes of a file handed to the kernel per sendfile call (nginx's sendfile_max_chunk is 2m).
SENDFILE_SLICE = 4 * 1024 * 1024
DEFAULT_MAX_BODY = 64 * 1024
# A connection that has not sent a whole request this long after it opened (or after its last
# answer) is closed. aiohttp's own default is an hour, so a client that sends half a request
# and waits could hold a file descriptor each until the server runs out (docs/reliability.md).
IDLE_TIMEOUT = 15.0
# How long the body of a phone-home or stop request may take to arrive, for the same reason.
BODY_TIMEOUT = 15.0
API_PREFIX = "/api/v1"
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs "%{User-Agent}i"'
LOGGER_NAME = "nixie.metal.netboot.http"

# Names iPXE binaries are served under (and their content types).
IPXE_CONTENT_TYPES = {".efi": "application/efi", ".kpxe": "application/octet-stream",
                      ".pxe": "application/octet-stream", ".lkrn": "application/octet-stream"}
KNOWN_IPXE_FILES = ("ipxe.efi", "snponly.efi", "ipxe-arm64.efi", "snponly-arm64.efi", "undionly.kpxe", "ipxe.pxe")

if web is not None:
    STATE_KEY = web.AppKey("nixie_netboot_state", object)

    class _TrackedFileResponse(web.FileResponse):
        """FileResponse (sendfile, Range, HEAD, conditional GET) that reports when it is done.

        ``done(response, completed)`` runs after the body was handed to the
        kernel (completed=True) or the client went away (completed=False).
        Accept-Encoding is hidden from the parent so a stray ``initrd.gz``
        next to the artifact is never served instead of it.
        """

        def __init__(self, path, done, content_type="application/octet-stream"):
            super().__init__(path, headers={hdrs.CONTENT_TYPE: content_type})
            self._done = done

        async def prepare(self, request):
            plain = request
            if hdrs.ACCEPT_ENCODING in request.headers:
                headers = request.headers.copy()
                del headers[hdrs.ACCEPT_ENCODING]
                plain = request.clone(headers=headers)
            try:
                writer = await super().prepare(plain)
            except ConnectionError:
                self._done(self, False)
                raise
            self._done(self, True)
            return writer

        async def _sendfile(self, request, fobj, offset, count):
            # aiohttp hands the whole body to loop.sendfile(), which asks the kernel for all of
            # it in one call. To a reader as fast as a local link that call returns only when
            # the file is sent: 0.1-0.7 s for an 800 MiB initrd, during which DHCP, TFTP and
            # every other transfer wait (docs/performance.md). In slices the loop runs between.
            if count <= SENDFILE_SLICE or os.environ.get("AIOHTTP_NOSENDFILE") or self.compression:
                return await super()._sendfile(request, fobj, offset, count)
            writer = await web.StreamResponse.prepare(self, request)
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("Connection lost")
            loop = asyncio.get_running_loop()
            sent = 0
            while sent < count:
                size = min(SENDFILE_SLICE, count - sent)
                try:
                    await loop.sendfile(transport, fobj, offset + sent, size)
                except NotImplementedError:  # no sendfile on this transport (TLS): aiohttp's own copy
                    return await self._sendfile_fallback(writer, fobj, offset + sent, count - sent)
                sent += size
            await web.StreamResponse.write_eof(self)
            return writer
else:  # pragma: no cover - only without aiohttp (ansible-test sanity import)
    STATE_KEY = None


def ipxe_files_from_dir(directory, names=KNOWN_IPXE_FILES):
    """Map the iPXE binaries found in ``directory`` (only ``names``) to their paths."""
    found = {}
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            found[name] = path
    return found


def decode_json_body(raw):
    """The JSON document in a request body; ValueError when it is not UTF-8 JSON.

    Nesting too deep for the decoder (a few thousand ``[`` fit in the body limit) is
    refused like any other bad JSON instead of escaping as a RecursionError.
    """
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ValueError("the JSON document nests too deep") from None


class _ChangeNotifier:
    """Wakes long-polls when the registry changes; safe to call from any thread.

    A waiter names what it waits for: one host's MAC, or None for any change.
    An event wakes the waiters of its own host and those of any change only,
    so a rack of wait_for_agent long-polls costs one wake-up per event instead
    of one per waiting host (docs/performance.md).
    """

    def __init__(self):
        self._loop = None
        self._waiters = {}  # MAC or None -> set of futures
        self.closing = False

    def attach(self, loop):
        self._loop = loop

    def __call__(self, event=None):
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        key = event.get("mac") if isinstance(event, dict) else None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake(key)
        else:
            loop.call_soon_threadsafe(self._wake, key)

    def _wake(self, key=None, everyone=False):
        keys = list(self._waiters) if everyone else ((None,) if key is None else (key, None))
        for each in keys:
            for future in self._waiters.pop(each, ()):
                if not future.done():
                    future.set_result(None)

    def close(self):
        self.closing = True
        self._wake(everyone=True)

    async def wait_for(self, predicate, timeout, key=None):
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
            try:
                await asyncio.wait_for(future, remaining)
            except asyncio.TimeoutError:
                break
            finally:
                waiters.discard(future)
                if not waiters and self._waiters.get(key) is waiters:
                    del self._waiters[key]
        return predicate()


class NetbootHttp:
    """State and handlers of one app; reach it with ``get_state(app)``.

    Attributes the server may use: ``registry``, ``stop_requested``
    (an asyncio.Event set by POST /api/v1/stop), ``stop_reason``.
    """

    def __init__(self, registry, artifacts, ipxe_files, extra_cmdline, base_url, api_url,
                 on_event, admin_token, max_wait, run_id, logger, max_body=DEFAULT_MAX_BODY, arch_cmdlines=None,
                 base_url6=None):
        self.registry = registry
        self.artifacts = artifacts
        self.arch_cmdlines = arch_cmdlines or {}
        self.ipxe_files = ipxe_files
        self.extra_cmdline = extra_cmdline
        self.base_url = base_url
        self.api_url = api_url
        self.base_url6 = base_url6
        self.on_event = on_event
        self.admin_token = admin_token
        self.max_wait = max_wait
        self.run_id = run_id
        self.max_body = max_body
        self.log = logger
        self.notifier = _ChangeNotifier()
        self.stop_requested = None
        self.stop_reason = None
        self._remove_listener = None

    # -- lifecycle -----------------------------------------------------------

    async def on_startup(self, _app):
        self.notifier.attach(asyncio.get_running_loop())
        self.stop_requested = asyncio.Event()
        self._remove_listener = self.registry.add_listener(self.notifier)

    async def on_shutdown(self, _app):
        self.notifier.close()

    async def on_cleanup(self, _app):
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None

    # -- helpers -------------------------------------------------------------

    def emit(self, event):
        if event is None or self.on_event is None:
            return
        try:
            self.on_event(dict(event))
        except Exception:
            self.log.exception("on_event hook failed for event %r", event.get("event"))

    @staticmethod
    def json(payload, status=200, headers=None):
        return web.json_response(payload, status=status, headers=headers,
                                 dumps=lambda obj: json.dumps(obj, sort_keys=True))

    def error(self, status, message, code, headers=None):
        return self.json({"ok": False, "error": message, "code": code}, status=status, headers=headers)

    @staticmethod
    def text(status, message):
        return web.Response(status=status, text="nixie.metal: %s\n" % message, content_type="text/plain")

    @staticmethod
    def peer(request):
        return request.remote

    def bases(self, request):
        """(base_url, api_url) for this request: configured, or from the Host header.

        A request that came in over IPv6 gets the IPv6 URLs when they are configured:
        a machine is served over the family its iPXE used, and its installer phones
        home over the same one.
        """
        if self.base_url6 is not None and arrived_over_ipv6(request):
            return self.base_url6, self.base_url6 + API_PREFIX
        if self.base_url is not None:
            return self.base_url, self.api_url
        base = ipxe.check_base_url("%s://%s" % (request.scheme, request.host))
        return base, self.api_url or base + API_PREFIX

    def boot_host(self, request, what):
        """The normalised MAC of a boot route, or a text error response."""
        raw = request.match_info["mac"]
        mac = normalize_mac(raw)
        if mac is None:
            return None, self.text(400, "%r is not a MAC address; use the form 52:54:00:12:34:01" % raw[:40])
        if not self.registry.is_known(mac):
            self.registry.record(mac, what + "_requested", peer=self.peer(request))
            return None, self.text(404, "%s is not a host of this run (not in hosts.json); nothing to boot" % mac)
        if self.registry.is_finished(mac):
            return None, self.text(404, "host %s (%s) is already %s in this run; booting the next device"
                                   % (self.registry.host_name(mac), mac, self.registry.state(mac)))
        return mac, None

    @staticmethod
    async def read_body(request):
        """The request body, or None when it did not arrive within BODY_TIMEOUT seconds."""
        try:
            return await asyncio.wait_for(request.read(), BODY_TIMEOUT)
        except asyncio.TimeoutError:
            return None

    def body_timeout(self):
        return self.error(408, "the request body did not arrive within %gs; send it in one go" % BODY_TIMEOUT, "body_timeout")

    @staticmethod
    def bearer(request):
        """The Bearer token of the request, or None."""
        header = request.headers.get(hdrs.AUTHORIZATION, "")
        parts = header.strip().split(None, 1)
        if len(parts) != 2 or parts[0].lower() != "bearer" or not parts[1].strip():
            return None
        return parts[1].strip()

    def wait_params(self, request):
        """(wait seconds, after seq) from the query, or raise ValueError with a message."""
        query = request.query
        try:
            wait = float(query.get("wait", "0"))
        except ValueError:
            raise ValueError("'wait' must be a number of seconds (at most %g)" % self.max_wait)
        if math.isnan(wait) or wait < 0:
            raise ValueError("'wait' must be a number of seconds >= 0")
        wait = min(wait, self.max_wait)
        after = query.get("after")
        if after is None:
            return wait, None
        try:
            after = int(after)
        except ValueError:
            raise ValueError("'after' must be an event sequence number (an integer >= 0), e.g. the last_seq of an earlier answer")
        if after < 0:
            raise ValueError("'after' must be an integer >= 0")
        return wait, after

    # -- boot routes ---------------------------------------------------------

    async def script(self, request):
        mac, failure = self.boot_host(request, "script")
        if failure is not None:
            return failure
        try:
            base, api = self.bases(request)
        except ValueError:
            return self.text(400, "cannot build URLs from the Host header %r; configure the server's base URL" % request.host[:80])
        # The installer's own arguments (init=... of that architecture's build) come first.
        cmdline = self.arch_cmdlines.get(self.registry.arch(mac), []) + self.extra_cmdline
        body = ipxe.render_script(base, mac, self.registry.token_for(mac), extra_cmdline=cmdline,
                                  host_name=self.registry.host_name(mac), api_url=api,
                                  address_setting="ip6" if arrived_over_ipv6(request) else "ip")
        if request.method == hdrs.METH_GET:
            self.emit(self.registry.record(mac, "script_served", peer=self.peer(request)))
        return web.Response(text=body, content_type="text/plain", headers={hdrs.CACHE_CONTROL: "no-store"})

    async def artifact(self, request):
        kind = request.match_info["kind"]
        mac, failure = self.boot_host(request, kind)
        if failure is not None:
            return failure
        arch = self.registry.arch(mac)
        path = self.artifacts.get(arch, {}).get(kind)
        if not path or not os.path.isfile(path):
            self.log.error("no %s for %s (%s), arch %s: %r", kind, self.registry.host_name(mac), mac, arch, path)
            return self.text(404, "no %s built for %s (arch %s); build the installer for that system" % (kind, mac, arch))
        peer = self.peer(request)
        rng = request.headers.get(hdrs.RANGE)

        def done(response, completed):
            if request.method != hdrs.METH_GET:
                return
            if completed and response.status in (200, 206):
                self.emit(self.registry.record(mac, kind + "_served", peer=peer, status=response.status,
                                               bytes=response.content_length, range=rng))
            elif not completed:
                self.emit(self.registry.record(mac, kind + "_aborted", peer=peer, range=rng))
        return _TrackedFileResponse(path, done)

    async def ipxe_file(self, request):
        name = request.match_info["filename"]
        path = self.ipxe_files.get(name)
        if not path or not os.path.isfile(path):
            return self.text(404, "%r is not an iPXE binary this server offers (%s)"
                             % (name[:64], ", ".join(sorted(self.ipxe_files)) or "none"))
        peer = self.peer(request)

        def done(response, completed):
            if request.method == hdrs.METH_GET:
                self.emit({"event": "ipxe_file_served" if completed else "ipxe_file_aborted",
                           "file": name, "peer": peer, "status": response.status})
        content_type = IPXE_CONTENT_TYPES.get(os.path.splitext(name)[1], "application/octet-stream")
        return _TrackedFileResponse(path, done, content_type=content_type)

    # -- API -----------------------------------------------------------------

    async def health(self, request):
        return self.json({"ok": True, "service": "nixie.metal", "run_id": self.run_id,
                          "seq": self.registry.seq, "all_done": self.registry.all_done()})

    async def phone_home(self, request):
        peer = self.peer(request)
        token = self.bearer(request)
        if token is None:
            try:
                self.registry.phone_home(None, None, peer)
            except RegistryError as exc:
                self.log.warning("phone-home from %s rejected: %s", peer, exc.code)
                self.emit({"event": "phone_home_rejected", "peer": peer, "status": exc.status, "code": exc.code})
                return self.error(exc.status, exc.message, exc.code,
                                  headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="nixie.metal"'})
        raw = await self.read_body(request)
        if raw is None:
            return self.body_timeout()
        try:
            report = decode_json_body(raw)
        except ValueError:
            self.log.warning("phone-home from %s rejected: body is not JSON", peer)
            return self.error(400, "the body is not UTF-8 JSON; send the report object the nixie-agent builds", "bad_json")
        try:
            answer = self.registry.phone_home(token, report, peer)
        except RegistryError as exc:
            self.log.warning("phone-home from %s rejected (%d %s): %s", peer, exc.status, exc.code, exc.message)
            self.emit({"event": "phone_home_rejected", "peer": peer, "status": exc.status, "code": exc.code})
            return self.error(exc.status, exc.message, exc.code)
        if answer["repeat"]:
            self.log.info("repeated phone-home of %s (%s) from %s: same report, nothing changed", answer["host"], answer["mac"], peer)
        else:
            self.log.info("host %s (%s) phoned home from %s", answer["host"], answer["mac"], peer)
            events = self.registry.events_after(answer["seq"] - 1, answer["mac"])
            self.emit(events[0] if events else dict(answer, event="phoned_home"))
        return self.json(dict(answer, ok=True))

    async def long_poll(self, request, has_news, mac=None):
        """Wait as ``?wait=&after=`` asks until ``has_news(after)``; True if the wait ran out.

        ``mac``: the host whose events matter (None: any). Raises ValueError
        (a 400 for the caller) for a malformed query.
        """
        wait, after = self.wait_params(request)
        if after is None or wait <= 0:
            return False
        return not await self.notifier.wait_for(lambda: has_news(after), wait, key=mac)

    async def hosts(self, request):
        try:
            timed_out = await self.long_poll(request, lambda after: self.registry.seq > after)
        except ValueError as exc:
            return self.error(400, str(exc), "bad_query")
        payload = self.registry.snapshot()
        payload.update(ok=True, timed_out=timed_out, stopping=self.notifier.closing, run_id=self.run_id)
        return self.json(payload)

    async def host(self, request):
        raw = request.match_info["mac"]
        mac = normalize_mac(raw)
        if mac is None:
            return self.error(400, "%r is not a MAC address; use the form 52:54:00:12:34:01" % raw[:40], "bad_mac")
        if not self.registry.is_known(mac):
            return self.error(404, "%s is not a host of this run; GET %s/hosts lists them" % (mac, API_PREFIX), "unknown_host")
        try:
            timed_out = await self.long_poll(request, lambda after: self.registry.last_seq(mac) > after, mac=mac)
        except ValueError as exc:
            return self.error(400, str(exc), "bad_query")
        return self.json({"ok": True, "host": self.registry.host_snapshot(mac), "seq": self.registry.seq,
                          "timed_out": timed_out, "stopping": self.notifier.closing, "run_id": self.run_id})

    async def stop(self, request):
        peer = self.peer(request)
        if not self.admin_token:
            return self.error(403, "stopping through the API is disabled on this server; stop the pxe_server job instead", "stop_disabled")
        token = self.bearer(request)
        if token is None:
            return self.error(401, "no token: send \"Authorization: Bearer <admin token>\" as given to the pxe_server module", "token_missing",
                              headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="nixie.metal"'})
        if not hmac.compare_digest(token.encode("utf-8", "surrogateescape"), self.admin_token.encode("utf-8")):
            self.log.warning("stop request from %s rejected: wrong admin token", peer)
            return self.error(403, "wrong admin token; use the one the pxe_server module was started with", "token_rejected")
        reason = "stop requested through the API"
        raw = await self.read_body(request)
        if raw is None:
            return self.body_timeout()
        if raw.strip():
            try:
                body = decode_json_body(raw)
            except ValueError:
                return self.error(400, "the body must be empty or a JSON object such as {\"reason\": \"...\"}", "bad_json")
            if not isinstance(body, dict) or not isinstance(body.get("reason", ""), str):
                return self.error(400, "the body must be a JSON object whose optional \"reason\" is a string", "bad_body")
            reason = body.get("reason") or reason
        reason = reason[:200]
        self.stop_reason = reason
        self.log.info("stop requested by %s: %s", peer, reason)
        if self.stop_requested is not None:
            self.stop_requested.set()
        self.emit({"event": "stop_requested", "reason": reason, "peer": peer})
        return self.json({"ok": True, "stopping": True, "reason": reason}, status=202)


def _make_error_middleware(state):
    @web.middleware
    async def api_errors(request, handler):
        api = request.path.startswith("/api/")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if not api or exc.status < 400:
                raise
            if exc.status == 413:
                message = "the request body is larger than %d bytes; send a smaller report" % state.max_body
                code = "body_too_large"
            elif exc.status == 405:
                message = "%s is not allowed on %s; see docs/api.md for the endpoints" % (request.method, request.path)
                code = "method_not_allowed"
            elif exc.status == 404:
                message = "no endpoint %s; the API lives under %s (see docs/api.md)" % (request.path, API_PREFIX)
                code = "not_found"
            else:
                message = "%s; see docs/api.md" % exc.reason
                code = "http_%d" % exc.status
            return state.error(exc.status, message, code)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            state.log.exception("internal error on %s %s", request.method, request.path)
            if not api:
                raise
            return state.error(500, "internal server error; see the pxe_server log", "internal")
    return api_errors


def create_app(registry, artifacts, ipxe_files=None, extra_cmdline=None, base_url=None, api_url=None,
               on_event=None, admin_token=None, max_wait=DEFAULT_MAX_WAIT, max_body=DEFAULT_MAX_BODY,
               run_id=None, logger=None, base_url6=None):
    """Build the aiohttp application.

    ``registry``: the run's :class:`Registry`.
    ``artifacts``: ``{arch: {"kernel": path, "initrd": path, "cmdline": str}}``, arch as in hosts.json
    (``x86_64-linux``, ``aarch64-linux``); the optional cmdline is that build's own kernel arguments
    (``init=...``), put before ``extra_cmdline``.
    ``ipxe_files``: ``{file name: path}`` served under /ipxe/ (see :func:`ipxe_files_from_dir`).
    ``extra_cmdline``: operator's kernel arguments (string or list); checked here, ValueError if unsafe.
    ``base_url``: how machines reach this server, e.g. ``http://192.0.2.1:8080``; None derives it
    per request from the Host header. ``api_url``: defaults to ``{base_url}/api/v1``.
    ``base_url6``: the same over IPv6 (``http://[2001:db8::1]:8080``), used for requests that
    arrive over IPv6.
    ``on_event(dict)``: called for each registry event caused by HTTP (script_served,
    kernel_served, initrd_served, *_aborted, phoned_home) and for HTTP-only events
    (ipxe_file_served, phone_home_rejected, stop_requested); exceptions are logged.
    ``admin_token``: Bearer token of POST /api/v1/stop (None disables it).
    ``max_wait``: cap of long-poll waits in seconds. ``max_body``: request body limit in bytes.
    ``run_id``: any string identifying this run, echoed by the API.
    """
    if web is None:
        raise RuntimeError("aiohttp is required for the HTTP server: %s" % AIOHTTP_IMPORT_ERROR)
    cmdline = ipxe.split_cmdline(extra_cmdline)
    base = ipxe.check_base_url(base_url) if base_url is not None else None
    api = ipxe.check_base_url(api_url) if api_url is not None else (base + API_PREFIX if base else None)
    clean_artifacts = {}
    arch_cmdlines = {}
    for arch, files in (artifacts or {}).items():
        clean_artifacts[arch] = {kind: os.fspath(path) for kind, path in (files or {}).items()
                                 if kind in ("kernel", "initrd") and path}
        arch_cmdlines[arch] = ipxe.split_cmdline((files or {}).get("cmdline"))
    for name in (ipxe_files or {}):
        if "/" in name or name.startswith("."):
            raise ValueError("iPXE file names are bare names such as ipxe.efi; got %r" % name)
    state = NetbootHttp(
        registry=registry,
        artifacts=clean_artifacts,
        arch_cmdlines=arch_cmdlines,
        ipxe_files={name: os.fspath(path) for name, path in (ipxe_files or {}).items()},
        extra_cmdline=cmdline,
        base_url=base,
        api_url=api,
        base_url6=ipxe.check_base_url(base_url6) if base_url6 is not None else None,
        on_event=on_event,
        admin_token=admin_token,
        max_wait=float(max_wait),
        run_id=run_id,
        logger=logger or logging.getLogger(LOGGER_NAME),
        max_body=int(max_body),
    )
    app = web.Application(client_max_size=int(max_body), middlewares=[_make_error_middleware(state)])
    app[STATE_KEY] = state
    app.on_startup.append(state.on_startup)
    app.on_shutdown.append(state.on_shutdown)
    app.on_cleanup.append(state.on_cleanup)
    app.router.add_get("/boot/{mac}/script.ipxe", state.script)
    app.router.add_get("/boot/{mac}/{kind:kernel|initrd}", state.artifact)
    app.router.add_get("/ipxe/{filename}", state.ipxe_file)
    app.router.add_get(API_PREFIX + "/health", state.health)
    app.router.add_post(API_PREFIX + "/phone-home", state.phone_home)
    app.router.add_get(API_PREFIX + "/hosts", state.hosts)
    app.router.add_get(API_PREFIX + "/hosts/{mac}", state.host)
    app.router.add_post(API_PREFIX + "/stop", state.stop)
    return app


def arrived_over_ipv6(request):
    """Whether ``request`` reached an IPv6 listener (an IPv4-mapped address counts as IPv4)."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    return isinstance(sockname, tuple) and len(sockname) == 4 and not str(sockname[0]).lower().startswith("::ffff:")


def get_state(app):
    """The :class:`NetbootHttp` behind an app made by :func:`create_app`."""
    return app[STATE_KEY]


def create_runner(app, logger=None):
    """An ``aiohttp.web.AppRunner`` whose access log goes to ``logger`` (tokens never appear in it).

    Usage in the server::

        runner = create_runner(app)
        await runner.setup()
        site = web.TCPSite(runner, host, port)   # or several, one per address
        await site.start()
        ...
        await runner.cleanup()
    """
    return web.AppRunner(app, access_log=logger or logging.getLogger(LOGGER_NAME + ".access"),
                         access_log_format=ACCESS_LOG_FORMAT, handle_signals=False, keepalive_timeout=IDLE_TIMEOUT)
