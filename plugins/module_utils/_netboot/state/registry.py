# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-host state machine of one provisioning run: states, events and tokens.

Pure and synchronous: no sockets, no files, no asyncio. The clock and the
token generator are injected so tests are deterministic. Every part of the
server (DHCP, TFTP, HTTP) feeds it through :meth:`Registry.record` and the
agent's report arrives through :meth:`Registry.phone_home`. Listeners added
with :meth:`Registry.add_listener` are called synchronously after every host
event; the HTTP layer turns that into asyncio wake-ups for long-polls.

Tokens are secrets: no snapshot, event or error message carries one. The
only way out is :meth:`Registry.token_for`, used to render the iPXE script.
One host's remembered state and its rendering are :mod:`.host_state`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host, HostNetwork, is_canonical_mac
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import events
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import trust
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.agent_report import (
    AlreadyFinished, PeerRefused, ReportInvalid, TokenMissing, TokenRejected, UnknownHost, report_identity, validate_report)
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.host_state import HostState, IgnoredMacs, clean_detail

STATES = (
    events.KNOWN,
    events.OFFERED,
    events.IPXE_SERVED,
    events.SCRIPT_SERVED,
    events.KERNEL_SERVED,
    events.INITRD_SERVED,
    events.PHONED_HOME,
    events.FAILED,
)
# Progress states in boot order; a host's state is the furthest one reached.
PROGRESS = STATES[:7]
_RANK = {state: rank for rank, state in enumerate(PROGRESS)}
FINISHED_STATES = frozenset((events.PHONED_HOME, events.FAILED))
# DHCP answers that start a boot of the host (docs/design/trust.md): its token may be claimed again after one.
BOOT_EVENTS = frozenset((events.OFFERED, events.SCRIPT_OFFERED, events.BOOT_FILE_ACKED, events.SCRIPT_ACKED))

# Limits that keep a misbehaving client or a broadcast storm from growing memory.
MAX_EVENTS_PER_HOST = 256
MAX_IGNORED_MACS = 256

_EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_DETAIL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class Registry:
    """The hosts of one run, keyed by MAC.

    ``hosts``: the run's :class:`~..._hosts.Host` records. ``clock``: returns
    wall-clock seconds for event timestamps (default :func:`time.time`).
    ``token_factory``: returns a fresh secret string (default
    ``secrets.token_urlsafe(24)``, 32 URL-safe characters).

    Every ``mac`` a method takes is a MAC in the one spelling (lower-case,
    colon-separated), as a Host holds it: text from outside (an HTTP path,
    the agent's report, a DHCP chaddr, netlink) is normalised where it enters
    (:func:`~..._hosts.normalize_mac`, :func:`~..._hosts.mac_from_octets`),
    never here. Another spelling is simply not a host of the run.
    """

    def __init__(self, hosts: Iterable[Host], clock: Callable[[], float] | None = None,
                 token_factory: Callable[[], str] | None = None, max_events_per_host: int = MAX_EVENTS_PER_HOST,
                 max_ignored_macs: int = MAX_IGNORED_MACS) -> None:
        self._clock = clock or time.time
        self._token_factory = token_factory or (lambda: secrets.token_urlsafe(24))
        self._max_events = max(1, int(max_events_per_host))
        self._hosts = {}
        self._by_name = {}
        self._by_token_digest = {}
        self._finished = 0
        self._seq = 0
        self._listeners = []
        self._ignored = IgnoredMacs(max_ignored_macs)
        self._rejected = {"token_missing": 0, "token_rejected": 0, "report_invalid": 0, "already_finished": 0,
                          trust.IMPOSTOR: 0, trust.UNVERIFIED: 0}
        self._refused = {trust.IMPOSTOR: 0, trust.UNVERIFIED: 0, trust.CLAIMED: 0}
        self.listener_errors = 0
        self.last_listener_error = None
        tokens = set()
        for host in hosts:
            if not isinstance(host, Host):
                raise ValueError("a host must be a Host record (made by _hosts.load_hosts or hosts_from_option); got %r" % (host,))
            name, mac = host.name, host.mac
            if mac in self._hosts:
                raise ValueError("host %r: MAC %s is already used by host %r; each machine needs its own MAC"
                                 % (name, mac, self._hosts[mac].name))
            if name in self._by_name:
                raise ValueError("host name %r appears twice; names must be unique" % name)
            token = self._token_factory()
            if not isinstance(token, str) or len(token) < 16 or token in tokens:
                raise ValueError("the token factory must return distinct strings of at least 16 characters")
            tokens.add(token)
            entry = HostState(host, token, events.KNOWN)
            self._hosts[mac] = entry
            self._by_name[name] = entry
            self._by_token_digest[_token_digest(token)] = entry

    # -- queries -------------------------------------------------------------

    def _host(self, mac: str | None) -> HostState | None:
        # Only a str is looked up: a caller's None, number or list is not a host, not a TypeError.
        return self._hosts.get(mac) if isinstance(mac, str) else None

    @property
    def seq(self) -> int:
        """Sequence number of the newest event (0 before any)."""
        return self._seq

    def macs(self) -> list[str]:
        """The normalised MACs of all hosts, in the order given."""
        return list(self._hosts)

    def is_known(self, mac: str) -> bool:
        return self._host(mac) is not None

    def host_name(self, mac: str) -> str | None:
        host = self._host(mac)
        return host.name if host else None

    def arch(self, mac: str) -> str | None:
        host = self._host(mac)
        return host.arch if host else None

    def network(self, mac: str) -> HostNetwork | None:
        """The host's static network (hosts.json ``network``), None when its installer asks DHCP."""
        host = self._host(mac)
        return host.host.network if host else None

    def state(self, mac: str) -> str | None:
        host = self._host(mac)
        return host.state if host else None

    def token_for(self, mac: str) -> str | None:
        """The host's secret token, for the iPXE script only; None for unknown MACs."""
        host = self._host(mac)
        return host.token if host else None

    def is_finished(self, mac: str) -> bool:
        """True once the host phoned home or failed; False for unknown MACs."""
        host = self._host(mac)
        return bool(host and host.finished)

    def all_done(self) -> bool:
        """True when every host is finished (also when there are no hosts)."""
        return self._finished == len(self._hosts)

    def last_seq(self, mac: str | None = None) -> int:
        """Newest event seq of one host, or of the whole registry when mac is None."""
        if mac is None:
            return self._seq
        host = self._host(mac)
        return host.last_seq if host else 0

    def last_event(self, mac: str) -> dict[str, Any] | None:
        """The newest event of a host (a copy), or None."""
        host = self._host(mac)
        return dict(host.events[-1]) if host is not None and host.events else None

    def events_after(self, seq: int, mac: str | None = None) -> list[dict[str, Any]]:
        """Events newer than ``seq`` (of one host or all), oldest first."""
        hosts = [self._host(mac)] if mac is not None else list(self._hosts.values())
        found = [dict(e) for h in hosts if h for e in h.events if e["seq"] > seq]
        found.sort(key=lambda e: e["seq"])
        return found

    def host_snapshot(self, mac: str) -> dict[str, Any] | None:
        """A JSON-ready dict of one host (no token); None for unknown MACs."""
        host = self._host(mac)
        return host.snapshot() if host is not None else None

    def ignored_snapshot(self) -> dict[str, Any]:
        """Requests seen from MACs that are not hosts of this run."""
        return self._ignored.snapshot()

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole run (no tokens)."""
        hosts = [self.host_snapshot(mac) for mac in self._hosts]
        counts = {state: 0 for state in STATES}
        for host in self._hosts.values():
            counts[host.state] += 1
        return {
            "seq": self._seq,
            "all_done": self.all_done(),
            "counts": counts,
            "hosts": hosts,
            "ignored": self.ignored_snapshot(),
            "rejected_phone_homes": dict(self._rejected),
            "refused_requests": dict(self._refused),
        }

    # -- listeners -----------------------------------------------------------

    def add_listener(self, callback: Callable[[dict[str, Any]], object]) -> Callable[[], None]:
        """Call ``callback(event_dict)`` after every host event; returns a remover."""
        self._listeners.append(callback)

        def remove() -> None:
            self.remove_listener(callback)
        return remove

    def remove_listener(self, callback: Callable[[dict[str, Any]], object]) -> None:
        try:
            self._listeners.remove(callback)
        except ValueError:
            pass

    def _notify(self, event: dict[str, Any]) -> None:
        for callback in list(self._listeners):
            try:
                callback(dict(event))
            except Exception as exc:  # a listener must not break DHCP/TFTP/HTTP handling
                self.listener_errors += 1
                self.last_listener_error = "%s: %s" % (type(exc).__name__, exc)

    # -- changes -------------------------------------------------------------

    def _append(self, host: HostState, name: str, details: Mapping[str, Any]) -> dict[str, Any]:
        self._seq += 1
        event = {
            "seq": self._seq,
            "time": self._clock(),
            "host": host.name,
            "mac": host.mac,
            "event": name,
            "state": host.state,
        }
        for key, value in details.items():
            if key in event or not _DETAIL_KEY.match(key) or "token" in key.lower():
                continue
            event[key] = clean_detail(value)
        host.events.append(event)
        if len(host.events) > self._max_events:
            del host.events[0]
            host.events_dropped += 1
        host.last_seq = self._seq
        self._notify(event)
        return dict(event)

    def record(self, mac: str, event: str, **details: Any) -> dict[str, Any] | None:
        """Record ``event`` for the host with ``mac`` and move its state forward.

        ``event`` is a lower-case identifier. A progress state name (offered,
        ipxe_served, script_served, kernel_served, initrd_served) moves the
        host to that state unless it is already further; ``failed`` marks the
        host failed (``reason=`` is kept); any other name is logged only.
        Finished hosts keep their state; their events are still recorded.
        ``phoned_home`` is refused: only :meth:`phone_home` sets it.
        Returns the event dict, or None for a MAC that is not a host of this
        run (counted in the bounded ignored table instead).
        """
        if not isinstance(event, str) or not _EVENT_NAME.match(event):
            raise ValueError("event names are lower-case identifiers such as 'offered'; got %r" % (event,))
        if event in (events.PHONED_HOME, events.KNOWN):
            raise ValueError("%r cannot be recorded; phone_home() sets phoned_home" % event)
        host = self._host(mac)
        if host is None:
            self._ignored.note(mac if is_canonical_mac(mac) else None, event, self._clock)
            return None
        if not host.finished:
            if event == events.FAILED:
                host.state = events.FAILED
                host.finished = True
                self._finished += 1
                reason = details.get("reason")
                host.failed_reason = clean_detail(reason) if reason is not None else "failed"
            elif event in _RANK and _RANK[event] > _RANK[host.state]:
                host.state = event
        if event in BOOT_EVENTS:
            host.epoch = self._seq + 1
        return self._append(host, event, details)

    def admit(self, mac: str, route_name: str, binding: trust.Binding) -> trust.Admission:
        """Whether the host's ``route_name`` (script, kernel, initrd, phone_home) is served to ``binding``'s peer.

        ``binding``: the :class:`~..decide.trust.Binding` of the request, judged against the
        host's MAC. Returns the :class:`~..decide.trust.Admission`; an admitted script fetch
        may claim the host's token for this boot. A refusal is counted in the host's
        bounded ``impostors`` rows (the ``impostor`` event only when a row is new,
        so repeats cannot push the host's own events out); the first request let in
        unchecked (a routed peer) records ``binding_unchecked`` once per host.
        Unknown MACs raise UnknownHost.
        """
        host = self._host(mac)
        if host is None:
            raise UnknownHost("%s is not a host of this run" % (mac,))
        admission = trust.admit(route_name, binding, host.claim, host.epoch)
        if not admission.allowed:
            self._refused[admission.reason] += 1
            if host.note_refusal(route_name, binding, admission.reason, self._clock()):
                details = {"peer": binding.peer, "mac_seen": binding.seen_mac, "reason": admission.reason, "route": route_name}
                if admission.reason == trust.CLAIMED:
                    details["claimed_by"] = host.claim["ip"]
                self._append(host, events.IMPOSTOR, details)
            return admission
        if admission.claims:
            host.claim = {"ip": binding.peer, "epoch": host.epoch, "at": self._clock()}
        if admission.reason == trust.UNCHECKED and not host.unchecked_noted:
            host.unchecked_noted = True
            self._append(host, events.BINDING_UNCHECKED, {"peer": binding.peer, "scope": binding.scope, "route": route_name})
        return admission

    def claimed_by(self, mac: str) -> str | None:
        """The address that claimed the host's token for its current boot, or None."""
        host = self._host(mac)
        return host.claim["ip"] if host is not None and host.claim else None

    def mac_for_token(self, token: str | None) -> str | None:
        """The MAC of the host ``token`` belongs to, or None (so the API can check the peer before anything else)."""
        host = self._find_by_token(token) if token and isinstance(token, str) else None
        return host.mac if host else None

    def fail(self, mac: str, reason: str) -> dict[str, Any] | None:
        """Mark a host failed with a human-readable reason (no-op once finished)."""
        return self.record(mac, events.FAILED, reason=reason)

    def _find_by_token(self, token: str | None) -> HostState | None:
        # One dictionary lookup by the token's digest, then a constant-time comparison: the
        # lookup's timing depends on a SHA-256 of the presented token, which says nothing about
        # the real tokens, and the work no longer grows with the number of hosts.
        host = self._by_token_digest.get(_token_digest(token))
        if host is not None and hmac.compare_digest(host.token.encode("utf-8"), token.encode("utf-8", "surrogateescape")):
            return host
        return None

    def phone_home(self, token: str | None, report: object, peer_ip: str | None = None,
                   binding: trust.Binding | None = None) -> dict[str, Any]:
        """Accept the agent's report for the host that ``token`` belongs to.

        ``binding``: the request's :class:`~..decide.trust.Binding`, judged against the
        token's host (None: not checked, as in tests of the registry alone).
        Raises (:mod:`..decide.agent_report`; the API maps each code to a
        status) TokenMissing, TokenRejected (not a token of this run, or the
        token of another host than ``report["mac"]``), PeerRefused (the peer
        is not the host's MAC; see :meth:`admit`), ReportInvalid or
        AlreadyFinished (the host failed, or phoned home before with a
        different report). On any error nothing
        changes. A repeat of the accepted report (uptime aside) is
        idempotent: the same answer with ``repeat: True`` and no new event.

        Returns ``{"host", "mac", "state", "address", "seq", "repeat"}``.
        """
        if not token or not isinstance(token, str):
            self._rejected["token_missing"] += 1
            raise TokenMissing("no token: send the header \"Authorization: Bearer <token>\" "
                               "with the nixie.token value from the kernel command line")
        host = self._find_by_token(token)
        if host is None:
            self._rejected["token_rejected"] += 1
            raise TokenRejected("the token is not valid for any host of this run; the machine was probably "
                                "booted by an earlier run, reboot it into this run's installer")
        if binding is not None:
            admission = self.admit(host.mac, "phone_home", binding)
            if not admission.allowed:
                self._rejected[admission.reason] += 1
                raise PeerRefused(trust.refusal_text(host.name, host.mac, binding, admission.reason, host.claim and host.claim["ip"]),
                                  admission.reason)
        try:
            clean = validate_report(report)
        except ReportInvalid:
            self._rejected["report_invalid"] += 1
            raise
        if clean["mac"] != host.mac:
            self._rejected["token_rejected"] += 1
            raise TokenRejected("the token does not belong to the host with MAC %s; send the nixie.token and nixie.mac "
                                "values of the same kernel command line" % clean["mac"])
        if host.state == events.PHONED_HOME:
            if report_identity(host.report) == report_identity(clean):
                return host.phone_home_answer(repeat=True)
            self._rejected["already_finished"] += 1
            raise AlreadyFinished("host %s (%s) already phoned home with a different report; start a new run to boot it again" % (host.name, host.mac))
        if host.state == events.FAILED:
            self._rejected["already_finished"] += 1
            raise AlreadyFinished("host %s (%s) was marked failed (%s); start a new run to boot it again" % (host.name, host.mac, host.failed_reason))
        host.report = clean
        host.peer_ip = str(peer_ip) if peer_ip else None
        host.binding = binding.as_dict() if binding is not None else None
        host.phoned_home_at = self._clock()
        host.state = events.PHONED_HOME
        host.finished = True
        self._finished += 1
        self._append(host, events.PHONED_HOME, {
            "peer_ip": host.peer_ip,
            "hostname": clean["hostname"],
            "addresses": [a["address"] for a in clean["addresses"]][:8],
            "ssh_host_keys": len(clean["ssh_host_keys"]),
        })
        return host.phone_home_answer(repeat=False)
