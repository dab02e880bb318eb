# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTTP side of the netboot server: iPXE script, kernel/initrd, iPXE binaries.

:func:`create_app` builds an ``aiohttp.web.Application`` around a
:class:`~..state.registry.Registry`; the caller runs it (see :func:`create_runner`)
in the server's asyncio loop next to DHCP and TFTP, behind
:class:`~.api_http.ApiConnections`, which answers most API connections
before aiohttp sees them. Endpoints are described in docs/api.md.

Boot routes answer iPXE in plain text (iPXE prints the reason of a 404).
Every ``/api/`` request that reaches aiohttp goes to the run's
:class:`~.api_service.AgentApi`, as those answered in front of it do. The iPXE script
is the one place a host's token leaves the server, on the kernel command
line it hands over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

try:
    from aiohttp import hdrs, web
except ImportError:
    hdrs = web = None
    AIOHTTP_IMPORT_ERROR = traceback.format_exc()
else:
    AIOHTTP_IMPORT_ERROR = None

from ansible_collections.nixie.metal.plugins.module_utils._hosts import normalize_mac
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import events
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import api as agent_api
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import api_service
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import ipxe
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.api import API_PREFIX, DEFAULT_MAX_BODY, DEFAULT_MAX_WAIT
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.trust import refusal_text
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import api_http
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.binding import SegmentCheck
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.registry import Registry

# Bytes of a file handed to the kernel per sendfile call (nginx's sendfile_max_chunk is 2m).
SENDFILE_SLICE = 4 * 1024 * 1024
# A connection that has not sent a whole request this long after it opened (or after its last
# answer) is closed. aiohttp's own default is an hour, so a client that sends half a request
# and waits could hold a file descriptor each until the server runs out (docs/reliability.md).
IDLE_TIMEOUT = 15.0
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

        def __init__(self, path: str, done: Callable[[web.StreamResponse, bool], None],
                     content_type: str = "application/octet-stream") -> None:
            super().__init__(path, headers={hdrs.CONTENT_TYPE: content_type})
            self._done = done

        async def prepare(self, request: web.BaseRequest) -> Any:
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

        async def _sendfile(self, request: web.BaseRequest, fobj: Any, offset: int, count: int) -> Any:
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


def ipxe_files_from_dir(directory: str, names: Iterable[str] = KNOWN_IPXE_FILES) -> dict[str, str]:
    """Map the iPXE binaries found in ``directory`` (only ``names``) to their paths."""
    found = {}
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            found[name] = path
    return found


class NetbootHttp:
    """State and handlers of one app; reach it with ``get_state(app)``.

    ``api`` is the run's :class:`~.api_service.AgentApi` (its ``stop_requested`` and
    ``stop_reason`` tell the server that POST /api/v1/stop was called).
    """

    def __init__(self, registry: Registry, api: api_service.AgentApi, artifacts: Mapping[str, Mapping[str, str]],
                 ipxe_files: Mapping[str, str], extra_cmdline: list[str], base_url: str | None, api_url: str | None,
                 logger: logging.Logger, arch_cmdlines: Mapping[str, list[str]] | None = None, base_url6: str | None = None,
                 segment: SegmentCheck | None = None) -> None:
        self.registry = registry
        self.segment = segment
        self.api = api
        self.artifacts = artifacts
        self.arch_cmdlines = arch_cmdlines or {}
        self.ipxe_files = ipxe_files
        self.extra_cmdline = extra_cmdline
        self.base_url = base_url
        self.api_url = api_url
        self.base_url6 = base_url6
        self.log = logger

    # -- lifecycle -----------------------------------------------------------

    async def on_startup(self, _app: web.Application) -> None:
        self.api.attach(asyncio.get_running_loop())

    async def on_shutdown(self, _app: web.Application) -> None:
        self.api.close()

    # -- helpers -------------------------------------------------------------

    def emit(self, event: Mapping[str, Any] | None) -> None:
        self.api.emit(event)

    @staticmethod
    def text(status: int, message: str) -> web.Response:
        return web.Response(status=status, text="nixie.metal: %s\n" % message, content_type="text/plain")

    @staticmethod
    def peer(request: web.Request) -> str | None:
        return request.remote

    def bases(self, request: web.Request) -> tuple[str, str]:
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

    def boot_host(self, request: web.Request, what: str) -> tuple[str | None, web.Response | None]:
        """The normalised MAC of a boot route, or a text error response."""
        raw = request.match_info["mac"]
        mac = normalize_mac(raw)
        if mac is None:
            return None, self.text(400, "%r is not a MAC address; use the form 52:54:00:12:34:01" % raw[:40])
        if not self.registry.is_known(mac):
            self.registry.record(mac, events.REQUESTED[what], peer=self.peer(request))
            return None, self.text(404, "%s is not a host of this run (not in hosts.json); nothing to boot" % mac)
        if self.registry.is_finished(mac):
            return None, self.text(404, "host %s (%s) is already %s in this run; booting the next device"
                                   % (self.registry.host_name(mac), mac, self.registry.state(mac)))
        return mac, None

    async def refusal(self, request: web.Request, mac: str, route_name: str) -> web.Response | None:
        """None when the peer may have the host's ``route_name``; else the 403 that says why (and it is recorded)."""
        if self.segment is None:
            return None
        binding = await self.segment.settled(self.peer(request), mac)
        seq = self.registry.last_seq(mac)
        admission = self.registry.admit(mac, route_name, binding)
        if admission.allowed:
            return None
        name = self.registry.host_name(mac)
        if self.registry.last_seq(mac) > seq:  # a new impostor row: logged once, not once per repeated request
            self.log.warning("%s of host %s (%s) refused to %s (%s, MAC seen %s); repeats are counted, not logged",
                             route_name, name, mac, binding.peer, admission.reason, binding.seen_mac)
        return self.text(403, refusal_text(name, mac, binding, admission.reason, self.registry.claimed_by(mac)))

    # -- boot routes ---------------------------------------------------------

    async def script(self, request: web.Request) -> web.StreamResponse:
        mac, failure = self.boot_host(request, "script")
        if failure is None:
            failure = await self.refusal(request, mac, "script")
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
                                  address_setting="ip6" if arrived_over_ipv6(request) else "ip",
                                  network=self.registry.network(mac))
        if request.method == hdrs.METH_GET:
            self.emit(self.registry.record(mac, events.SCRIPT_SERVED, peer=self.peer(request)))
        return web.Response(text=body, content_type="text/plain", headers={hdrs.CACHE_CONTROL: "no-store"})

    async def artifact(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        mac, failure = self.boot_host(request, kind)
        if failure is None:
            failure = await self.refusal(request, mac, kind)
        if failure is not None:
            return failure
        arch = self.registry.arch(mac)
        path = self.artifacts.get(arch, {}).get(kind)
        if not path or not os.path.isfile(path):
            self.log.error("no %s for %s (%s), arch %s: %r", kind, self.registry.host_name(mac), mac, arch, path)
            return self.text(404, "no %s built for %s (arch %s); build the installer for that system" % (kind, mac, arch))
        peer = self.peer(request)
        rng = request.headers.get(hdrs.RANGE)

        def done(response: web.StreamResponse, completed: bool) -> None:
            if request.method != hdrs.METH_GET:
                return
            if completed and response.status in (200, 206):
                self.emit(self.registry.record(mac, events.SERVED[kind], peer=peer, status=response.status,
                                               bytes=response.content_length, range=rng))
            elif not completed:
                self.emit(self.registry.record(mac, events.ABORTED[kind], peer=peer, range=rng))
        return _TrackedFileResponse(path, done)

    async def ipxe_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["filename"]
        path = self.ipxe_files.get(name)
        if not path or not os.path.isfile(path):
            return self.text(404, "%r is not an iPXE binary this server offers (%s)"
                             % (name[:64], ", ".join(sorted(self.ipxe_files)) or "none"))
        peer = self.peer(request)

        def done(response: web.StreamResponse, completed: bool) -> None:
            if request.method == hdrs.METH_GET:
                self.emit({"event": events.IPXE_FILE_SERVED if completed else events.IPXE_FILE_ABORTED,
                           "file": name, "peer": peer, "status": response.status})
        content_type = IPXE_CONTENT_TYPES.get(os.path.splitext(name)[1], "application/octet-stream")
        return _TrackedFileResponse(path, done, content_type=content_type)

    # -- API ---------------------------------------------------------------

    async def api_request(self, request: web.Request) -> web.Response:
        """Any request under /api/ that reached aiohttp: the same answers as in front of it."""
        try:
            async with asyncio.timeout(agent_api.BODY_TIMEOUT):
                body = await request.read()
        except TimeoutError:
            return self.api_response(request, agent_api.body_timeout())
        except web.HTTPRequestEntityTooLarge:
            return self.api_response(request, agent_api.body_too_large(self.api.max_body))
        headers = {name.lower(): value for name, value in reversed(request.headers.items())}
        api_request = agent_api.ApiRequest(method=request.method, path=request.path, query=dict(reversed(request.query.items())),
                                           headers=headers, body=body, peer=self.peer(request))
        try:
            answer = self.api.answer(api_request)
            if not isinstance(answer, agent_api.ApiAnswer):
                answer = await answer
        except Exception:
            self.log.exception("internal error on %s %s", request.method, request.path[:200])
            answer = agent_api.internal_error()
        return self.api_response(request, answer)

    @staticmethod
    def api_response(request: web.Request, answer: agent_api.ApiAnswer) -> web.Response:
        return web.Response(status=answer.status, body=None if request.method == hdrs.METH_HEAD else answer.body(),
                            content_type="application/json", headers=dict(answer.headers))


def create_app(registry: Registry, artifacts: Mapping[str, Mapping[str, str]], ipxe_files: Mapping[str, str] | None = None,
               extra_cmdline: str | Sequence[str] | None = None, base_url: str | None = None, api_url: str | None = None,
               on_event: Callable[[dict[str, Any]], object] | None = None, admin_token: str | None = None,
               max_wait: float = DEFAULT_MAX_WAIT, max_body: int = DEFAULT_MAX_BODY, run_id: str | None = None,
               logger: logging.Logger | None = None, base_url6: str | None = None,
               segment: SegmentCheck | None = None) -> web.Application:
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
    ``segment``: the :class:`~.binding.SegmentCheck` that judges who asks for a host's script,
    kernel, initrd and phone-home (docs/security.md); None serves them to anyone (unit tests only:
    the server always passes one).
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
    logger = logger or logging.getLogger(LOGGER_NAME)
    agent = api_service.AgentApi(registry, on_event=on_event, admin_token=admin_token, max_wait=max_wait, run_id=run_id,
                                 logger=logger, max_body=max_body, segment=segment)
    state = NetbootHttp(
        registry=registry,
        api=agent,
        artifacts=clean_artifacts,
        arch_cmdlines=arch_cmdlines,
        ipxe_files={name: os.fspath(path) for name, path in (ipxe_files or {}).items()},
        extra_cmdline=cmdline,
        base_url=base,
        api_url=api,
        base_url6=ipxe.check_base_url(base_url6) if base_url6 is not None else None,
        logger=logger,
        segment=segment,
    )
    app = web.Application(client_max_size=int(max_body))
    app[STATE_KEY] = state
    app.on_startup.append(state.on_startup)
    app.on_shutdown.append(state.on_shutdown)
    app.router.add_get("/boot/{mac}/script.ipxe", state.script)
    app.router.add_get("/boot/{mac}/{kind:kernel|initrd}", state.artifact)
    app.router.add_get("/ipxe/{filename}", state.ipxe_file)
    app.router.add_route("*", "/api/{tail:.*}", state.api_request)
    return app


def arrived_over_ipv6(request: web.Request) -> bool:
    """Whether ``request`` reached an IPv6 listener (an IPv4-mapped address counts as IPv4)."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    return isinstance(sockname, tuple) and len(sockname) == 4 and not str(sockname[0]).lower().startswith("::ffff:")


def get_state(app: web.Application) -> NetbootHttp:
    """The :class:`NetbootHttp` behind an app made by :func:`create_app`."""
    return app[STATE_KEY]


def create_runner(app: web.Application, logger: logging.Logger | None = None) -> web.AppRunner:
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


class Listeners:
    """The HTTP port's listening sockets for an app whose runner is set up.

    Each connection meets :class:`~.api_http.ApiConnections` first, which
    answers API requests itself and hands every other connection to the
    runner's aiohttp server.
    """

    def __init__(self, runner: web.AppRunner, access_log: logging.Logger | None = None,
                 max_connections: int = api_http.DEFAULT_MAX_CONNECTIONS) -> None:
        self.connections = api_http.ApiConnections(get_state(runner.app).api, runner.server,
                                                   access_log=access_log or logging.getLogger(LOGGER_NAME + ".access"),
                                                   max_connections=max_connections)

    async def listen(self, host: str, port: int, backlog: int) -> None:
        """Listen on ``host``:``port``; OSError when it cannot bind."""
        self.connections.listen(host, port, backlog)

    @property
    def addresses(self) -> list[tuple]:
        """The ``(host, port, ...)`` each listening socket is bound to."""
        return [sock.getsockname() for sock in self.connections.sockets]

    def stop_accepting(self) -> None:
        self.connections.stop_accepting()

    async def close(self) -> None:
        """Stop accepting and close the connections still answered in front of aiohttp."""
        await self.connections.close()
