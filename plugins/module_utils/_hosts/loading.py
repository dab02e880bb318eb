# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where :class:`~.record.Host` records are made: from a hosts.json file, or from a module's ``hosts`` option.

hosts.json is upstream Nixie's format, a JSON object keyed by flake attribute
whose values hold at least ``mac_address``. A module's ``hosts`` option is a
list of ``{"name", "mac", ...}`` and is judged as the same document would
be, so that hosts are checked the same way wherever they come from. This file
is private to the collection (leading underscore): its interface may change
without notice.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._hosts.mac import nic_mac_problem, normalize_mac
from ansible_collections.nixie.metal.plugins.module_utils._hosts.network import HostNetwork, network_from_entry
from ansible_collections.nixie.metal.plugins.module_utils._hosts.record import Host
from ansible_collections.nixie.metal.plugins.module_utils._hosts.schema import (
    BMC_DRIVERS, DEFAULT_ARCH, REDFISH_ONLY_FIELDS, RESERVED_VAR_PREFIX, HostsFileError, describe_schema_error, schema_validator, where)


def _reject_duplicate_keys(path: str) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen = set()
        for key, dummy in pairs:
            if key in seen:
                raise HostsFileError("%s: the key %r appears twice in one object; keep one of them" % (path, key))
            seen.add(key)
        return dict(pairs)
    return hook


def parse_hosts(text: str, path: str = "hosts.json") -> list[Host]:
    """Validate and normalise the text of a hosts.json file.

    Returns the :class:`~.record.Host` records, sorted by name. Raises
    HostsFileError naming every problem found.
    """
    if not text.strip():
        raise HostsFileError(
            '%s: the file is empty; it must be a JSON object such as {"myhost": {"mac_address": "bc:24:11:d0:28:34"}}'
            % path)
    try:
        document = json.loads(text, object_pairs_hook=_reject_duplicate_keys(path))
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise HostsFileError("%s: not valid JSON at line %d, column %d: %s" % (
                path, exc.lineno, exc.colno, exc.msg)) from None
        raise HostsFileError("%s: not valid JSON: %s" % (path, exc)) from None
    return normalize_hosts(document, path)


def normalize_hosts(document: object, path: str = "hosts.json") -> list[Host]:
    """Validate an already-decoded hosts.json document and normalise it (see parse_hosts)."""
    validator = schema_validator()
    if not validator.is_valid(document):
        errors = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
        raise HostsFileError("\n".join(describe_schema_error(e, path) for e in errors))

    problems = []
    hosts = []
    owner_of_mac = {}
    owner_of_address = {}
    for name in sorted(document):
        entry = document[name]
        mac = normalize_mac(entry["mac_address"])
        problem = nic_mac_problem(mac) if mac else "it is not a MAC address; write six hex octets such as bc:24:11:d0:28:34"
        if problem:
            problems.append("%s: %r cannot be used: %s" % (where(path, name, "mac_address"), entry["mac_address"], problem))
        elif mac in owner_of_mac:
            problems.append("%s: %s is also the MAC of host %r; each machine needs its own MAC" % (
                where(path, name, "mac_address"), mac, owner_of_mac[mac]))
        owner_of_mac.setdefault(mac, name)

        ip = entry.get("ip")
        checked_ip = None
        if ip is not None:
            try:
                ip = checked_ip = str(ipaddress.ip_address(ip))
            except ValueError:
                problems.append("%s: %r is not an IPv4 or IPv6 address" % (where(path, name, "ip"), ip))

        for var in sorted(entry.get("vars", {})):
            if var.startswith(RESERVED_VAR_PREFIX):
                problems.append("%s: %r is reserved: variables starting with %r are set by nixie.metal; rename it" % (
                    where(path, name, "vars"), var, RESERVED_VAR_PREFIX))

        power = dict(entry.get("power", {"driver": "wol"}))
        problems.extend(_power_problems(path, name, power))

        network = None
        if "network" in entry:
            network, found = network_from_entry(entry["network"], mac or "", checked_ip,
                                                lambda field, name=name: where(path, name, field))
            problems.extend(found)
        problems.extend(_shared_address_problems(path, name, checked_ip, network, owner_of_address))

        hosts.append(dict(
            name=name,
            mac=mac,
            arch=entry.get("arch", DEFAULT_ARCH),
            ip=ip,
            groups=tuple(entry.get("groups", ())),
            vars=dict(entry.get("vars", {})),
            description=entry.get("description"),
            system=entry.get("system"),
            power=power,
            network=network,
        ))
    if problems:
        raise HostsFileError("\n".join(problems))
    # Made only once every field has passed: a Host is never half-checked.
    return [Host(**fields) for fields in hosts]


def _shared_address_problems(path: str, name: str, ip: str | None, network: HostNetwork | None,
                             owner_of_address: dict[str, tuple[str, str]]) -> list[str]:
    """A static address that another host also holds (as its ``network.address`` or its ``ip``).

    The installer takes a static address without asking anyone, so a second machine with it would answer
    for the first. ``owner_of_address`` collects the addresses seen so far. Two ``ip`` alone are left to
    the DHCP mode that leases them (its plan names them), as before ``network`` existed.
    """
    problems = []
    for field, address in (("ip", ip), ("network.address", network.ip if network is not None else None)):
        if address is None:
            continue
        other = owner_of_address.get(address)
        if other is not None and other[0] != name and "network.address" in (field, other[1]):
            problems.append("%s: %s is also the address of host %r (its %s); each machine needs its own address" % (
                where(path, name, field), address, other[0], other[1]))
        if other is None or other[1] == "ip":
            owner_of_address[address] = (name, field)
    return problems


def hosts_from_option(entries: Sequence[Mapping[str, Any]], option: str = "hosts") -> list[Host]:
    """The Hosts of a module's ``option``: a list of ``{"name", "mac", ...}`` (``mac_address`` also accepted).

    Judged as the hosts.json document it spells would be, so the errors
    (HostsFileError) name the option, the host and the field alike.
    """
    document = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise HostsFileError("%s[%d]: must be a mapping with name and mac, found %r" % (option, index, entry))
        fields = dict(entry)
        name = fields.pop("name", None)
        if not isinstance(name, str):
            raise HostsFileError("%s[%d]: every entry needs a name (its flake attribute)" % (option, index))
        fields["mac_address"] = fields.pop("mac", fields.get("mac_address"))
        if isinstance(fields.get("network"), Mapping):
            # A module's suboptions come with every unset one as None; hosts.json leaves them out.
            fields["network"] = {k: v for k, v in fields["network"].items() if v is not None}
        document[name] = {k: v for k, v in fields.items() if v is not None}
    return normalize_hosts(document, option)


def _power_problems(path: str, name: str, power: Mapping[str, Any]) -> list[str]:
    """What is wrong with a schema-valid ``power`` entry, one sentence each (the schema cannot say it as well)."""
    driver = power["driver"]
    given = sorted(field for field in power if field != "driver")
    if driver not in BMC_DRIVERS:
        return ["%s: only BMC drivers (%s) take it; driver %r needs the MAC address only" % (
            where(path, name, "power." + field), ", ".join(BMC_DRIVERS), driver) for field in given]
    problems = []
    for field in ("address", "user"):
        if field not in power:
            problems.append("%s: driver %r needs the BMC's %s" % (where(path, name, "power." + field), driver, field))
    secrets = [field for field in ("password_env", "password_var") if field in power]
    if len(secrets) != 1:
        problems.append("%s: driver %r needs exactly one of password_env (an environment variable's name) and "
                        "password_var (an Ansible Vault variable's name)%s" % (
                            where(path, name, "power"), driver, "; both are given" if secrets else ""))
    if driver != "redfish":
        problems.extend("%s: a Redfish field; driver %r does not take it" % (where(path, name, "power." + field), driver)
                        for field in REDFISH_ONLY_FIELDS if field in power)
    return problems


def load_hosts(path: str) -> list[Host]:
    """Read, validate and normalise the hosts.json file at ``path`` (see parse_hosts)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise HostsFileError("%s: no such file; create it (see examples/hosts.json) or fix the path" % path) from None
    except IsADirectoryError:
        raise HostsFileError("%s: is a directory, not a hosts.json file" % path) from None
    except OSError as exc:
        raise HostsFileError("%s: cannot be read: %s" % (path, exc.strerror or exc)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HostsFileError("%s: not UTF-8 text (byte %d); save it as UTF-8 JSON" % (path, exc.start)) from None
    return parse_hosts(text, path)
