# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The provision playbook's decisions (plugins/module_utils/_provision.py), without Ansible."""

from __future__ import annotations

import pytest

from ansible_collections.nixie.metal.plugins.module_utils import _provision as provision

HOSTVARS = {
    "web1": {"nixie_mac": "52:54:00:00:00:01", "nixie_arch": "x86_64-linux"},
    "arm1": {"nixie_mac": "52:54:00:00:00:02", "nixie_arch": "aarch64-linux"},
    "web2": {"nixie_mac": "52:54:00:00:00:03", "nixie_arch": "x86_64-linux", "nixie_ip": "10.0.0.3",
             "ansible_host": "web2.example.org"},
}


def test_machines_to_install_leave_out_the_installed_and_the_unread():
    states = {"web1": "absent", "arm1": "installed", "web2": None, "db1": "other_system"}
    assert provision.machines_to_install(["web1", "arm1", "web2", "db1", "gone"], states) == ["web1", "db1"]


def test_one_installer_per_architecture_with_the_run_s_attributes():
    assert provision.installers("/site", ["x86_64-linux", "aarch64-linux", "x86_64-linux"]) == {
        "x86_64-linux": "/site#installer", "aarch64-linux": "/site#installer-aarch64"}
    assert provision.installers("/site", ["aarch64-linux"], {"aarch64-linux": "arm", "x86_64-linux": None}) == {
        "aarch64-linux": "/site#arm"}
    assert provision.installers("/site", []) == {}


def test_an_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="'riscv64-linux'.*aarch64-linux, x86_64-linux"):
        provision.installers("/site", ["riscv64-linux"])


def test_server_hosts_name_mac_and_arch_in_order():
    assert provision.server_hosts(["arm1", "web1"], HOSTVARS) == [
        {"name": "arm1", "mac": "52:54:00:00:00:02", "arch": "aarch64-linux"},
        {"name": "web1", "mac": "52:54:00:00:00:01", "arch": "x86_64-linux"}]


def test_server_hosts_carry_the_hosts_json_ip_not_ansible_host():
    assert provision.server_hosts(["web2"], HOSTVARS) == [
        {"name": "web2", "mac": "52:54:00:00:00:03", "arch": "x86_64-linux", "ip": "10.0.0.3"}]


@pytest.mark.parametrize("previous, expected", [
    (None, "offered"), ("offered", "ipxe_served"), ("ipxe_served", "script_served"), ("script_served", "kernel_served"),
    ("kernel_served", "initrd_served"), ("initrd_served", "phoned_home"),
    # check mode answers unknown; a finished boot starts nothing new
    ("unknown", "offered"), ("phoned_home", "offered"),
])
def test_the_next_boot_stage_follows_the_last_answer(previous, expected):
    assert provision.next_boot_stage(previous) == expected


def test_six_waits_reach_the_phone_home_at_most():
    state, seen = None, []
    for _wait in range(6):
        state = provision.next_boot_stage(state)
        seen.append(state)
    assert seen == list(provision.BOOT_STAGES)


@pytest.mark.parametrize("result, check_mode, expected", [
    ({"state": "kernel_served"}, False, False),
    ({"state": "phoned_home"}, False, True),
    ({"state": "offered", "failed": True}, False, True),
    ({"state": "unknown"}, True, True),
])
def test_the_boot_is_followed_until_it_is_over(result, check_mode, expected):
    assert provision.boot_finished(result, check_mode) is expected


def test_boot_labels_name_the_stage_and_the_time():
    assert provision.boot_label("phoned_home", 12.345) == "installer phoned home at +12.3 s"
    assert provision.boot_label("unknown", 0.04) == "not followed in check mode at +0.0 s"
    assert provision.boot_label("booting", 1) == "booting at +1 s"
    assert provision.boot_label(None, 2.0) == "? at +2.0 s"


def test_all_stages_share_one_deadline():
    assert provision.seconds_left(1000.0, 900, 1000.0) == 900
    assert provision.seconds_left(1000.0, 900, 1899.5) == 1
    assert provision.seconds_left(1000.0, 900, 5000.0) == 1
    assert provision.seconds_left(1000.0, 900, 1300.7) == 599


@pytest.mark.parametrize("value, expected", [
    (None, []), ("", []), ("rf1", ["rf1"]), (" rf1 , ip1,", ["rf1", "ip1"]), (["rf1", " ip1 "], ["rf1", "ip1"]),
])
def test_reinstall_names(value, expected):
    assert provision.reinstall_names(value) == expected


def test_reinstall_names_refuse_other_shapes():
    with pytest.raises(ValueError, match="nixie_reinstall must be machine names"):
        provision.reinstall_names({"rf1": True})


def test_a_bmc_does_not_restart_a_running_system_unless_named():
    status = {"state": "other_system", "current_system": "/nix/store/x-nixos-system-ip1", "ip": "10.0.0.5"}
    refusal = provision.restart_refusal("ip1", status, "ipmi", "rf1")
    assert refusal == ("it runs NixOS /nix/store/x-nixos-system-ip1 at 10.0.0.5; its BMC would restart it into the installer, "
                       "which wipes its disks. To reinstall it, run again with -e nixie_reinstall=ip1 (see docs/power.md)")
    assert provision.restart_refusal("ip1", status, "ipmi", "rf1,ip1") == ""
    assert provision.restart_refusal("ip1", status, "wol", None) == ""


def test_another_operating_system_is_named_by_its_id():
    assert provision.restart_refusal("rf1", {"state": "unknown_os", "os_id": "debian", "ip": "10.0.0.6"}, "redfish", []).startswith(
        "it runs an operating system (debian) at 10.0.0.6;")
    assert "an operating system (not NixOS)" in provision.restart_refusal("rf1", {"state": "unknown_os", "os_id": None}, "redfish", [])


@pytest.mark.parametrize("state", ["absent", "installed", None])
def test_a_machine_that_runs_nothing_of_its_own_may_be_restarted(state):
    assert provision.restart_refusal("rf1", {"state": state}, "redfish", None) == ""


def test_a_failed_loop_says_why_by_its_failed_item():
    result = {"failed": True, "msg": "One or more items failed",
              "results": [{"state": "offered"}, {"failed": True, "msg": "no DHCP request from this MAC was seen"}]}
    assert provision.failure_reason("Follow the network boot", result) == "Follow the network boot: no DHCP request from this MAC was seen"
    assert provision.failure_reason("Wake the machine", {"msg": "no such interface"}) == "Wake the machine: no such interface"
    assert provision.failure_reason("Wake the machine", {}) == "Wake the machine: failed"


def test_the_installer_target_is_the_agent_s_report_or_check_mode_s_placeholders():
    agent = {"ip": "10.0.0.60", "ssh_host_keys": ["ssh-ed25519 AAAA"]}
    assert provision.installer_target(agent, False) == {"ip": "10.0.0.60", "ssh_host_keys": ["ssh-ed25519 AAAA"]}
    assert provision.installer_target({"state": "unknown"}, True) == {
        "ip": "<installer-address>", "ssh_host_keys": ["ssh-ed25519 <reported-by-the-installer>"]}
    assert provision.installer_target({}, False) == {"ip": "", "ssh_host_keys": []}


def test_a_prebuilt_installer_or_the_built_ones_are_served():
    installer = {"kernel": "/k", "initrd": "/i", "cmdline": "console=ttyS0"}
    assert provision.server_boot(installer, {"skipped": True}, False) == {
        "ready": True, "kernel": "/k", "initrd": "/i", "cmdline": "console=ttyS0"}
    assert provision.server_boot({"kernel": "/k", "initrd": "/i"}, None, True) == {"ready": True, "kernel": "/k", "initrd": "/i"}
    built = {"artifacts": {"x86_64-linux": {"kernel": "/nix/store/k", "initrd": "/nix/store/i"}}}
    assert provision.server_boot({}, built, False) == {"ready": True, "artifacts": built["artifacts"]}
    assert provision.server_boot({}, built, True) == {"ready": False}


@pytest.mark.parametrize("facts, expected", [
    ({"state": "installed"}, "web1: already installed"),
    ({"state": "absent"}, "web1: not reached"),
    ({}, "web1: not reached"),
    ({"state": "absent", "outcome": "installed", "seconds": 312.4}, "web1: installed in 312.4s"),
    ({"state": "absent", "outcome": "would be installed", "seconds": 0.8}, "web1: would be installed in 0.8s"),
    ({"state": "absent", "outcome": "installed", "seconds": 40.0, "address": "10.0.0.31", "installer_address": "10.0.0.31"},
     "web1: installed in 40.0s at 10.0.0.31"),
    ({"state": "absent", "outcome": "installed", "seconds": 40.0, "address": "10.0.0.57", "installer_address": "10.0.0.31"},
     "web1: installed in 40.0s at 10.0.0.57 (its installer was at 10.0.0.31)"),
    ({"state": "absent", "outcome": "failed", "seconds": 5.2, "failure": "Follow the network boot: no DHCP"},
     "web1: failed in 5.2s - Follow the network boot: no DHCP"),
])
def test_report_lines(facts, expected):
    assert provision.report_line("web1", facts) == expected


def test_a_refused_boot_request_is_on_its_machine_s_line_only():
    hosts = [{"name": "web1", "warnings": ["refused 1 request (script) from 10.0.0.9", "refused 2 requests (kernel)"]},
             {"name": "web2", "warnings": []}]
    facts = {"outcome": "installed", "seconds": 1.0}
    assert provision.report_line("web1", facts, hosts) == (
        "web1: installed in 1.0s - WARNING: refused 1 request (script) from 10.0.0.9; refused 2 requests (kernel)")
    assert provision.report_line("web2", facts, hosts) == "web2: installed in 1.0s"
