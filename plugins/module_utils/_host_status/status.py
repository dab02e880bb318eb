# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Does a machine need installing? The logic behind the host_status module.

One run:

1. Address. O(address) if given; else the kernel's neighbour table (``ip -j neigh``):
   an IPv4 entry for the MAC that the kernel has just confirmed (REACHABLE, PERMANENT) is
   used as is; otherwise an ARP sweep (scapy, imported only then) of the directly connected
   IPv4 subnets, or of the given interface/subnet, asks every address who has it. A confirmed
   IPv6 neighbour is used when no IPv4 address answers; a stale entry only when no sweep is
   possible (no scapy, no root), with a warning. With ``wait`` (and ``last_address``, the
   machine's address before a reboot) this is done in rounds until an SSH server that is the
   machine answers (:mod:`.locate`).
2. One SSH connection (the OpenSSH client, BatchMode) runs one command that prints
   ``/etc/os-release`` and the target of ``/run/current-system``. It is a new connection with
   the collection's pinned options (``_ssh``), whatever the operator's ssh configuration shares.
3. Only when the machine runs NixOS is the expected system evaluated
   (``nix eval FLAKE#nixosConfigurations.ATTR.config.system.build.toplevel.outPath``, nothing
   is built, with the same input overrides as nix_build), unless given as a store path.
4. :func:`classify` turns that into one of :data:`STATES`.

Step 1 is :mod:`.address` (and :mod:`.locate`), steps 2 and 3 are :mod:`.probe`; this file judges what they found
(:func:`classify`, pure) and runs the steps in order (:func:`host_status`), which takes the
edges as parameters so the whole run can be tested without a network. No Ansible imports.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils import _ssh
from ansible_collections.nixie.metal.plugins.module_utils._nix import errors as nix_errors, overrides as nix_overrides
from ansible_collections.nixie.metal.plugins.module_utils._hosts import normalize_mac
from ansible_collections.nixie.metal.plugins.module_utils._host_status import locate
from ansible_collections.nixie.metal.plugins.module_utils._host_status.address import (
    DEFAULT_ARP_TIMEOUT, discover_address, neighbour_owner, read_neighbours)
from ansible_collections.nixie.metal.plugins.module_utils._host_status.common import HostStatusError
from ansible_collections.nixie.metal.plugins.module_utils._host_status.probe import (
    DEFAULT_EVAL_TIMEOUT, DEFAULT_TIMEOUT, evaluate_expected_system, find_ssh, known_hosts_lines, last_line, normalize_store_path, ssh_probe)

STATES = ("absent", "unknown_os", "other_system", "installed")


def classify(ip: str | None, probe: Mapping[str, Any] | None, expected_system: str | None = None) -> tuple[str, str]:
    """(state, reason) from what was found. Pure.

    ``probe``: None when no address was found, else a dict with ``outcome`` (``ok``,
    ``closed``, ``unreachable``, ``auth``, ``other``, ``timeout``, ``garbled``), ``stderr``,
    ``os_id`` and ``current_system``.
    """
    if not ip or probe is None:
        return "absent", "no address found for the MAC"
    outcome = probe.get("outcome")
    detail = last_line(probe.get("stderr"))
    if outcome == "closed":
        return "absent", "SSH port closed at %s (%s)" % (ip, detail or "connection refused")
    if outcome == "unreachable":
        return "absent", "%s is unreachable (%s)" % (ip, detail or "no answer")
    if outcome == "auth":
        return "unknown_os", "SSH at %s refused us (%s)" % (ip, detail)
    if outcome == "timeout":
        return "unknown_os", "%s accepted the SSH connection but the check did not finish in time" % ip
    if outcome == "garbled":
        return "unknown_os", "the command run over SSH at %s did not print what it should (a forced command or restricted shell?)" % ip
    if outcome != "ok":
        return "unknown_os", "SSH at %s failed: %s" % (ip, detail or "no message")
    os_id = probe.get("os_id")
    if os_id != "nixos":
        return "unknown_os", "%s runs %s, not NixOS" % (ip, "ID=%s" % os_id if os_id else "a system without /etc/os-release")
    current = probe.get("current_system")
    if not current:
        return "other_system", "%s runs NixOS but has no /run/current-system" % ip
    if expected_system is None:
        return "other_system", "%s runs NixOS (%s); no expected system to compare with" % (ip, current)
    if normalize_store_path(current) == normalize_store_path(expected_system):
        return "installed", "%s runs the expected system" % ip
    return "other_system", "%s runs %s, expected %s" % (ip, current, expected_system)


def _checked_inputs(params: Mapping[str, Any]) -> tuple[str, str | None, list[str]]:
    """The MAC, the expected system and the known host keys of ``params``, each checked before anything is contacted
    (the SSH key and the flake's input overrides too). Raises HostStatusError naming the option."""
    mac = normalize_mac(params["mac"])
    if not mac:
        raise HostStatusError("mac %r is not a MAC address such as 52:54:00:12:34:01" % (params["mac"],))
    expected = params.get("expected_system")
    if expected is not None:
        expected = normalize_store_path(expected)
        if not expected.startswith("/"):
            raise HostStatusError("expected_system %r is not an absolute store path such as "
                                  "/nix/store/<hash>-nixos-system-<name>" % params["expected_system"])
    key = params.get("ssh_key")
    if key and not os.path.isfile(key):
        raise HostStatusError("ssh_key %s does not exist" % key)
    known = [k for k in (params.get("known_host_keys") or []) if k and str(k).strip()]
    if known:
        known_hosts_lines(known)  # fail early on a malformed key
    try:
        nix_overrides.check_override_inputs(params.get("override_inputs"))  # early too, whether or not the flake is evaluated
    except nix_errors.NixError as exc:
        raise HostStatusError(exc.msg) from None
    return mac, expected, known


def host_status(params: Mapping[str, Any], warnings: list[str] | None = None, discover: Callable[..., tuple[str | None, str | None]] = discover_address,
                probe: Callable[..., dict[str, Any]] = ssh_probe, evaluate: Callable[..., str | None] = evaluate_expected_system,
                read_ssh_version: Callable[[str], str] = _ssh.read_version,
                neighbours: Callable[..., list[dict[str, Any]]] = read_neighbours, banner: Callable[..., str] = locate.ssh_banner,
                clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """The module's result for ``params`` (the module's options). Raises HostStatusError.

    With ``wait`` or ``last_address`` the machine is looked for in rounds (:mod:`.locate`); otherwise
    once, at ``address`` or where its MAC is found.
    """
    warnings = warnings if warnings is not None else []
    mac, expected, known = _checked_inputs(params)
    timeout = params.get("timeout") or DEFAULT_TIMEOUT
    ssh = find_ssh(params.get("ssh_executable"))
    key = params.get("ssh_key")

    result = {"mac": mac, "ip": None, "address_source": None, "state": None, "os_id": None,
              "current_system": None, "expected_system": expected, "reason": None, "waited": 0.0}
    port = params.get("ssh_port") or 22
    versions = []

    def probe_at(ip: str) -> dict[str, Any]:
        if not versions:  # read once, and only when there is an address to probe
            version_text = read_ssh_version(ssh)
            versions.append(_ssh.parse_ssh_version(version_text))
            if versions[0] is None:
                warnings.append(_ssh.version_warning(ssh, version_text, versions[0]))
        return probe(ssh, ip, user=params.get("ssh_user") or "root", port=port,
                     key=key, known_host_keys=known, timeout=timeout, ssh_version=versions[0])

    def discover_skipping(skip: list[str]) -> tuple[str | None, str | None]:
        return discover(mac, interface=params.get("interface"), subnet=params.get("subnet"),
                        arp_timeout=params.get("arp_timeout") or DEFAULT_ARP_TIMEOUT, warnings=warnings, skip=skip)

    wait = float(params.get("wait") or 0)
    located = None
    found = None
    if wait or params.get("last_address"):
        look_at = locate.look_edges(mac, port, lambda: neighbours(params.get("interface")), neighbour_owner,
                                    banner=banner, probe=probe_at, pinned=bool(known))
        try:
            located = locate.locate(mac, port, wait, params.get("address"), params.get("last_address"),
                                    discover_skipping, look_at, warnings=warnings, clock=clock, sleep=sleep)
        except HostStatusError as exc:
            exc.result = dict(result, **exc.result)
            raise
        ip, source, found = located.ip, located.source, located.probe
        result.update(ip=ip, address_source=source, waited=located.waited)
    else:
        if params.get("address"):
            ip, source = params["address"], "address"
        else:
            ip, source = discover_skipping([])
        result.update(ip=ip, address_source=source)
        if ip:
            try:
                found = probe_at(ip)
            except HostStatusError as exc:
                exc.result = dict(result, **exc.result)
                raise
    if found is not None:
        result.update(os_id=found.get("os_id"), current_system=found.get("current_system"))
        if found.get("os_id") == "nixos" and expected is None and params.get("flake"):
            try:
                expected = evaluate(params["flake"], params["attribute"], nix=params.get("nix_executable"),
                                    timeout=params.get("eval_timeout") or DEFAULT_EVAL_TIMEOUT,
                                    override_inputs=params.get("override_inputs"), agent_flake=params.get("agent_flake"),
                                    warnings=warnings)
            except HostStatusError as exc:
                exc.result = dict(result, **exc.result)
                raise
            result["expected_system"] = expected
    state, reason = classify(ip, found, expected)
    if located is not None and state == "absent":
        reason = locate.absent_reason(mac, located, wait)
    elif not ip:
        reason = "no address found for %s: not in the neighbour table and no answer to the ARP sweep" % mac
    result.update(state=state, reason=reason)
    return result
