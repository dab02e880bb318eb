# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the nixie.metal.nixos_anywhere role: its decisions, kept out of Jinja (module_utils/_nixos_anywhere/)."""

from __future__ import annotations

import base64
import os
import shlex
from collections.abc import Mapping

from ansible_collections.nixie.metal.plugins.module_utils import _ssh
from ansible_collections.nixie.metal.plugins.module_utils._nixos_anywhere import arguments, command, logins, outcome, version


def _controller_path(path):
    return os.path.realpath(os.path.expanduser(path))


def _text(value, key):
    """A registered result's ``key`` (a skipped task has none), or ``value`` itself when it is already text."""
    if isinstance(value, Mapping):
        return str(value.get(key) or "")
    return str(value or "")


def nixos_anywhere_settle(given):
    return arguments.settle(dict(given), _controller_path)


def nixos_anywhere_missing_files(result, settled):
    kinds = arguments.file_kinds(settled["local_files"], _text(result, "stdout"))
    return arguments.missing_files(kinds, settled["key"], settled["extra_files"])


def nixos_anywhere_programs_check(result, executable, programs, path=None):
    lookups = arguments.program_paths([str(program) for program in programs], _text(result, "stdout"))
    # The controller's PATH, as the programs were looked up under it (filters run on the controller).
    found = arguments.programs_found(lookups, str(executable), str(os.environ.get("PATH", "") if path is None else path))
    return dict(found, ok=not found["missing"])


def nixos_anywhere_logins(settled, argv, ssh_options=None, pin_host_key=True, destination="", found=None):
    decided = logins.logins(settled, [str(arg) for arg in argv], ssh_options, pin_host_key)
    command_text = " ".join(shlex.quote(str(arg)) for arg in decided["command"])
    return dict(decided, destination=str(destination), ssh=str((found or {}).get("real_ssh") or "ssh"),
                checks_host_key=bool(settled["expected_keys"]), shell_command=command_text,
                pinned_note="(every ssh of it pinned to the host keys the installer reported)" if decided["pinned"] else "")


def nixos_anywhere_would_run(command_argv, host, settled, pinned, phases, disks=None):
    return logins.would_run(str(host), command_argv, settled["expected_keys"], bool(pinned), list(phases), disks)


def nixos_anywhere_plan(args):
    return command.plan(dict(args))


def nixos_anywhere_version_check(text, argv, executable="nixos-anywhere"):
    return version.check_version(_text(text, "stdout"), [str(arg) for arg in argv], str(executable))


def nixos_anywhere_disk_check(result, host, disks, target=""):
    if result.get("skipped"):
        return {"ok": True, "missing": [], "by_id": [], "message": ""}
    where = "%s (%s)" % (host, target) if target else str(host)
    return outcome.disk_check(where, [str(disk) for disk in disks], int(result.get("rc", -1)),
                              result.get("stdout", ""), result.get("stderr", "") or result.get("msg", ""))


def nixos_anywhere_outcome(result, executable, what, timeout):
    judged = outcome.outcome(int(result.get("rc", -1)), result.get("stdout", ""), result.get("stderr", ""),
                             str(executable), str(what), timeout)
    return dict(judged, ok=judged["kind"] == "ok")


def nixos_anywhere_built(result, plan_args, expected_system=""):
    return command.built(result["outputs"], plan_args, str(expected_system or ""))


def nixos_anywhere_run_environment(tmp_dir, pinned):
    # The controller's PATH, which ansible-playbook's commands inherit (filters run on the controller).
    return logins.run_environment(str(tmp_dir), bool(pinned), os.environ.get("PATH", ""))


def nixos_anywhere_pinned_use(ssh_log, pinned):
    text = base64.b64decode(ssh_log.get("content") or "").decode("utf-8", "replace")
    return logins.pinned_use(text, bool(pinned))


def nixos_anywhere_ssh_options(version_text, known_hosts="", ssh="ssh"):
    options = _ssh.client_options(str(ssh), _text(version_text, "stderr"), str(known_hosts) if known_hosts else None)
    # A skipped ssh -V (the role runs no ssh of its own) is no reason to warn.
    skipped = isinstance(version_text, Mapping) and bool(version_text.get("skipped"))
    return dict(options, pinnable=not options["problem"], warn=bool(options["warning"]) and not skipped,
                command=" ".join(shlex.quote(str(arg)) for arg in [ssh] + list(options["args"])))


def nixos_anywhere_steps(settled, plan, check_mode, wait_for_reboot):
    return logins.steps(settled, plan, check_mode, wait_for_reboot)


def nixos_anywhere_key_check(result, key):
    return outcome.key_check(result, str(key))


def nixos_anywhere_ssh_login(remote_command, decided_logins, tmp_dir, ssh_client):
    return logins.ssh_login(str(remote_command), decided_logins, str(tmp_dir), ssh_client)


def nixos_anywhere_disk_probe(disks, decided_logins, tmp_dir, ssh_client):
    disks = [str(disk) for disk in disks or []]
    login = logins.ssh_login(logins.disk_probe_script(disks), decided_logins, str(tmp_dir), ssh_client)
    return dict(login, checks=bool(disks))


def nixos_anywhere_host_key_offer(scan, expected):
    return outcome.host_key_offer(scan, [str(key) for key in expected])


def nixos_anywhere_host_key_mismatch(fingerprints, offer, scan, expected, target, port):
    return outcome.host_key_mismatch(fingerprints, offer, scan, [str(key) for key in expected], str(target), port)


def nixos_anywhere_login_check(login, destination, port):
    return outcome.login_check(login, str(destination), port)


def nixos_anywhere_status_args(settled, expected_system="", verify=True):
    return logins.status_args(settled, str(expected_system or ""), verify)


def nixos_anywhere_refind(settled, wait_for_reboot, reboot_timeout, verify=True):
    return logins.refind(settled, wait_for_reboot, reboot_timeout, verify)


def nixos_anywhere_installed_check(status, host, refind, expected_system="", verify=True):
    return outcome.installed_check(status or {}, str(host), refind, str(expected_system or ""), verify)


class FilterModule:
    """The nixos_anywhere role's decisions."""

    def filters(self):
        return {
            "nixos_anywhere_settle": nixos_anywhere_settle,
            "nixos_anywhere_missing_files": nixos_anywhere_missing_files,
            "nixos_anywhere_programs_check": nixos_anywhere_programs_check,
            "nixos_anywhere_logins": nixos_anywhere_logins,
            "nixos_anywhere_would_run": nixos_anywhere_would_run,
            "nixos_anywhere_plan": nixos_anywhere_plan,
            "nixos_anywhere_version_check": nixos_anywhere_version_check,
            "nixos_anywhere_disk_check": nixos_anywhere_disk_check,
            "nixos_anywhere_outcome": nixos_anywhere_outcome,
            "nixos_anywhere_ssh_options": nixos_anywhere_ssh_options,
            "nixos_anywhere_steps": nixos_anywhere_steps,
            "nixos_anywhere_key_check": nixos_anywhere_key_check,
            "nixos_anywhere_ssh_login": nixos_anywhere_ssh_login,
            "nixos_anywhere_disk_probe": nixos_anywhere_disk_probe,
            "nixos_anywhere_host_key_offer": nixos_anywhere_host_key_offer,
            "nixos_anywhere_host_key_mismatch": nixos_anywhere_host_key_mismatch,
            "nixos_anywhere_login_check": nixos_anywhere_login_check,
            "nixos_anywhere_status_args": nixos_anywhere_status_args,
            "nixos_anywhere_installed_check": nixos_anywhere_installed_check,
            "nixos_anywhere_refind": nixos_anywhere_refind,
            "nixos_anywhere_built": nixos_anywhere_built,
            "nixos_anywhere_run_environment": nixos_anywhere_run_environment,
            "nixos_anywhere_pinned_use": nixos_anywhere_pinned_use,
        }
