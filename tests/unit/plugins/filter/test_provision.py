# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The provision filters: what they read of the host variables and what they hand to module_utils/_provision.py."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.nixie.metal.plugins.filter import provision

HOSTVARS = {
    "web1": {"nixie_mac": "52:54:00:00:00:01", "nixie_arch": "x86_64-linux", "nixie_status": {"state": "absent"}},
    "arm1": {"nixie_mac": "52:54:00:00:00:02", "nixie_arch": "aarch64-linux", "nixie_status": {"state": "installed"}},
    # its host_status failed: the registered result has no state
    "web2": {"nixie_mac": "52:54:00:00:00:03", "nixie_arch": "x86_64-linux", "nixie_status": {"failed": True, "msg": "x"}},
    "arm2": {"nixie_mac": "52:54:00:00:00:04", "nixie_arch": "aarch64-linux", "nixie_status": {"state": "unknown_os"},
             "provision_machine_outcome": "failed", "provision_machine_seconds": 2.5,
             "provision_machine_failure": "Wake the machine: no route"},
}


def test_the_machines_to_install_and_what_serves_them():
    found = provision.provision_machines(["web1", "arm1", "web2", "arm2"], HOSTVARS, "/site", {"aarch64-linux": None})
    assert found == {
        "install": ["web1", "arm2"],
        "skipped": ["arm1", "web2"],
        "installers": {"x86_64-linux": "/site#installer", "aarch64-linux": "/site#installer-aarch64"},
        "server_hosts": [{"name": "web1", "mac": "52:54:00:00:00:01", "arch": "x86_64-linux"},
                         {"name": "arm2", "mac": "52:54:00:00:00:04", "arch": "aarch64-linux"}],
    }


def test_an_unknown_architecture_is_a_filter_error():
    hostvars = {"rv1": {"nixie_mac": "52:54:00:00:00:09", "nixie_arch": "riscv64-linux", "nixie_status": {"state": "absent"}}}
    with pytest.raises(AnsibleFilterError, match="riscv64-linux"):
        provision.provision_machines(["rv1"], hostvars, "/site")


def test_the_report_reads_the_machine_s_facts_and_the_server_s_warnings():
    server = {"hosts": [{"name": "arm2", "warnings": ["refused 1 request (script)"]}]}
    assert provision.provision_report("arm2", HOSTVARS, server) == (
        "arm2: failed in 2.5s - Wake the machine: no route - WARNING: refused 1 request (script)")
    assert provision.provision_report("arm1", HOSTVARS, {}) == "arm1: already installed"
    assert provision.provision_report("web2", HOSTVARS, None) == "web2: not reached"


def test_the_report_names_the_address_the_installed_system_was_found_at():
    hostvars = {"web3": {"nixie_status": {"state": "absent"}, "provision_machine_outcome": "installed",
                         "provision_machine_seconds": 61.2, "provision_machine_installer": {"ip": "10.0.0.31"},
                         "nixos_anywhere_result": {"ip": "10.0.0.57", "state": "installed"}}}
    assert provision.provision_report("web3", hostvars) == "web3: installed in 61.2s at 10.0.0.57 (its installer was at 10.0.0.31)"


def test_the_boot_wait_asks_for_the_next_stage_within_the_budget(monkeypatch):
    monkeypatch.setattr(provision.time, "time", lambda: 1100.0)
    assert provision.provision_boot_wait(None, "1000.0", "900") == {"until_state": "offered", "timeout": 800}
    assert provision.provision_boot_wait({"state": "kernel_served"}, 1000.0, 900) == {"until_state": "initrd_served", "timeout": 800}
    assert provision.provision_boot_label({"state": "offered"}, 1090.0) == "DHCP offer sent at +10.0 s"
    assert provision.provision_seconds_since("1000") == 100.0


def test_the_last_wait_names_the_installer():
    boot = {"results": [{"state": "offered"}, {"state": "phoned_home", "ip": "10.0.0.60", "ssh_host_keys": ["ssh-ed25519 AAAA"]}]}
    assert provision.provision_installer_target(boot) == {"ip": "10.0.0.60", "ssh_host_keys": ["ssh-ed25519 AAAA"]}
    assert provision.provision_installer_target({"results": [{"state": "unknown"}]}, True)["ip"] == "<installer-address>"


def test_a_malformed_reinstall_list_is_a_filter_error_naming_the_machine():
    with pytest.raises(AnsibleFilterError, match="for rf1: nixie_reinstall must be"):
        provision.provision_restart_refusal({"state": "unknown_os"}, "rf1", "redfish", 5)


def test_a_prebuilt_installer_without_a_kernel_is_named():
    with pytest.raises(AnsibleFilterError, match="nixie_installer.*kernel"):
        provision.provision_server_boot({"initrd": "/i"})
