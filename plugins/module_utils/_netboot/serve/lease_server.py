# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The address-giving DHCPv4 mode at serving time: the lease book, the clock and the boot part.

``NetbootServer.on_dhcp_request`` hands every port-67 request here when the
run's ``dhcp`` is ``addresses``; this file asks ``decide/leases.py`` for the
answer (with ``decide/policy.py``'s boot fields for firmware still to boot),
records it in the lease book and tells the server what to send and record.
It opens no socket: the server sends from the socket the request came in on.

This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import leases, policy
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.lease_plan import AddressPlan
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.leases import LeaseBook

__all__ = ("AddressMode", "LeaseServer")


@dataclasses.dataclass(frozen=True)
class AddressMode:
    """The settings of ``dhcp: addresses``: the segment (``LeaseConfig``) and who gets what (``AddressPlan``)."""

    config: leases.LeaseConfig
    plan: AddressPlan


class LeaseServer:
    """Answers port 67 for the run's MACs with their leases."""

    def __init__(self, mode: AddressMode, boot_config: policy.ServerConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = mode.config
        self.book = LeaseBook(mode.plan.reservations, mode.plan.spare)
        self.boot_config = boot_config
        self._clock = clock

    def answer(self, request: dhcp.DhcpPacket, boot_host: policy.HostView | None) -> policy.Ignore | leases.LeaseAnswer:
        """The answer to ``request``, already recorded in the lease book.

        ``boot_host`` is the registry's view of the MAC (None for a stranger);
        a host that finished booting (or a client that is no firmware) gets
        its address without a boot file.
        """
        mac = request.mac
        boot = None
        if boot_host is not None and request.message_type in (dhcp.DHCPDISCOVER, dhcp.DHCPREQUEST):
            fields = policy.boot_fields(request, boot_host, self.boot_config)
            boot = fields if isinstance(fields, policy.BootFields) else None
        result = leases.answer(request, self.book.host(mac) if mac else None, self.config, boot)
        if isinstance(result, leases.LeaseAnswer):
            self.book.apply(mac, result, self._clock(), self.config.lease_time)
        return result

    def snapshot(self) -> list[dict[str, Any]]:
        return self.book.snapshot(self._clock())
