# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the role logs in and runs nixos-anywhere, and which of its steps run."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._nixos_anywhere.arguments import _truth


def logins(settled: Mapping[str, Any], argv: Sequence[str], ssh_options: Sequence[str] | None, pin_host_key: object) -> dict[str, Any]:
    """How the role runs nixos-anywhere and its own ssh logins: the bounded command, ssh's options, whether pinned."""
    args = ["-T", "-p", str(settled["port"]), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    if settled["key"]:
        args += ["-i", settled["key"], "-o", "IdentitiesOnly=yes"]
    for option in ssh_options or []:
        args += ["-o", str(option)]
    return {"ssh_args": args, "command": ["timeout", "--kill-after=30", str(settled["timeout"])] + list(argv),
            "pinned": bool(settled["expected_keys"]) and _truth(pin_host_key)}


def would_run(host: str, command: Sequence[object], expected_keys: Sequence[str], pinned: bool, phases: Sequence[str],
              disks: Sequence[str] | None) -> str:
    """Check mode's line: the command that would run, whether the host key is checked, which disks are."""
    if expected_keys:
        keys = "(host key checked against %d expected key(s) first%s)" % (
            len(expected_keys), ", connections pinned to them" if pinned else "")
    else:
        keys = "(host key NOT checked: no expected host keys)"
    checked = ""
    if "disko" in phases:
        checked = "(disks checked first: %s)" % (", ".join(disks) if disks is not None else "those of the flake's disko configuration")
    return "Would run, for %s: %s %s %s" % (host, " ".join(shlex.quote(str(arg)) for arg in command), keys, checked)


def steps(settled: Mapping[str, Any], plan: Mapping[str, Any], check_mode: object, wait_for_reboot: object) -> dict[str, bool]:
    """Which of the role's steps run, from its settled arguments and plan (each a named yes or no for a task's when).

    Nothing past the checks runs in check mode. The host key is checked when the installer reported keys;
    the disks when the disko phase runs, evaluated from the flake first when no list was given;
    the installed system after the reboot phase, when the role waits for it or verifies it.
    """
    install = not _truth(check_mode)
    phases = list(plan["phases"])
    checks_host_key = bool(settled["expected_keys"])
    return {
        "check_key": bool(settled["key"]),
        "build_on_controller": plan["build"] == "controller",
        "install": install,
        "eval_disks": install and "disko" in phases and settled["disks"] is None,
        "check_host_key": install and checks_host_key,
        "warn_host_key_unchecked": install and not checks_host_key,
        "check_disks": install and "disko" in phases,
        "after_reboot": install and "reboot" in phases
        and (_truth(wait_for_reboot) or _truth(settled["plan_args"]["verify"])),
    }


def ssh_login(remote_command: str, logins: Mapping[str, Any], tmp_dir: str, ssh_client: Mapping[str, Any]) -> dict[str, Any]:
    """The role's own ssh login that runs ``remote_command``, bounded to a minute: ``argv`` and ``environment``.

    With expected host keys it goes through the pinned wrapper in ``tmp_dir`` (its calls logged apart
    from nixos-anywhere's); without, through the real ssh, accepting any key as nixos-anywhere would.
    """
    if logins["checks_host_key"]:
        ssh = [tmp_dir + "/bin/ssh"]
        environment = {"NIXOS_ANYWHERE_PINNED_LOG": tmp_dir + "/ssh-role.log"}
    else:
        ssh = [logins["ssh"]] + list(ssh_client["args"]) + ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        environment = {}
    argv = ["timeout", "--kill-after=5", "60"] + ssh + list(logins["ssh_args"]) + [logins["destination"], remote_command]
    return {"argv": argv, "environment": environment}


def disk_probe_script(disks: Sequence[str]) -> str:
    """The shell command that tells, on the target, which disks are block devices and what /dev/disk/by-id holds."""
    return ("for d in %s; do if [ -b \"$d\" ]; then echo \"present $d\"; else echo \"missing $d\"; fi; done; "
            "for l in /dev/disk/by-id/*; do [ -e \"$l\" ] && echo \"by-id $l -> $(readlink -f \"$l\")\"; done; true"
            % " ".join(shlex.quote(str(disk)) for disk in disks))


def status_args(settled: Mapping[str, Any], expected_system: str, verify: object = True) -> dict[str, Any]:
    """The optional arguments of host_status after the install: only those that say something.

    The expected system, when known (built on the controller, or given), replaces the flake's evaluation;
    without verify nothing is compared, so nothing is evaluated either.
    """
    args = {}
    if settled["key"]:
        args["ssh_key"] = settled["key"]
    if settled["installed_keys"]:
        args["known_host_keys"] = list(settled["installed_keys"])
    if not _truth(verify):
        return args
    if expected_system:
        args["expected_system"] = expected_system
    else:
        args.update(flake=settled["flake"], attribute=settled["attribute"], override_inputs=dict(settled["override_inputs"]))
    return args


def refind(settled: Mapping[str, Any], wait_for_reboot: object, reboot_timeout: object, verify: object = True) -> dict[str, Any]:
    """Where the installed system is looked for after the reboot, and how long: host_status's address options.

    Its installer's address is looked at first, then its MAC (a site DHCP server leasing by client-id gives the
    installed system, with its new machine-id, another address). An installed address given is where it is;
    without a MAC only the address is there to wait at, and without verify a port wait is all that is needed then.
    """
    wait = int(reboot_timeout) if _truth(wait_for_reboot) else 0
    found = {"wait": wait, "mac": settled["mac"], "installer_address": settled["target"]}
    if settled["installed_address_given"] or not settled["mac"]:
        found.update(address=settled["installed_address"], by_mac=False,
                     port_wait_only=not settled["mac"] and not _truth(verify) and bool(wait))
    else:
        found.update(last_address=settled["installed_address"], by_mac=True, port_wait_only=False)
        if settled["interface"]:
            found["interface"] = settled["interface"]
    found["look"] = not found["port_wait_only"]
    return found


def run_environment(tmp_dir: str, pinned: bool, path: str) -> dict[str, str]:
    """nixos-anywhere's environment: with pinned host keys, the pinned ssh wrapper first on its PATH, its calls logged."""
    if not pinned:
        return {}
    return {"NIXOS_ANYWHERE_PINNED_LOG": tmp_dir + "/ssh.log", "PATH": "%s/bin:%s" % (tmp_dir, path)}


def pinned_use(log_text: str, pinned: bool) -> dict[str, Any]:
    """How many of nixos-anywhere's ssh calls went through the pinned wrapper (one line each in its log),
    and whether it bypassed the wrapper altogether (then only the check before the run verified the host key)."""
    calls = len(log_text.splitlines()) if pinned else 0
    return {"calls": calls, "bypassed": pinned and calls == 0}
