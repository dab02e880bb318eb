# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hosts contract, shared by the inventory plugin, the modules and the engine.

One concern per file: :mod:`.mac` (the one spelling of a MAC), :mod:`.schema`
(hosts.json's schema and its errors as sentences), :mod:`.record` (the
:class:`~.record.Host` record), :mod:`.network` (a host's static network) and
:mod:`.loading` (where Hosts are made,
from a file or a module's option). The names below are the contract; this
package is private to the collection and may change without notice.
"""

from __future__ import annotations

from ansible_collections.nixie.metal.plugins.module_utils._hosts.loading import hosts_from_option, load_hosts, normalize_hosts, parse_hosts
from ansible_collections.nixie.metal.plugins.module_utils._hosts.mac import (
    MAC_PATTERN, is_canonical_mac, mac_from_octets, nic_mac_problem, normalize_mac)
from ansible_collections.nixie.metal.plugins.module_utils._hosts.network import HostNetwork
from ansible_collections.nixie.metal.plugins.module_utils._hosts.record import Host
from ansible_collections.nixie.metal.plugins.module_utils._hosts.schema import (
    ARCHITECTURES, BMC_DRIVERS, BOOT_MODES, DEFAULT_ARCH, HOSTS_SCHEMA, JSONSCHEMA_IMPORT_ERROR, POWER_DRIVERS, HostsFileError)

__all__ = [
    "ARCHITECTURES", "BMC_DRIVERS", "BOOT_MODES", "DEFAULT_ARCH", "HOSTS_SCHEMA", "JSONSCHEMA_IMPORT_ERROR", "MAC_PATTERN",
    "POWER_DRIVERS", "Host", "HostNetwork", "HostsFileError", "hosts_from_option", "is_canonical_mac", "load_hosts", "mac_from_octets",
    "nic_mac_problem", "normalize_hosts", "normalize_mac", "parse_hosts",
]
