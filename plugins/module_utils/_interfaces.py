# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's interface addresses, read once from ``ip -j addr show`` and handed out as records.

pxe_server chooses the address it serves on from them, the preflight shows that
choice, and host_status sweeps the subnets they are in: one reader, one record,
so the three cannot disagree about what an address is.
This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import subprocess

# The flags of an IPv6 address that is not (yet, or any longer) one to hand out in a URL.
UNSETTLED_FLAGS = ("tentative", "dadfailed", "deprecated", "temporary")


class InterfacesError(Exception):
    """The addresses cannot be read; the message says why."""


@dataclasses.dataclass(frozen=True)
class Address:
    """One address of one interface, as ``ip -j addr`` shows it.

    ``flags``: the address's own flags that are set (``dynamic``, ``tentative``...).
    """

    interface: str
    ip: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    up: bool
    loopback: bool
    scope: str = "global"
    flags: frozenset[str] = frozenset()

    @property
    def version(self) -> int:
        return self.ip.version

    @property
    def text(self) -> str:
        """The address without its prefix length, in its normal spelling."""
        return str(self.ip.ip)

    @property
    def prefixlen(self) -> int:
        return self.ip.network.prefixlen

    @property
    def serves(self) -> bool:
        """Up and not loopback: an interface machines can reach."""
        return self.up and not self.loopback

    @property
    def settled_ipv6(self) -> bool:
        """A global or unique-local IPv6 address (scope global), settled and not a temporary privacy address.

        Only such an address can go in a machine's boot URL: a tentative or
        failed one cannot be bound, and a temporary one changes under the run.
        """
        return self.version == 6 and self.scope == "global" and not self.flags.intersection(UNSETTLED_FLAGS)


def addresses_of(links: list) -> list[Address]:
    """``ip -j addr`` output (parsed JSON) -> [Address]; entries without an address or a prefix are passed over."""
    found = []
    for link in links if isinstance(links, list) else []:
        if not isinstance(link, dict):
            continue
        link_flags = link.get("flags") or []
        for info in link.get("addr_info") or []:
            if not isinstance(info, dict) or info.get("family") not in ("inet", "inet6") or "local" not in info \
                    or "prefixlen" not in info:
                continue
            try:
                ip = ipaddress.ip_interface("%s/%s" % (info["local"], info["prefixlen"]))
            except ValueError:
                continue
            found.append(Address(interface=str(link.get("ifname")), ip=ip, up="UP" in link_flags,
                                 loopback="LOOPBACK" in link_flags, scope=str(info.get("scope", "global")),
                                 flags=frozenset(key for key, value in info.items() if value is True)))
    return found


def read_links() -> list:
    """This machine's ``ip -j addr show`` output, parsed; InterfacesError when ``ip`` is missing or fails."""
    try:
        output = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, check=True, text=True, timeout=10).stdout
    except FileNotFoundError:
        raise InterfacesError("the ip command (iproute2) is not installed") from None
    except subprocess.CalledProcessError as exc:
        raise InterfacesError("ip -j addr show failed: %s" % (exc.stderr or "").strip()) from None
    except subprocess.TimeoutExpired:
        raise InterfacesError("ip -j addr show did not answer within 10 s") from None
    try:
        return json.loads(output or "[]")
    except ValueError as exc:
        raise InterfacesError("cannot read the output of ip -j addr show: %s" % exc) from None
