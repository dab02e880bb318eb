# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the nixie.metal.nixos_anywhere role: its decisions, kept out of Jinja (module_utils/_nixos_anywhere.py)."""

from __future__ import annotations

import os

from ansible_collections.nixie.metal.plugins.module_utils import _nixos_anywhere, _ssh


def _controller_path(path):
    return os.path.realpath(os.path.expanduser(path))


def nixos_anywhere_settle(given):
    return _nixos_anywhere.settle(dict(given), _controller_path)


def nixos_anywhere_missing_files(result, settled):
    stats = [(str(item.get("item")), item.get("stat") or {}) for item in result.get("results") or []]
    return _nixos_anywhere.missing_files(stats, settled["key"], settled["extra_files"])


def nixos_anywhere_programs_check(result, executable, path=""):
    lookups = [(str(item.get("item")), int(item.get("rc", 1)), str(item.get("stdout") or "")) for item in result.get("results") or []]
    return _nixos_anywhere.programs_found(lookups, str(executable), str(path))


def nixos_anywhere_logins(settled, argv, ssh_options=None, pin_host_key=True):
    return _nixos_anywhere.logins(settled, [str(arg) for arg in argv], ssh_options, pin_host_key)


def nixos_anywhere_would_run(command, host, settled, pinned, phases, disks=None):
    return _nixos_anywhere.would_run(str(host), command, settled["expected_keys"], bool(pinned), list(phases), disks)


def nixos_anywhere_plan(args):
    return _nixos_anywhere.plan(dict(args))


def nixos_anywhere_version_check(text, argv, executable="nixos-anywhere"):
    return _nixos_anywhere.check_version(str(text or ""), [str(arg) for arg in argv], str(executable))


def nixos_anywhere_disk_check(result, host, disks):
    return _nixos_anywhere.disk_check(str(host), [str(disk) for disk in disks], int(result.get("rc", -1)),
                                      result.get("stdout", ""), result.get("stderr", "") or result.get("msg", ""))


def nixos_anywhere_outcome(result, executable, what, timeout):
    return _nixos_anywhere.outcome(int(result.get("rc", -1)), result.get("stdout", ""), result.get("stderr", ""),
                                   str(executable), str(what), timeout)


def nixos_anywhere_ssh_options(version_text, known_hosts="", ssh="ssh"):
    return _ssh.client_options(str(ssh), str(version_text or ""), str(known_hosts) if known_hosts else None)


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
        }
