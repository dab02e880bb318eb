# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the run remembers of one of its hosts, and how that is shown.

:class:`HostState` is the registry's entry for one :class:`~..._hosts.Host`:
its progress, events, report, token claim and the bounded rows of requests
refused in its name. The :class:`~.registry.Registry` moves it; this file
keeps it bounded and renders it as JSON-ready data (no token ever).
Pure: no sockets, no clock of its own (times are passed in).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import trust

MAX_DETAIL_STRING = 512
# Rows of refused requests kept per host: an attacker repeating requests grows a count, not the memory.
MAX_IMPOSTOR_ROWS = 16


def clean_detail(value: object, depth: int = 0) -> Any:
    """Turn an event detail into plain JSON data of bounded size."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value[:MAX_DETAIL_STRING]
    if isinstance(value, bytes):
        return value[:MAX_DETAIL_STRING].decode("utf-8", "replace")
    if depth < 2 and isinstance(value, (list, tuple)):
        return [clean_detail(v, depth + 1) for v in list(value)[:32]]
    if depth < 2 and isinstance(value, dict):
        return {str(k)[:64]: clean_detail(v, depth + 1) for k, v in list(value.items())[:32]}
    return str(value)[:MAX_DETAIL_STRING]


class HostState:
    """One host's place in the run. ``finished`` is set by the registry when the host phones home or fails."""

    __slots__ = ("host", "token", "state", "finished", "events", "events_dropped",
                 "report", "peer_ip", "phoned_home_at", "failed_reason", "last_seq",
                 "epoch", "claim", "impostors", "impostors_dropped", "unchecked_noted", "binding")

    def __init__(self, host: Host, token: str, state: str) -> None:
        self.host = host
        self.token = token
        self.state = state
        self.finished = False
        self.events = []
        self.events_dropped = 0
        self.report = None
        self.peer_ip = None
        self.phoned_home_at = None
        self.failed_reason = None
        self.last_seq = 0
        self.epoch = 0
        self.claim = None
        self.impostors = {}
        self.impostors_dropped = 0
        self.unchecked_noted = False
        self.binding = None

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def mac(self) -> str:
        return self.host.mac

    @property
    def arch(self) -> str:
        return self.host.arch

    def note_refusal(self, route_name: str, binding: trust.Binding, reason: str, now: float) -> bool:
        """Count a request refused in this host's name; True when it opened a new row (worth an event).

        One row per (peer, MAC seen, reason), at most :data:`MAX_IMPOSTOR_ROWS`;
        past that only ``impostors_dropped`` grows.
        """
        key = (binding.peer, binding.seen_mac, reason)
        row = self.impostors.get(key)
        new = row is None
        if new:
            if len(self.impostors) >= MAX_IMPOSTOR_ROWS:
                self.impostors_dropped += 1
                return False
            row = self.impostors[key] = {"address": binding.peer, "mac": binding.seen_mac, "reason": reason,
                                         "count": 0, "first": now, "last": now, "routes": set()}
        row["count"] += 1
        row["last"] = now
        row["routes"].add(route_name)
        return new

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready dict of this host (no token)."""
        report = self.report or {}
        return {
            "name": self.name,
            "mac": self.mac,
            "arch": self.arch,
            "state": self.state,
            "finished": self.finished,
            "last_seq": self.last_seq,
            "address": self.peer_ip,
            "addresses": [dict(a) for a in report.get("addresses", [])],
            "ssh_host_keys": list(report.get("ssh_host_keys", [])),
            "hostname": report.get("hostname"),
            "uptime": report.get("uptime"),
            "phoned_home_at": self.phoned_home_at,
            "failed_reason": self.failed_reason,
            "binding": dict(self.binding) if self.binding else None,
            "claimed_by": self.claim["ip"] if self.claim else None,
            "impostors": [dict(row, routes=sorted(row["routes"])) for row in self.impostors.values()],
            "impostors_dropped": self.impostors_dropped,
            "events": [dict(e) for e in self.events],
            "events_dropped": self.events_dropped,
        }

    def phone_home_answer(self, repeat: bool) -> dict[str, Any]:
        """What the agent is told when its report is taken (again, when ``repeat``)."""
        return {
            "host": self.name,
            "mac": self.mac,
            "state": self.state,
            "address": self.peer_ip,
            "seq": self.last_seq,
            "repeat": repeat,
        }


class IgnoredMacs:
    """Requests seen from MACs that are not hosts of this run: a count per MAC, at most ``max_macs`` of them."""

    def __init__(self, max_macs: int) -> None:
        self.max_macs = max(0, int(max_macs))
        self.macs = {}
        self.overflow = 0

    def __len__(self) -> int:
        return len(self.macs)

    def note(self, mac: str | None, event: str, clock: Callable[[], float]) -> None:
        """Count ``event`` from ``mac`` (None: not an Ethernet MAC, counted in ``overflow`` only)."""
        entry = self.macs.get(mac) if mac else None
        if entry is None:
            if mac is None or len(self.macs) >= self.max_macs:
                self.overflow += 1
                return
            entry = self.macs[mac] = {"count": 0, "first": clock(), "last": None, "events": {}}
        entry["count"] += 1
        entry["last"] = clock()
        if event in entry["events"] or len(entry["events"]) < 16:
            entry["events"][event] = entry["events"].get(event, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "macs": {mac: dict(v, events=dict(v["events"])) for mac, v in self.macs.items()},
            "overflow": self.overflow,
            "max_macs": self.max_macs,
        }
