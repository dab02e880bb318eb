# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hosts.json schema (jsonschema), and its errors told as sentences naming the file, host and field.

This file is private to the collection: its interface may change without notice.
"""

from __future__ import annotations

import difflib
import json
import traceback
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._hosts.mac import MAC_PATTERN
from ansible_collections.nixie.metal.plugins.module_utils._hosts.network import VLAN_IDS

try:
    import jsonschema
except ImportError:
    jsonschema = None
    JSONSCHEMA_IMPORT_ERROR = traceback.format_exc()
else:
    JSONSCHEMA_IMPORT_ERROR = None


ARCHITECTURES = ("x86_64-linux", "aarch64-linux")
DEFAULT_ARCH = "x86_64-linux"

# A flake attribute that needs no quoting in `flake#attr` and is also a plain
# Ansible host name and group-friendly identifier.
HOST_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$"
GROUP_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
VARIABLE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

# How a machine is powered on: Wake-on-LAN, or its BMC (the power module).
POWER_DRIVERS = ("wol", "redfish", "ipmi")
BMC_DRIVERS = ("redfish", "ipmi")
BOOT_MODES = ("uefi", "legacy")
REDFISH_ONLY_FIELDS = ("system", "validate_certs")

HOSTS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://github.com/nixie-metal/nixie.metal/hosts.schema.json",
    "title": "nixie hosts.json",
    "description": (
        "Machines to install, keyed by the flake attribute of their NixOS "
        "configuration (nixosConfigurations.<name>). Compatible with upstream Nixie."
    ),
    "type": "object",
    "propertyNames": {"pattern": HOST_NAME_PATTERN},
    "additionalProperties": {"$ref": "#/$defs/host"},
    "$defs": {
        "host": {
            "type": "object",
            "required": ["mac_address"],
            "additionalProperties": False,
            "properties": {
                "mac_address": {
                    "description": (
                        "MAC address of the NIC the machine network-boots from. "
                        "Any usual spelling: bc:24:11:d0:28:34, BC-24-11-D0-28-34, "
                        "bc24.11d0.2834 or bc2411d02834; stored lower-case, colon-separated."
                    ),
                    "type": "string",
                    "pattern": MAC_PATTERN,
                },
                "ip": {
                    "description": (
                        "Address the machine is reachable at when known in advance "
                        "(static lease or already installed); becomes ansible_host. "
                        "Without it the address is learnt when the installer phones home."
                    ),
                    "type": "string",
                },
                "arch": {
                    "description": "Nix system of the machine; selects the installer and iPXE build.",
                    "enum": list(ARCHITECTURES),
                    "default": DEFAULT_ARCH,
                },
                "groups": {
                    "description": "Extra Ansible groups the host joins, besides the nixie group.",
                    "type": "array",
                    "items": {"type": "string", "pattern": GROUP_NAME_PATTERN},
                    "uniqueItems": True,
                },
                "vars": {
                    "description": "Extra host variables, passed to Ansible as they are.",
                    "type": "object",
                    "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
                },
                "description": {
                    "description": "Free text for people: where the machine is, what it is for.",
                    "type": "string",
                },
                "system": {
                    "description": (
                        "Store path of the NixOS system the machine should run, when it is built "
                        "elsewhere; becomes nixie_system. Without it the system is evaluated from the flake."
                    ),
                    "type": "string",
                    "pattern": r"^/nix/store/[0-9a-z]{32}-[^/]+$",
                },
                "power": {"$ref": "#/$defs/power"},
                "network": {"$ref": "#/$defs/network"},
            },
        },
        "network": {
            "description": (
                "A static IPv4 network for the machine's installer, given on its kernel command line "
                "(ip=, nameserver=, vlan=, ifname=): it comes up with this address, on this VLAN, with no "
                "DHCP at all, and phones home over it. The firmware may still need DHCP to load iPXE "
                "(see docs/dhcp.md)."
            ),
            "type": "object",
            "required": ["address"],
            "additionalProperties": False,
            "properties": {
                "address": {
                    "description": "The installer's IPv4 address with its prefix length, such as 192.0.2.10/24.",
                    "type": "string",
                },
                "gateway": {
                    "description": "The default router, on the address's subnet; none when the segment has no router.",
                    "type": "string",
                },
                "nameservers": {
                    "description": "DNS servers (IP addresses) the installer writes to /etc/resolv.conf.",
                    "type": "array",
                    "items": {"type": "string"},
                    "uniqueItems": True,
                },
                "vlan": {
                    "description": "The 802.1Q VLAN ID (1-4094) the address lives on; the link is untagged without it.",
                    "type": "integer",
                    "minimum": VLAN_IDS[0],
                    "maximum": VLAN_IDS[1],
                },
                "interface": {
                    "description": "MAC address of the NIC to configure; default the host's mac_address.",
                    "type": "string",
                    "pattern": MAC_PATTERN,
                },
            },
        },
        "power": {
            "description": (
                "How the machine is powered on and made to boot from the network: Wake-on-LAN (the default) "
                "or its BMC over Redfish or IPMI, which can also restart it and set a one-time network boot. "
                "The BMC password is never written here: name the environment variable or the Ansible "
                "(Vault) variable that holds it."
            ),
            "type": "object",
            "required": ["driver"],
            "additionalProperties": False,
            "properties": {
                "driver": {
                    "description": "wol (Wake-on-LAN magic packets), redfish or ipmi (the machine's BMC).",
                    "enum": list(POWER_DRIVERS),
                },
                "address": {
                    "description": "The BMC's host name or IP address; for redfish also an https:// URL.",
                    "type": "string",
                    "minLength": 1,
                },
                "port": {
                    "description": "The BMC's port when not the default (IPMI 623, Redfish 443).",
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 65535,
                },
                "user": {"description": "The BMC user.", "type": "string", "minLength": 1},
                "password_env": {
                    "description": "Name of the environment variable on the controller that holds the BMC password.",
                    "type": "string",
                    "pattern": VARIABLE_NAME_PATTERN,
                },
                "password_var": {
                    "description": (
                        "Name of the Ansible variable that holds the BMC password, for example one defined "
                        "in an Ansible Vault encrypted group_vars file."
                    ),
                    "type": "string",
                    "pattern": VARIABLE_NAME_PATTERN,
                },
                "system": {
                    "description": "redfish: the ComputerSystem Id or path, when the BMC manages several systems.",
                    "type": "string",
                    "minLength": 1,
                },
                "validate_certs": {
                    "description": "redfish: whether the BMC's TLS certificate must be trusted (default true).",
                    "type": "boolean",
                },
                "boot_mode": {
                    "description": "uefi or legacy: the firmware mode of the one-time network boot.",
                    "enum": list(BOOT_MODES),
                },
            },
        },
    },
}

RESERVED_VAR_PREFIX = "nixie_"


class HostsFileError(Exception):
    """hosts.json cannot be used; the message says where and what to do."""


def where(path: object, host: str | None = None, field: object = None) -> str:
    where = str(path)
    if host is not None:
        where += ": host %r" % host
    if field is not None:
        where += ", field %r" % field
    return where


def describe_schema_error(error: Any, path: str) -> str:
    """Turn one jsonschema error into a sentence naming the host and field."""
    location = list(error.absolute_path)
    host = location[0] if location else None
    field = location[1] if len(location) > 1 else None
    subfield = ".".join(str(p) for p in location[2:])
    if subfield:
        field = "%s.%s" % (field, subfield)
    validator = error.validator
    if "propertyNames" in error.schema_path:
        # jsonschema reports a bad key through the name schema's own keyword.
        validator = "propertyNames"

    if validator == "type" and host is None:
        return "%s: the top level must be a JSON object keyed by flake attribute, like " \
            '{"myhost": {"mac_address": "bc:24:11:d0:28:34"}}; found %s' % (path, _json_type(error.instance))
    if validator == "type" and field is None:
        return "%s: must be an object with at least \"mac_address\"; found %s" % (
            where(path, host), _json_type(error.instance))
    if validator == "propertyNames" and host is None:
        return "%s: %r is not a usable host name: it must be a flake attribute that is also an " \
            "Ansible host name (a letter or _, then letters, digits, _ or -, at most 63 characters)" % (
                path, error.instance)
    if validator == "propertyNames":
        return "%s: %r is not a valid variable name (letters, digits and _, not starting with a digit)" % (
            where(path, host, field), error.instance)
    if validator == "required" and field == "power":
        return "%s: \"driver\" is missing; say how the machine is powered on: %s" % (
            where(path, host, field), ", ".join(POWER_DRIVERS))
    if validator == "required" and field == "network":
        return "%s: \"address\" is missing; give the installer's address with its prefix, e.g. " \
            '"address": "192.0.2.10/24" (or drop network to let the installer ask DHCP)' % where(path, host, field)
    if validator == "required":
        return "%s: \"mac_address\" is missing; add the MAC address the machine network-boots from, " \
            'e.g. "mac_address": "bc:24:11:d0:28:34"' % where(path, host)
    if validator == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        extras = sorted(set(error.instance) - set(known))
        messages = []
        for extra in extras:
            name = "%s.%s" % (field, extra) if field else extra
            if field == "power" and "pass" in extra.lower():
                messages.append("%s: a password is never written in hosts.json; put it in an environment variable and "
                                "name that in power.password_env, or in an Ansible Vault variable and name that in "
                                "power.password_var" % where(path, host, name))
                continue
            hint = difflib.get_close_matches(extra, known, n=1)
            suggestion = "did you mean %r?" % hint[0] if hint else "known fields: %s" % ", ".join(known)
            messages.append("%s: unknown field; %s" % (where(path, host, name), suggestion))
        return "\n".join(messages)
    if validator == "pattern" and field in ("power.password_env", "power.password_var"):
        return "%s: %r is not a variable name (letters, digits and _, not starting with a digit)" % (
            where(path, host, field), error.instance)
    if validator == "minLength":
        return "%s: must not be empty" % where(path, host, field)
    if validator in ("minimum", "maximum") and field == "power.port":
        return "%s: %r is not a port number (1-65535)" % (where(path, host, field), error.instance)
    if validator in ("minimum", "maximum") and field == "network.vlan":
        return "%s: %r is not a VLAN ID (a whole number from 1 to 4094); leave vlan out for an untagged link" % (
            where(path, host, field), error.instance)
    if validator == "pattern" and field == "network.interface":
        return "%s: %r is not a MAC address; name the NIC to configure by its MAC, such as bc:24:11:d0:28:34" % (
            where(path, host, field), error.instance)
    if validator == "uniqueItems" and field == "network.nameservers":
        return "%s: lists the same name server twice" % where(path, host, field)
    if validator == "pattern" and field == "mac_address":
        return "%s: %r is not a MAC address; write six hex octets such as bc:24:11:d0:28:34" % (
            where(path, host, field), error.instance)
    if validator == "pattern" and field and field.startswith("groups"):
        return "%s: %r is not a valid group name (letters, digits and _, not starting with a digit)" % (
            where(path, host, field), error.instance)
    if validator == "pattern" and field == "system":
        return "%s: %r is not a store path such as /nix/store/<32 characters>-nixos-system-<name>" % (
            where(path, host, field), error.instance)
    if validator == "enum":
        return "%s: %r is not supported; use one of %s" % (
            where(path, host, field), error.instance, ", ".join(repr(v) for v in error.validator_value))
    if validator == "type":
        return "%s: expected %s, found %s" % (
            where(path, host, field), _json_type_name(error.validator_value), _json_type(error.instance))
    if validator == "uniqueItems":
        return "%s: lists the same group twice" % where(path, host, field)
    return "%s: %s" % (where(path, host, field), error.message)


def _json_type_name(schema_type: str | list[str]) -> str:
    names = {"object": "an object", "array": "a list", "string": "a string", "boolean": "true or false",
             "integer": "an integer", "number": "a number", "null": "null"}
    if isinstance(schema_type, list):
        return " or ".join(names.get(t, t) for t in schema_type)
    return names.get(schema_type, schema_type)


def _json_type(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "%s (a boolean)" % json.dumps(value)
    if isinstance(value, str):
        return "a string (%s)" % json.dumps(value)
    if value is None:
        return "null"
    return "a number (%s)" % json.dumps(value)


_validator = None


def schema_validator() -> Any:
    global _validator
    if jsonschema is None:
        raise HostsFileError(
            "reading hosts.json needs the Python library jsonschema on the controller: "
            "pip install jsonschema (or install the collection's requirements.txt)")
    if _validator is None:
        cls = jsonschema.validators.validator_for(HOSTS_SCHEMA)
        cls.check_schema(HOSTS_SCHEMA)
        _validator = cls(HOSTS_SCHEMA)
    return _validator
