# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The netboot server: proxyDHCP, TFTP and HTTP on one asyncio loop, for one run.

This file wires the rooms together and owns the lifecycle; protocol decisions
live in dhcp/policy (DHCP), tftp (TFTP), http/ipxe (HTTP) and registry (state).
The run ends by itself when every host is done (plus a short linger so that
wait_for_agent can read the last answers), after ``max_duration``, after
``idle_timeout`` without any event, on SIGTERM/SIGINT, or when asked through
the API. Whatever ends it, every socket is closed before ``serve`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import resource
import secrets
import signal
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp, dhcp6, events
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import policy, policy6, trust
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import binding, dhcp_socket, server6, tftp
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.lease_server import LeaseServer
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import http as netboot_http
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.options import ServerOptions
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.registry import Registry
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.runtime import describe_port_holders, raise_open_files_limit

log = logging.getLogger(__name__)

# Concurrent TFTP transfers: a rack powering on at once fetches iPXE all together, and a request
# over the bound is dropped until the client retransmits (seconds later). The file's datagrams
# are shared between transfers, so each costs a socket and a small state object.
TFTP_MAX_TRANSFERS = 1024
# Transfers one client address may run at once: a machine needs one (OVMF's size probe ends
# before its real transfer starts), and a host that opens transfers and abandons them must not
# hold every slot for the 6 s each takes to time out (docs/reliability.md).
TFTP_MAX_TRANSFERS_PER_CLIENT = 4
# Pending connections the kernel queues for the HTTP server (aiohttp's default is 128): every
# installer of a rack may phone home in the same second; the kernel caps it at net.core.somaxconn.
HTTP_BACKLOG = 1024
# Open files the server asks for: a socket per TFTP transfer, HTTP connection and long-poll.
OPEN_FILES = 8192
# How many client IP -> MAC pairs to remember for attributing TFTP transfers.
MAX_KNOWN_CLIENT_ADDRESSES = 4096
DHCP_OFF = "off"


# Ignore reasons that mean "this host asked, and we cannot boot it as it is".
REFUSALS_WORTH_TELLING = frozenset((policy.IGNORE_NO_BOOT_FILE, policy.IGNORE_ARCH_MISMATCH, policy.IGNORE_UNSUPPORTED_ARCH))


class ServerError(Exception):
    """The server cannot start; the message says why and what to do."""


class NetbootServer:
    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.registry = Registry(options.hosts, token_factory=_token_factory(options))
        self.config = policy.ServerConfig(
            server_ip=options.server_ip,
            http_base=options.http_base,
            binaries=frozenset(options.ipxe_files) or policy.IPXE_BINARIES,
        ) if options.server_ip is not None else None
        # dhcp: addresses: port 67 gives the run's MACs their leases (lease_server.py); 4011 stays the proxy's.
        self.leases = LeaseServer(options.addresses, self.config) if options.addresses is not None and self.config else None
        self.ipv6 = None
        self.counters = {"dhcp_malformed": 0, "dhcp_ignored": 0, "dhcp_answered": 0, "dhcp_send_errors": 0}
        self.client_macs = {}
        self.stop_reason = None
        self._stop = None
        self._last_activity = time.monotonic()
        self._all_done_at = None
        self._transports = []
        self._tftp = None
        self._http_runner = None
        self._http_state = None
        self._http_listeners = None
        self.segment = binding.SegmentCheck(enabled=options.peer_check)
        self.registry.add_listener(self._on_registry_event)
        self.on_progress = None

    # -- events ----------------------------------------------------------------

    def _on_registry_event(self, event: dict[str, Any]) -> None:
        self._last_activity = time.monotonic()
        if self.on_progress is not None:
            self.on_progress(event)
        if self.registry.all_done() and self._all_done_at is None:
            self._all_done_at = time.monotonic()

    def _remember_client(self, ip: str, mac: str) -> None:
        if not ip or ip == "0.0.0.0":
            return
        if len(self.client_macs) >= MAX_KNOWN_CLIENT_ADDRESSES and ip not in self.client_macs:
            self.client_macs.pop(next(iter(self.client_macs)))
        self.client_macs[ip] = mac

    def on_dhcp_request(self, endpoint: dhcp_socket.DhcpEndpoint, request: dhcp.DhcpPacket, source: tuple) -> None:
        mac = request.mac
        if mac is None:
            self.counters["dhcp_ignored"] += 1
            return
        # Snoop the address the client is taking from the site's server (option 50
        # in its broadcast REQUEST, or ciaddr), to attribute its TFTP transfer later.
        self._remember_client(request.requested_ip or request.ciaddr, mac)
        if endpoint.port == self.options.proxy_port:
            self._remember_client(source[0], mac)

        host = None
        if self.registry.is_known(mac):
            host = policy.HostView(mac=mac, arch=self.registry.arch(mac), finished=self.registry.is_finished(mac))
        if self.leases is not None and endpoint.port == self.options.dhcp_port:
            self._answer_with_lease(endpoint, request, mac, host)
            return
        decision = policy.decide(request, endpoint.port, source, host, self.config)
        if isinstance(decision, policy.Ignore):
            self.counters["dhcp_ignored"] += 1
            if decision.reason in (policy.IGNORE_UNKNOWN_HOST, policy.IGNORE_FINISHED):
                # Recorded (bounded) so a run can tell "a machine we do not own asked".
                self.registry.record(mac, events.DHCP_IGNORED, reason=decision.reason)
            elif host is not None and decision.reason in REFUSALS_WORTH_TELLING:
                # A machine of ours that we cannot boot: its timeline must say why.
                self.registry.record(mac, events.DHCP_REFUSED, reason=decision.reason, detail=decision.detail)
            return
        wire = decision.encode()
        if not self._send_dhcp(endpoint, wire, decision.destination.address, mac):
            return
        for delay in decision.repeats:
            self._schedule(delay, self._send_dhcp, endpoint, wire, decision.destination.address, mac)
        self.counters["dhcp_answered"] += 1
        self.registry.record(mac, decision.event, port=endpoint.port, arch=decision.client.arch,
                             firmware=decision.client.firmware, boot_file=decision.boot_file)

    def _answer_with_lease(self, endpoint: dhcp_socket.DhcpEndpoint, request: dhcp.DhcpPacket, mac: str,
                           host: policy.HostView | None) -> None:
        answer = self.leases.answer(request, host)
        if isinstance(answer, policy.Ignore):
            self.counters["dhcp_ignored"] += 1
            if answer.reason == policy.IGNORE_UNKNOWN_HOST or host is not None:
                self.registry.record(mac, events.DHCP_IGNORED, reason=answer.reason)
            return
        if answer.packet is not None:
            if not self._send_dhcp(endpoint, answer.encode(), answer.destination.address, mac):
                return
            self.counters["dhcp_answered"] += 1
        self.registry.record(mac, answer.change, address=answer.address, detail=answer.detail)
        boot = answer.boot
        if boot is not None:
            self.registry.record(mac, boot.event, port=endpoint.port, boot_file=boot.boot_file)

    def _schedule(self, delay: float, callback: Callable[..., object], *args: Any) -> None:
        asyncio.get_running_loop().call_later(delay, callback, *args)

    def _send_dhcp(self, endpoint: dhcp_socket.DhcpEndpoint, wire: bytes, address: tuple, mac: str) -> bool:
        try:
            endpoint.transport.sendto(wire, address)
        except OSError as exc:
            self.counters["dhcp_send_errors"] += 1
            log.warning("cannot answer %s on port %d: %s", mac, endpoint.port, exc)
            return False
        return True

    def _on_http_event(self, event: dict[str, Any]) -> None:
        """Hook of the HTTP app: tie iPXE binaries fetched by UEFI HTTP boot to a MAC.

        The HTTP app cannot know the MAC of a GET /ipxe/<file>; the DHCP side
        snooped the address the client took (option 50 of its REQUEST), so the
        fetch becomes ``ipxe_served`` of that host, like a TFTP transfer.
        Registry events the app records itself are ignored here.
        """
        record = http_ipxe_record(event, self.client_macs)
        if record is None:
            if event.get("event") in (events.IPXE_FILE_SERVED, events.IPXE_FILE_ABORTED):
                log.info("HTTP %s of %s to %s (no DHCP seen from that address)", event.get("event"), event.get("file"), event.get("peer"))
            return
        mac, name, details = record
        self.registry.record(mac, name, **details)

    def _on_tftp_event(self, event: tftp.TftpEvent) -> None:
        mac = self.client_macs.get(event.client[0])
        if mac is None:
            log.info("TFTP %s of %s to %s (no DHCP seen from that address)", event.kind, event.filename, event.client[0])
            return
        name = events.TFTP[event.kind]
        self.registry.record(mac, name, file=event.filename, bytes=event.bytes_sent, client=event.client[0],
                             blksize=event.blksize, windowsize=event.windowsize, error=event.error)

    # -- sockets -----------------------------------------------------------------

    def _dhcp_socket(self, port: int) -> socket.socket:
        try:
            return dhcp_socket.open_socket(self.options.bind_ip, port, self.options.interface)
        except OSError as exc:
            raise _bind_error(exc, "udp", port, "proxyDHCP") from None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            for port in (self.options.dhcp_port, self.options.proxy_port) if self.config is not None and self.options.dhcp_mode != DHCP_OFF else ():
                self._transports.append(dhcp_socket.BatchedDatagramTransport(loop, self._dhcp_socket(port), dhcp_socket.DhcpEndpoint(self, port)))

            tftp_files = _read_files(self.options.ipxe_files)
            self._tftp = tftp.TftpServer(tftp_files, on_event=self._on_tftp_event, max_transfers=TFTP_MAX_TRANSFERS,
                                         max_transfers_per_client=TFTP_MAX_TRANSFERS_PER_CLIENT)
            try:
                # On the serving address, not every address: a TFTP server already on another one of this
                # machine's addresses (libvirt's dnsmasq on its bridge) does not keep this one from starting.
                await self._tftp.start(host=self.options.server_ip or self.options.bind_ip, port=self.options.tftp_port)
            except OSError as exc:
                raise _bind_error(exc, "udp", self.options.tftp_port, "TFTP") from None
            if self.options.server_ip6 is not None:
                await self._start_ipv6(tftp_files)

            app = netboot_http.create_app(
                self.registry, self.options.artifacts, ipxe_files=self.options.ipxe_files,
                extra_cmdline=self.options.extra_cmdline, base_url=self.options.http_base, base_url6=self.options.http_base6,
                admin_token=self.options.admin_token, run_id=self.options.run_id, on_event=self._on_http_event,
                segment=self.segment)
            self._http_state = netboot_http.get_state(app)
            self._http_runner = netboot_http.create_runner(app)
            await self._http_runner.setup()
            # Half the open files at most for HTTP connections: the rest stay for TFTP transfers.
            open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            self._http_listeners = netboot_http.Listeners(self._http_runner, max_connections=max(HTTP_BACKLOG, open_files // 2))
            try:
                await self._http_listeners.listen(self.options.bind_ip, self.options.http_port, HTTP_BACKLOG)
                if self.options.server_ip6 is not None:
                    # asyncio makes IPv6 listeners IPV6_V6ONLY, so "::" sits beside the IPv4 one.
                    host6 = "::" if self.options.bind_ip == "0.0.0.0" else self.options.server_ip6
                    await self._http_listeners.listen(host6, self.options.http_port, HTTP_BACKLOG)
            except OSError as exc:
                raise _bind_error(exc, "tcp", self.options.http_port, "HTTP") from None
        except BaseException:
            await self.close()
            raise

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        if self._stop is not None:
            self._stop.set()

    def _stop_condition(self, started: float) -> str | None:
        now = time.monotonic()
        http_stop = self._http_state.api.stop_requested if self._http_state is not None else None
        if http_stop is not None and http_stop.is_set():
            return self._http_state.api.stop_reason or "stop requested through the API"
        if self._all_done_at is not None and now - self._all_done_at >= self.options.linger:
            return "every host is done"
        if now - started >= self.options.max_duration:
            return "max_duration of %gs reached" % self.options.max_duration
        if now - self._last_activity >= self.options.idle_timeout:
            return "idle_timeout: no activity for %gs" % self.options.idle_timeout
        return None

    async def run_until_stopped(self, tick: float = 0.25) -> str | None:
        started = time.monotonic()
        self._last_activity = started
        if self.registry.all_done():
            self._all_done_at = started
        while not self._stop.is_set():
            reason = self._stop_condition(started)
            if reason:
                self.request_stop(reason)
                break
            try:
                await asyncio.wait_for(self._stop.wait(), tick)
            except asyncio.TimeoutError:
                pass
        return self.stop_reason

    async def _start_ipv6(self, tftp_files: Mapping[str, bytes]) -> None:
        options = self.options
        if not options.interface:
            raise ServerError("serving IPv6 needs the interface (DHCPv6 listens on its multicast group)")
        try:
            config6 = policy6.ServerConfig6(
                server_ip=options.server_ip6, http_port=options.http_port,
                duid=dhcp6.duid_ll(server6.interface_mac(options.interface)),
                binaries=frozenset(options.ipxe_files) or policy.IPXE_BINARIES,
                mode=options.dhcp6_mode, prefix=options.dhcp6_prefix)
        except (ValueError, server6.Ipv6Error) as exc:
            raise ServerError("IPv6: %s" % exc) from None
        self.ipv6 = server6.Ipv6Side(self, config6, options.interface, tftp_files, tftp_port=options.tftp_port,
                                     dhcp_port=options.dhcp6_port, proxy_port=options.proxy6_port)
        try:
            await self.ipv6.start()
        except server6.Ipv6Error as exc:
            raise ServerError(str(exc)) from None

    async def close(self) -> None:
        for transport in self._transports:
            transport.close()
        self._transports = []
        if self.ipv6 is not None:
            await self.ipv6.close()
            self.ipv6 = None
        if self._tftp is not None:
            await self._tftp.close()
            self._tftp = None
        if self._http_listeners is not None:
            self._http_listeners.stop_accepting()
        if self._http_runner is not None:
            await self._http_runner.cleanup()  # answers waiting long-polls ("stopping") on the way
            self._http_runner = None
        if self._http_listeners is not None:
            await self._http_listeners.close()
            connections = self._http_listeners.connections
            self.counters.update(http_refused=connections.refused, api_answered_at_accept=connections.answered_at_once)
            self._http_listeners = None
        self.counters.update(peer_check_errors=self.segment.errors, peer_check_resyncs=self.segment.resyncs)
        self.segment.close()

    def result(self) -> dict[str, Any]:
        snapshot = self.registry.snapshot()
        del snapshot["seq"]
        for host in snapshot["hosts"]:
            host["warnings"] = trust.refusal_warnings(host)
        result = dict(snapshot, api_url=self.options.api_url, stop_reason=self.stop_reason, counters=dict(self.counters))
        if self.leases is not None:
            result["leases"] = self.leases.snapshot()
        return result


def http_ipxe_record(event: Mapping[str, Any], client_macs: Mapping[str, str]) -> tuple[str, str, dict[str, Any]] | None:
    """``(mac, event name, details)`` to record for an HTTP app hook event, or None.

    Only the app's iPXE binary events count (``ipxe_file_served`` /
    ``ipxe_file_aborted``, from UEFI HTTP boot clients); the peer address is
    mapped to a MAC with ``client_macs`` (address -> MAC, learnt from DHCP).
    The names match the TFTP path: ``ipxe_served`` (a progress state) and
    ``ipxe_failed``, with ``via="http"``.
    """
    name = event.get("event")
    if name not in (events.IPXE_FILE_SERVED, events.IPXE_FILE_ABORTED):
        return None
    mac = client_macs.get(event.get("peer"))
    if mac is None:
        return None
    recorded = events.IPXE_SERVED if name == events.IPXE_FILE_SERVED else events.IPXE_FAILED
    return mac, recorded, {"file": event.get("file"), "client": event.get("peer"), "via": "http", "status": event.get("status")}


def _token_factory(options: ServerOptions) -> Callable[[], str] | None:
    """Tokens for the hosts in order: kept ones (``options.tokens``) first, fresh ones otherwise; None: all fresh."""
    if not options.tokens:
        return None
    tokens = [options.tokens.get(host.mac) or secrets.token_urlsafe(24) for host in options.hosts]
    return iter(tokens).__next__


def _read_files(named_paths: Mapping[str, str]) -> dict[str, bytes]:
    files = {}
    for name, path in named_paths.items():
        with open(path, "rb") as handle:
            files[name] = handle.read()
    return files


def _bind_error(exc: OSError, protocol: str, port: int, role: str) -> ServerError:
    if exc.errno == errno.EADDRINUSE:
        return ServerError("%s/%d (%s) is already in use by %s; stop it, or run the server on another "
                           "interface" % (protocol.upper(), port, role, describe_port_holders(port, protocol)))
    if exc.errno == errno.EACCES:
        return ServerError("%s/%d (%s): permission denied; ports below 1024 need root or CAP_NET_BIND_SERVICE "
                           "(use become: true on the pxe_server task)" % (protocol.upper(), port, role))
    if exc.errno == errno.ENODEV:
        return ServerError("interface not found while binding %s/%d (%s): %s" % (protocol.upper(), port, role, exc))
    return ServerError("cannot bind %s/%d (%s): %s" % (protocol.upper(), port, role, exc))


@contextlib.contextmanager
def startup_objects_frozen() -> Iterator[None]:
    """Keep the garbage collector off every object that exists once the server has started.

    Imports, the hosts file's schema and aiohttp leave tens of thousands of
    objects that live as long as the run; a full collection walking them
    stopped the loop for 50-300 ms in the middle of a burst of requests
    (docs/performance.md). Frozen, they are never walked again; what the run
    itself allocates is collected as usual. Garbage is collected first so it
    is not kept for the whole run.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def serve(options: ServerOptions, on_progress: Callable[[dict[str, Any]], object] | None = None,
                ready: Callable[[NetbootServer], object] | None = None) -> dict[str, Any]:
    """Run one netboot server until a stop condition; return the run's result.

    ``ready``: called once every socket is bound (tests use it to start clients).
    SIGTERM and SIGINT end the run gracefully; the result still comes back.
    """
    raise_open_files_limit(OPEN_FILES)
    server = NetbootServer(options)
    server.on_progress = on_progress
    await server.start()
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, server.request_stop, "signal %s" % signal.Signals(signum).name)
            handled.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    try:
        if ready is not None:
            ready(server)
        with startup_objects_frozen():
            await server.run_until_stopped()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        await server.close()
    return server.result()
