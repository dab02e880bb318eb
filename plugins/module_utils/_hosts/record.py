# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One machine of a run, as the collection passes it around: the :class:`Host` record.

A Host is made in one place, :mod:`.loading` (from hosts.json or from a
module's ``hosts`` option), after every check, so whoever holds one may
trust it: its MAC is in the one spelling (:mod:`.mac`), its arch is one of
:data:`~.schema.ARCHITECTURES`. A new hosts.json field becomes one new
attribute here (as ``network``, a :class:`~.network.HostNetwork`, went beside ``power``), one line in
:func:`.loading.normalize_hosts` and one in each of :meth:`Host.to_dict` and
:meth:`Host.from_dict`, the pair every crossing to JSON uses (the inventory's
cache). This file is private to the collection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._hosts.mac import is_canonical_mac
from ansible_collections.nixie.metal.plugins.module_utils._hosts.network import HostNetwork
from ansible_collections.nixie.metal.plugins.module_utils._hosts.schema import ARCHITECTURES, DEFAULT_ARCH

DEFAULT_POWER = {"driver": "wol"}


def _default_power() -> dict[str, Any]:
    return dict(DEFAULT_POWER)


@dataclass(frozen=True)
class Host:
    """A machine to install: what hosts.json says of it, checked and normalised.

    ``name``: its flake attribute (and Ansible host name). ``mac``: the MAC it
    network-boots from, lower-case and colon-separated. ``arch``: its Nix
    system. ``ip``: its address when known in advance, else None. ``groups``:
    extra Ansible groups. ``vars``: extra host variables. ``description``:
    free text. ``system``: the store path of its system when built elsewhere.
    ``power``: how it is powered on (``{"driver": "wol"}`` by default).
    ``network``: its installer's static network, or None (the installer
    asks DHCP).

    The constructor refuses a MAC in another spelling or an unknown arch
    (ValueError): those are a caller's mistake, since users' text is checked
    and normalised by :mod:`.loading` before a Host is made.
    """

    name: str
    mac: str
    arch: str = DEFAULT_ARCH
    ip: str | None = None
    groups: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=dict)
    description: str | None = None
    system: str | None = None
    power: Mapping[str, Any] = field(default_factory=_default_power)
    network: HostNetwork | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("every host needs a non-empty name; got %r" % (self.name,))
        if not is_canonical_mac(self.mac):
            raise ValueError("host %r: %r is not a MAC address in the one spelling (lower-case, colon-separated); "
                             "make hosts with load_hosts or hosts_from_option, which normalise it" % (self.name, self.mac))
        if self.arch not in ARCHITECTURES:
            raise ValueError("host %r: arch %r is not one of %s" % (self.name, self.arch, ", ".join(ARCHITECTURES)))
        if self.network is not None and not isinstance(self.network, HostNetwork):
            raise ValueError("host %r: network must be a HostNetwork record; got %r" % (self.name, self.network))
        # Frozen: the record's own copies, so a caller's later edit of its list cannot reach it.
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "vars", dict(self.vars))
        object.__setattr__(self, "power", dict(self.power))

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON data; :meth:`from_dict` reads it back."""
        return {
            "name": self.name,
            "mac": self.mac,
            "arch": self.arch,
            "ip": self.ip,
            "groups": list(self.groups),
            "vars": dict(self.vars),
            "description": self.description,
            "system": self.system,
            "power": dict(self.power),
            "network": self.network.to_dict() if self.network is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Host:
        """The Host :meth:`to_dict` wrote (ValueError when it is not one)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise ValueError("not a host record (a mapping with name and mac): %r" % (data,))
        return cls(name=data["name"], mac=data.get("mac"), arch=data.get("arch", DEFAULT_ARCH), ip=data.get("ip"),
                   groups=tuple(data.get("groups") or ()), vars=dict(data.get("vars") or {}),
                   description=data.get("description"), system=data.get("system"),
                   power=dict(data.get("power") or DEFAULT_POWER),
                   network=HostNetwork.from_dict(data["network"]) if data.get("network") is not None else None)
