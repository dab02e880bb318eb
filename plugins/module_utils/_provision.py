# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decisions of the provision playbook, without Ansible: pure functions, no I/O.

The playbook (playbooks/provision.yml) and its roles (netboot_server, provision_machine)
only name steps; what each step decides lives here, where it is unit-tested: which machines
to install, which installer each architecture boots, what the netboot server is told about
the machines, which boot stage to wait for next and how long, whether a BMC may restart a
machine that runs an operating system, why a machine failed and the report line of each
machine. Each function takes plain data (the host variables it needs, already read) and the
time where it matters, so a test gives it the clock. This file is private to the collection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import events
# The boot stages wait_for_agent follows, in the order a machine reaches them (imported for the playbook's callers).
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.events import BOOT_STAGES

#: How the playbook's output names each stage (a loop item's label); ``unknown`` is check mode's answer.
BOOT_STAGE_NAMES = {
    events.OFFERED: "DHCP offer sent",
    events.IPXE_SERVED: "iPXE fetched",
    events.SCRIPT_SERVED: "boot script fetched",
    events.KERNEL_SERVED: "kernel fetched",
    events.INITRD_SERVED: "initrd fetched",
    events.PHONED_HOME: "installer phoned home",
    "unknown": "not followed in check mode",
}
#: The installer configuration of each architecture, unless the run names another.
INSTALLER_ATTRS = {"x86_64-linux": "installer", "aarch64-linux": "installer-aarch64"}
#: host_status states of a machine that runs an operating system other than its own system.
RUNS_ANOTHER_OS = ("unknown_os", "other_system")


def machines_to_install(machines: Sequence[str], states: Mapping[str, str | None]) -> list[str]:
    """The machines whose host_status said anything but ``installed``, in inventory order.

    A machine without a state failed its status check and is left out: its failure is already shown.
    """
    return [name for name in machines if states.get(name) not in (None, "installed")]


def installers(flake: str, arches: Iterable[str], attrs: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """``{arch: flake#attr}``: the installer to build for each architecture among the machines, once each."""
    chosen = dict(INSTALLER_ATTRS)
    chosen.update({arch: attr for arch, attr in (attrs or {}).items() if attr})
    found = {}
    for arch in arches:
        if arch not in chosen:
            raise ValueError("no installer configuration for architecture %r (known: %s)" % (arch, ", ".join(sorted(chosen))))
        found.setdefault(arch, "%s#%s" % (flake, chosen[arch]))
    return found


def server_hosts(machines: Sequence[str], hostvars: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What pxe_server's ``hosts`` option wants of each machine: name, MAC, architecture, its hosts.json ``ip``
    when it has one (the address it leases with ``dhcp: addresses``) and its ``network`` (``nixie_network``)
    when it has one (its installer's static network)."""
    found = []
    for name in machines:
        host = {"name": name, "mac": hostvars[name]["nixie_mac"], "arch": hostvars[name]["nixie_arch"]}
        if hostvars[name].get("nixie_ip") is not None:
            host["ip"] = hostvars[name]["nixie_ip"]
        if hostvars[name].get("nixie_network") is not None:
            host["network"] = dict(hostvars[name]["nixie_network"])
        found.append(host)
    return found


def next_boot_stage(previous: str | None) -> str:
    """The stage to wait for after ``previous`` (the last answer's state; None before the first wait).

    A state outside the stages (check mode's ``unknown``) starts again from the first stage.
    """
    if previous in BOOT_STAGES and previous != BOOT_STAGES[-1]:
        return BOOT_STAGES[BOOT_STAGES.index(previous) + 1]
    return BOOT_STAGES[0]


def boot_finished(result: Mapping[str, Any], check_mode: bool) -> bool:
    """Whether to stop following the boot: the wait failed, the installer phoned home, or nothing is followed (check mode)."""
    return bool(result.get("failed")) or check_mode or result.get("state") == BOOT_STAGES[-1]


def boot_label(state: str | None, seconds: float) -> str:
    """The line one wait prints: the stage reached and when, counted from the start of the machine's run."""
    name = BOOT_STAGE_NAMES.get(state or "", state or "?")
    return "%s at +%s s" % (name, round(seconds, 1))


def seconds_left(started: float, budget: float, now: float) -> int:
    """Seconds left of the machine's budget for its whole boot (at least 1: wait_for_agent wants a positive timeout)."""
    return int(max(started + budget - now, 1))


def reinstall_names(value: Any) -> list[str]:
    """The machines named in ``nixie_reinstall``: a comma-separated string or a list of names."""
    if value is None:
        return []
    if isinstance(value, str):
        names = value.split(",")
    elif isinstance(value, (list, tuple)):
        names = [str(name) for name in value]
    else:
        raise ValueError("nixie_reinstall must be machine names, comma-separated or a list, not %r" % (value,))
    return [name.strip() for name in names if name.strip()]


def restart_refusal(name: str, status: Mapping[str, Any], power_driver: str, reinstall: Any) -> str:
    """Why a BMC must not restart this machine into the installer ('' when it may).

    nixos-anywhere wipes the disks of a machine the run reaches; through Wake-on-LAN only a machine
    that is off boots the installer, but a BMC restarts a running one. A machine that runs an
    operating system is restarted only when named in ``nixie_reinstall``.
    """
    if power_driver == "wol" or status.get("state") not in RUNS_ANOTHER_OS or name in reinstall_names(reinstall):
        return ""
    if status["state"] == "other_system":
        running = "NixOS %s" % status.get("current_system")
    else:
        running = "an operating system (%s)" % (status.get("os_id") or "not NixOS")
    return ("it runs %s at %s; its BMC would restart it into the installer, which wipes its disks. To reinstall it, "
            "run again with -e nixie_reinstall=%s (see docs/power.md)" % (running, status.get("ip"), name))


def failure_reason(task_name: str, result: Mapping[str, Any]) -> str:
    """``task: why`` for a machine's first failed step; a loop's own message only says that an item failed."""
    for item in result.get("results") or []:
        if isinstance(item, Mapping) and item.get("failed"):
            return "%s: %s" % (task_name, item.get("msg"))
    return "%s: %s" % (task_name, result.get("msg") or "failed")


def installer_target(agent: Mapping[str, Any], check_mode: bool) -> dict[str, Any]:
    """The installer's address and host keys for nixos-anywhere, from wait_for_agent's last answer.

    In check mode no installer phones home: the command that would run names placeholders.
    """
    if check_mode:
        return {"ip": agent.get("ip") or "<installer-address>",
                "ssh_host_keys": agent.get("ssh_host_keys") or ["ssh-ed25519 <reported-by-the-installer>"]}
    return {"ip": agent.get("ip") or "", "ssh_host_keys": list(agent.get("ssh_host_keys") or [])}


def report_line(name: str, facts: Mapping[str, Any], server_hosts: Sequence[Mapping[str, Any]] = ()) -> str:
    """One machine's line of the run's report: outcome, time taken, why it failed, refused requests for its boot.

    ``facts``: ``state`` (host_status's), ``outcome``, ``seconds`` and ``failure`` of the machine's run, ``address``
    where the installed system was found after its reboot and ``installer_address`` where its installer was, each
    absent when the run never got there; ``server_hosts`` the netboot server's per-host result, whose warnings
    say that another machine asked for this one's boot and was refused (pxe_server's peer_check).
    """
    outcome = facts.get("outcome") or ("already installed" if facts.get("state") == "installed" else "not reached")
    parts = [str(outcome)]
    if facts.get("seconds") is not None:
        parts.append("in %ss" % facts["seconds"])
    if facts.get("address"):
        # The installed system may have come back at another address than its installer (a new DHCP lease).
        moved = facts.get("installer_address") and facts["installer_address"] != facts["address"]
        parts.append("at %s%s" % (facts["address"], " (its installer was at %s)" % facts["installer_address"] if moved else ""))
    if facts.get("failure") is not None:
        parts.append("- %s" % facts["failure"])
    warnings = [warning for host in server_hosts if host.get("name") == name for warning in host.get("warnings") or []]
    if warnings:
        parts.append("- WARNING: %s" % "; ".join(warnings))
    return "%s: %s" % (name, " ".join(parts))


def server_boot(installer: Mapping[str, Any] | None, built: Mapping[str, Any] | None, check_mode: bool) -> dict[str, Any]:
    """What pxe_server serves: a prebuilt installer (x86_64 machines), else the installers nix_build built per architecture.

    ``ready`` is false in check mode without a prebuilt installer: nothing was built, so there is nothing to check yet.
    """
    if installer:
        boot = {"ready": True, "kernel": installer["kernel"], "initrd": installer["initrd"]}
        if "cmdline" in installer:
            boot["cmdline"] = installer["cmdline"]
        return boot
    if check_mode:
        return {"ready": False}
    return {"ready": True, "artifacts": (built or {}).get("artifacts")}
