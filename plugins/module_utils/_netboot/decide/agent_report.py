# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the agent's phone-home may say, and the reasons one is refused.

:func:`validate_report` checks the report's JSON and returns it normalised
(bounded lists, one spelling of MACs, addresses and keys); the errors below
are the run's refusals, each with a stable ``code``. The registry
(:mod:`..state.registry`) raises them; the API (:mod:`.api`) turns a code
into an HTTP status. Pure: no sockets, no state.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._hosts import normalize_mac

# Limits that keep a misbehaving agent from growing memory.
MAX_ADDRESSES = 64
MAX_HOST_KEYS = 16
MAX_HOST_KEY_LENGTH = 8192
MAX_HOSTNAME_LENGTH = 253
MAX_IFNAME_LENGTH = 64

_HOST_KEY = re.compile(r"^((?:ssh|ecdsa|sk)-[A-Za-z0-9@.+-]{1,64}) ([A-Za-z0-9+/]+={0,3})(?: [^\x00-\x1f\x7f]*)?$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})?$")
_IFNAME = re.compile(r"^[^\x00-\x20\x7f/:]{1,64}$")


class RegistryError(Exception):
    """Base of the refusals of a phone-home (or of a MAC the run does not know); ``code`` names the reason.

    The API answers each with the HTTP status :func:`.api.status_of` gives its code.
    """

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TokenMissing(RegistryError):
    """No token was presented."""

    code = "token_missing"


class TokenRejected(RegistryError):
    """The token is not this run's token for the host the report names."""

    code = "token_rejected"


class ReportInvalid(RegistryError):
    """The agent's report is malformed, oversized or has too many entries."""

    code = "report_invalid"


class AlreadyFinished(RegistryError):
    """The host already finished with a different outcome or report."""

    code = "already_finished"


class PeerRefused(RegistryError):
    """The request did not come from the host's MAC (``impostor``, ``unverified``) or its token is claimed elsewhere."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class UnknownHost(RegistryError):
    """The MAC is not a host of this run."""

    code = "unknown_host"


def validate_report(report: object) -> dict[str, Any]:
    """Check the agent's report and return it normalised; raise ReportInvalid.

    Returns a dict with mac, addresses, ssh_host_keys, hostname and uptime.
    Unknown keys are ignored so newer agents still talk to older servers.
    """
    if not isinstance(report, dict):
        raise ReportInvalid("the body must be a JSON object with at least \"mac\"; send the report the nixie-agent builds")
    mac = normalize_mac(report.get("mac"))
    if mac is None:
        raise ReportInvalid("\"mac\" is missing or not a MAC address; send the nixie.mac value from the kernel command line")

    addresses = report.get("addresses", [])
    if addresses is None:
        addresses = []
    if not isinstance(addresses, list):
        raise ReportInvalid("\"addresses\" must be a list of {ifname, mac, address, prefix} objects")
    if len(addresses) > MAX_ADDRESSES:
        raise ReportInvalid("\"addresses\" has %d entries, more than the limit of %d; report global addresses only" % (len(addresses), MAX_ADDRESSES))
    clean_addresses = []
    for index, entry in enumerate(addresses):
        where = "addresses[%d]" % index
        if not isinstance(entry, dict):
            raise ReportInvalid("%s must be an object with ifname, mac, address and prefix" % where)
        ifname = entry.get("ifname")
        if not isinstance(ifname, str) or not _IFNAME.match(ifname):
            raise ReportInvalid("%s.ifname must be an interface name of 1-%d printable characters" % (where, MAX_IFNAME_LENGTH))
        if_mac = entry.get("mac")
        if if_mac in (None, ""):
            if_mac = None
        else:
            if_mac = normalize_mac(if_mac)
            if if_mac is None:
                raise ReportInvalid("%s.mac must be a MAC address or null" % where)
        address = entry.get("address")
        if not isinstance(address, str) or len(address) > 64:
            raise ReportInvalid("%s.address must be an IPv4 or IPv6 address as a string" % where)
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            raise ReportInvalid("%s.address %r is not an IPv4 or IPv6 address" % (where, address[:64]))
        prefix = entry.get("prefix")
        if isinstance(prefix, str) and prefix.isdigit() and len(prefix) <= 3:
            prefix = int(prefix)
        if isinstance(prefix, bool) or not isinstance(prefix, int) or not 0 <= prefix <= parsed.max_prefixlen:
            raise ReportInvalid("%s.prefix must be an integer from 0 to %d" % (where, parsed.max_prefixlen))
        clean_addresses.append({"ifname": ifname, "mac": if_mac, "address": str(parsed), "prefix": prefix})

    keys = report.get("ssh_host_keys", [])
    if keys is None:
        keys = []
    if not isinstance(keys, list):
        raise ReportInvalid("\"ssh_host_keys\" must be a list of \"<type> <base64>\" strings")
    if len(keys) > MAX_HOST_KEYS:
        raise ReportInvalid("\"ssh_host_keys\" has %d entries, more than the limit of %d" % (len(keys), MAX_HOST_KEYS))
    clean_keys = []
    for index, key in enumerate(keys):
        if not isinstance(key, str) or len(key) > MAX_HOST_KEY_LENGTH:
            raise ReportInvalid("ssh_host_keys[%d] must be a string of at most %d characters" % (index, MAX_HOST_KEY_LENGTH))
        match = _HOST_KEY.match(key.strip())
        if not match:
            raise ReportInvalid("ssh_host_keys[%d] is not an OpenSSH public key line such as \"ssh-ed25519 AAAA...\"" % index)
        clean = "%s %s" % (match.group(1), match.group(2))
        if clean not in clean_keys:
            clean_keys.append(clean)

    hostname = report.get("hostname")
    if not isinstance(hostname, str) or len(hostname) > MAX_HOSTNAME_LENGTH or not _HOSTNAME.match(hostname):
        # The host name is only informative, and a fresh kernel reports "(none)";
        # refusing the whole report for it would leave the agent retrying forever.
        hostname = None

    uptime = report.get("uptime")
    if isinstance(uptime, str):
        try:
            uptime = float(uptime)
        except ValueError:
            raise ReportInvalid("\"uptime\" must be a number of seconds")
    if uptime is not None and (isinstance(uptime, bool) or not isinstance(uptime, (int, float)) or not 0 <= uptime < 1e10):
        raise ReportInvalid("\"uptime\" must be a non-negative number of seconds")

    return {
        "mac": mac,
        "addresses": clean_addresses,
        "ssh_host_keys": clean_keys,
        "hostname": hostname,
        "uptime": uptime,
    }


def report_identity(report: Mapping[str, Any]) -> tuple:
    """The parts of a report that must match for a repeat to be idempotent (not uptime)."""
    return (
        report["mac"],
        tuple(sorted((a["ifname"], a["mac"] or "", a["address"], a["prefix"]) for a in report["addresses"])),
        tuple(sorted(report["ssh_host_keys"])),
        report["hostname"],
    )
