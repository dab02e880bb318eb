# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The segment's evidence for one request: the kernel's route to the peer and its neighbour entry.

:class:`SegmentCheck` asks the kernel (:mod:`.neighbour_watch`: what its
notices said, else two netlink round trips; no subprocess, no table dump)
and hands :mod:`..decide.trust` what it found, as a :class:`~..decide.trust.Binding`. The
check runs on the event loop for each script, kernel, initrd and phone-home
request of a known host.

A TCP peer on the segment always has a neighbour entry: the kernel needed it
to answer the handshake. Where the entry is gone anyway (garbage-collected on
a large segment), :meth:`SegmentCheck.settled` makes the kernel resolve the
address again and looks once more before the request is refused.
This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import asyncio
import logging

from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import trust
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.neighbour_watch import NeighbourWatch
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.neighbours import normal_address
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.netlink import Route

# How long a request without a neighbour entry waits for the kernel to resolve its peer, and how often it looks.
RESOLVE_WAIT = 1.0
RESOLVE_POLL = 0.05
# Judgements kept (one per peer and host); all are forgotten when there would be more.
MAX_JUDGED = 65536

NOT_CHECKED = "not_checked"
"""The scope of every peer when the check is turned off (``peer_check: false``)."""

log = logging.getLogger("nixie.metal.netboot.binding")


class SegmentCheck:
    """Judges peers against hosts' MACs. ``enabled=False`` lets every peer in unchecked (and says so).

    ``lookup``: what answers route/neighbour/ifname/resolve: a :class:`~.neighbour_watch.NeighbourWatch`
    (made on first use when None) or a :class:`~.netlink_socket.RouteNeighbours`.
    """

    def __init__(self, enabled: bool = True, lookup: NeighbourWatch | None = None, resolve_wait: float = RESOLVE_WAIT) -> None:
        self.enabled = enabled
        self._lookup = lookup
        self.resolve_wait = resolve_wait
        self.errors = 0
        # (peer, host MAC) -> (route, entry, binding). A NeighbourWatch hands out the same route and entry
        # objects until a notice changes them, so an unchanged pair means an unchanged binding: a peer's
        # script, kernel, initrd and phone-home are judged once while the kernel's evidence holds.
        self._judged = {}

    def _kernel(self) -> NeighbourWatch:
        if self._lookup is None:
            self._lookup = NeighbourWatch()
        return self._lookup

    def check(self, peer: object, host_mac: str) -> trust.Binding:
        """The :class:`~..decide.trust.Binding` of a request from ``peer`` for the host with ``host_mac``, now."""
        ip = normal_address(peer)
        if not self.enabled:
            return trust.Binding(peer=ip or str(peer), scope=NOT_CHECKED)
        if ip is None:  # no IP peer (a Unix socket): nothing can vouch for it
            return trust.Binding(peer=str(peer), scope=trust.ON_SEGMENT,
                                 verdict=trust.Verdict(trust.UNVERIFIED, str(peer), reason="no_address"))
        kernel = self._kernel()
        try:
            kernel.drain()
            # A link-local peer keeps its zone (fe80::1%br0): its route is through that interface only.
            route = kernel.route(str(peer) if "%" in str(peer) else ip)
            scope = trust.scope_of(route)
            if scope != trust.ON_SEGMENT:
                return trust.Binding(peer=ip, scope=scope, interface=_ifname(kernel, route))
            entry = kernel.neighbour(ip, route.ifindex) if route is not None and route.ifindex else None
        except OSError as exc:
            # Fail closed: a request nobody can vouch for is refused as unverified, and the log says why.
            self.errors += 1
            log.warning("cannot read the route or neighbour of %s: %s", ip, exc)
            return trust.Binding(peer=ip, scope=trust.ON_SEGMENT, verdict=trust.verdict(ip, host_mac, None))
        key = (ip, host_mac)
        judged = self._judged.get(key)
        if judged is not None and judged[0] is route and judged[1] is entry:
            return judged[2]
        binding = trust.Binding(peer=ip, scope=scope, verdict=trust.verdict(ip, host_mac, entry),
                                interface=_ifname(kernel, route))
        if entry is not None:
            if len(self._judged) >= MAX_JUDGED:
                self._judged.clear()
            self._judged[key] = (route, entry, binding)
        return binding

    async def settled(self, peer: object, host_mac: str) -> trust.Binding:
        """:meth:`check`, after asking the kernel to resolve a peer that has no usable entry yet."""
        binding = self.check(peer, host_mac)
        if not trust.needs_resolving(binding):
            return binding
        self._kernel().resolve(binding.peer)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.resolve_wait
        while loop.time() < deadline:
            await asyncio.sleep(RESOLVE_POLL)
            binding = self.check(peer, host_mac)
            if not trust.needs_resolving(binding):
                break
        return binding

    @property
    def resyncs(self) -> int:
        """Times notices were lost and everything kept was asked again (0 without a NeighbourWatch)."""
        return getattr(self._lookup, "resyncs", 0)

    def close(self) -> None:
        if self._lookup is not None:
            self._lookup.close()
            self._lookup = None


def _ifname(kernel: NeighbourWatch, route: Route | None) -> str | None:
    return kernel.ifname(route.ifindex) if route is not None and route.ifindex else None
