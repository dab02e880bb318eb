# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run's server settings, and the only home of their defaults.

The pxe_server module's argument spec and the preflight take their defaults
from here (plugins/module_utils/_argspec.py), ``_pxe_server.plan`` passes on
only what it was given, and ``ansible-test sanity`` holds the modules'
documentation to the same values. Nothing here opens a socket, so the
modules that only need a default import it cheaply.
This file is private to the collection: its interface may change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import policy6
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.api import API_PREFIX
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.lease_server import AddressMode
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp, dhcp6

# Where Debian's and Ubuntu's ipxe package puts its binaries.
IPXE_DIR = "/usr/lib/ipxe"


@dataclass
class ServerOptions:
    hosts: tuple[Host, ...]
    server_ip: str | None  # None: no IPv4 on the segment (IPv6 only)
    artifacts: dict
    interface: str | None = None
    bind_ip: str = "0.0.0.0"
    http_port: int = 8080
    dhcp_port: int = dhcp.SERVER_PORT
    proxy_port: int = dhcp.PXE_PORT
    tftp_port: int = 69
    ipxe_files: dict = field(default_factory=dict)
    extra_cmdline: str | None = None
    max_duration: float = 3600.0
    idle_timeout: float = 900.0
    linger: float = 30.0
    admin_token: str | None = None
    run_id: str | None = None
    # MAC -> token kept from a server of the same run that died (see _pxe_server.run).
    tokens: dict = field(default_factory=dict)
    # IPv6 (server6.py): the interface's global or unique-local address, None for IPv4 only;
    # the DHCPv6 mode (policy6.MODE_*) and, for the addresses mode, the prefix to hand out.
    server_ip6: str | None = None
    dhcp6_mode: str = policy6.MODE_PROXY
    dhcp6_prefix: str | None = None
    dhcp6_port: int = dhcp6.SERVER_PORT
    proxy6_port: int = dhcp6.PXE_PORT
    # The account the serving process switches to once bound (_pxe_server.run, privileges.py); None keeps its own.
    user: str | None = None
    # Serve a host's script, kernel, initrd and phone-home only to its own MAC on the segment (docs/security.md).
    peer_check: bool = True
    # DHCPv4: proxy (beside the site's server), addresses (the inventory's DHCP server; ``addresses`` holds its
    # settings) or off (no DHCPv4 at all: the site's server names the boot file).
    dhcp_mode: str = "proxy"
    addresses: AddressMode | None = None
    dhcp_lease_time: int = 3600

    @property
    def http_base(self) -> str | None:
        if self.server_ip is None:
            return self.http_base6
        return "http://%s:%d" % (self.server_ip, self.http_port)

    @property
    def http_base6(self) -> str | None:
        return "http://[%s]:%d" % (self.server_ip6, self.http_port) if self.server_ip6 else None

    @property
    def api_url(self) -> str:
        return self.http_base + API_PREFIX
