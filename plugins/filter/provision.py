# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the provision playbook and its roles: their decisions, kept out of Jinja (module_utils/_provision.py)."""

from __future__ import annotations

import time

from ansible.errors import AnsibleFilterError

from ansible_collections.nixie.metal.plugins.module_utils import _provision


def _status_state(variables):
    status = variables.get("nixie_status") or {}
    return status.get("state") if hasattr(status, "get") else None


def provision_machines(machines, hostvars, flake, installer_attrs=None):
    names = [str(name) for name in machines]
    install = _provision.machines_to_install(names, {name: _status_state(hostvars[name]) for name in names})
    try:
        builds = _provision.installers(str(flake), [hostvars[name]["nixie_arch"] for name in install], installer_attrs)
    except ValueError as error:
        raise AnsibleFilterError("provision_machines: %s" % error) from error
    return {"install": install, "skipped": [name for name in names if name not in install],
            "installers": builds, "server_hosts": _provision.server_hosts(install, hostvars)}


def provision_boot_wait(previous, started, budget):
    return {"until_state": _provision.next_boot_stage((previous or {}).get("state")),
            "timeout": _provision.seconds_left(float(started), float(budget), time.time())}


def provision_boot_label(result, started):
    return _provision.boot_label((result or {}).get("state"), time.time() - float(started))


def provision_boot_finished(result, check_mode=False):
    return _provision.boot_finished(result or {}, bool(check_mode))


def provision_seconds_since(started):
    return round(time.time() - float(started), 1)


def provision_restart_refusal(status, name, power_driver, reinstall=None):
    try:
        return _provision.restart_refusal(str(name), status or {}, str(power_driver), reinstall)
    except ValueError as error:
        raise AnsibleFilterError("provision_restart_refusal for %s: %s" % (name, error)) from error


def provision_failure(result, task_name):
    return _provision.failure_reason(str(task_name), result or {})


def provision_installer_target(boot, check_mode=False):
    results = (boot or {}).get("results") or [{}]
    return _provision.installer_target(results[-1], bool(check_mode))


def provision_server_boot(installer, built=None, check_mode=False):
    try:
        return _provision.server_boot(installer or {}, built or {}, bool(check_mode))
    except KeyError as error:
        raise AnsibleFilterError("provision_server_boot: the prebuilt installer (nixie_installer) has no %s" % error) from error


def provision_report(name, hostvars, server_result=None):
    variables = hostvars[name]
    installed = variables.get("nixos_anywhere_result") or {}
    installer = variables.get("provision_machine_installer") or {}
    facts = {"state": _status_state(variables), "outcome": variables.get("provision_machine_outcome"),
             "seconds": variables.get("provision_machine_seconds"), "failure": variables.get("provision_machine_failure"),
             "address": installed.get("ip") if hasattr(installed, "get") else None,
             "installer_address": installer.get("ip") if hasattr(installer, "get") else None}
    return _provision.report_line(str(name), facts, (server_result or {}).get("hosts") or [])


class FilterModule:
    """The provision playbook's decisions."""

    def filters(self):
        return {
            "provision_machines": provision_machines,
            "provision_boot_wait": provision_boot_wait,
            "provision_boot_label": provision_boot_label,
            "provision_boot_finished": provision_boot_finished,
            "provision_seconds_since": provision_seconds_since,
            "provision_restart_refusal": provision_restart_refusal,
            "provision_failure": provision_failure,
            "provision_installer_target": provision_installer_target,
            "provision_server_boot": provision_server_boot,
            "provision_report": provision_report,
        }
