# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the role logs in and which of its steps run (plugins/module_utils/_nixos_anywhere/logins.py)."""

from __future__ import annotations

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._nixos_anywhere import arguments, command, logins
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.nixos_anywhere.role_samples import given, resolved


def test_check_mode_says_what_would_run():
    line = logins.would_run("web1", ["timeout", "60", "nixos-anywhere", "--target-host", "root@<installer-address>"],
                            ["ssh-ed25519 AAAA"], True, ["disko", "install"], None)
    assert line == ("Would run, for web1: timeout 60 nixos-anywhere --target-host 'root@<installer-address>' "
                    "(host key checked against 1 expected key(s) first, connections pinned to them) "
                    "(disks checked first: those of the flake's disko configuration)")
    assert logins.would_run("web1", ["x"], [], False, ["install"], ["/dev/vda"]) == (
        "Would run, for web1: x (host key NOT checked: no expected host keys) ")
    assert logins.would_run("web1", ["x"], [], False, ["disko"], ["/dev/vda", "/dev/vdb"]).endswith("(disks checked first: /dev/vda, /dev/vdb)")


# steps: which of the role's steps run (formerly the when: of tasks/main.yml)

def _steps(check_mode=False, wait_for_reboot=True, **overrides):
    settled = arguments.settle(given(**overrides))
    return logins.steps(settled, command.plan(settled["plan_args"]), check_mode, wait_for_reboot)


def test_check_mode_runs_no_step_past_the_checks():
    steps = _steps(check_mode=True, expected_host_keys=["ssh-ed25519 AAAA"], ssh_key="/k")
    assert steps["check_key"] and steps["build_on_controller"]
    assert not any(steps[name] for name in ("install", "eval_disks", "check_host_key", "warn_host_key_unchecked",
                                            "check_disks", "after_reboot"))


def test_the_steps_of_an_install_follow_keys_disks_and_phases():
    steps = _steps()
    assert steps == {"check_key": False, "build_on_controller": True, "install": True, "eval_disks": True,
                     "check_host_key": False, "warn_host_key_unchecked": True, "check_disks": True, "after_reboot": True}
    pinned = _steps(expected_host_keys=["ssh-ed25519 AAAA"], disks=["/dev/vda"], build="flake")
    assert pinned["check_host_key"] and not pinned["warn_host_key_unchecked"]
    assert pinned["check_disks"] and not pinned["eval_disks"] and not pinned["build_on_controller"]
    no_disko = _steps(phases="install,reboot")
    assert not no_disko["check_disks"] and not no_disko["eval_disks"]


@pytest.mark.parametrize("wait, verify, phases, after", [
    (True, False, "disko,install,reboot", True),
    (False, True, "disko,install,reboot", True),
    ("false", "no", "disko,install,reboot", False),
    (True, True, "disko,install", False),
])
def test_the_installed_system_is_checked_after_a_reboot_when_waited_for_or_verified(wait, verify, phases, after):
    assert _steps(wait_for_reboot=wait, verify=verify, phases=phases, mac="52:54:00:00:00:01")["after_reboot"] is after


# ssh_login and the disk probe: the role's own logins (formerly lists built in Jinja in host_key.yml and disks.yml)

LOGINS = {"ssh_args": ["-T", "-p", "22"], "destination": "root@192.0.2.10", "ssh": "/usr/bin/ssh"}
CLIENT = {"args": ["-o", "ControlMaster=no"]}


def test_a_login_with_expected_keys_goes_through_the_pinned_wrapper():
    login = logins.ssh_login("true", dict(LOGINS, checks_host_key=True), "/tmp/run", CLIENT)
    assert login == {"argv": ["timeout", "--kill-after=5", "60", "/tmp/run/bin/ssh", "-T", "-p", "22", "root@192.0.2.10", "true"],
                     "environment": {"NIXOS_ANYWHERE_PINNED_LOG": "/tmp/run/ssh-role.log"}}


def test_a_login_without_expected_keys_accepts_any_key_as_nixos_anywhere_does():
    login = logins.ssh_login("ls", dict(LOGINS, checks_host_key=False), "/tmp/run", CLIENT)
    assert login["argv"] == ["timeout", "--kill-after=5", "60", "/usr/bin/ssh", "-o", "ControlMaster=no",
                             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                             "-T", "-p", "22", "root@192.0.2.10", "ls"]
    assert login["environment"] == {}


def test_the_disk_probe_quotes_every_disk_and_answers_what_disk_check_reads():
    script = logins.disk_probe_script(["/dev/vda", "/dev/disk/by-id/a b"])
    assert script.startswith("for d in /dev/vda '/dev/disk/by-id/a b'; do if [ -b \"$d\" ]; then echo \"present $d\"; ")
    assert 'echo "by-id $l -> $(readlink -f "$l")"; done; true' in script


# status_args: only host_status's arguments that say something (formerly "x if x else omit" in verify.yml)

def test_host_status_gets_the_expected_system_instead_of_the_flake():
    settled = arguments.settle(given(ssh_key="/k", installed_host_keys=["ssh-ed25519 AAAA x"]), resolved)
    assert logins.status_args(settled, "/nix/store/abc-system") == {
        "ssh_key": "/resolved/k", "known_host_keys": ["ssh-ed25519 AAAA"], "expected_system": "/nix/store/abc-system"}
    assert logins.status_args(arguments.settle(given(override_inputs={"a": "path:/a"})), "") == {
        "flake": "/site", "attribute": "web1", "override_inputs": {"a": "path:/a"}}


def test_without_verify_host_status_compares_nothing():
    settled = arguments.settle(given(ssh_key="/k"), resolved)
    assert logins.status_args(settled, "/nix/store/abc-system", False) == {"ssh_key": "/resolved/k"}


# refind: where the installed system is looked for after the reboot

def test_the_installed_system_is_looked_for_by_its_mac_after_its_installers_address():
    refind = logins.refind(arguments.settle(given(target_host="192.0.2.10", interface="br0")), True, 900)
    assert refind == {"wait": 900, "mac": "52:54:00:00:00:01", "installer_address": "192.0.2.10", "last_address": "192.0.2.10",
                      "by_mac": True, "port_wait_only": False, "interface": "br0", "look": True}
    # Without waiting for the reboot (-e nixos_anywhere_wait_for_reboot=false): one look.
    assert logins.refind(arguments.settle(given()), "false", 900)["wait"] == 0


def test_an_installed_address_given_is_the_only_place_looked_at():
    refind = logins.refind(arguments.settle(given(installed_address="192.0.2.50")), True, 300)
    assert refind["address"] == "192.0.2.50" and "last_address" not in refind and refind["by_mac"] is False
    assert refind["look"] is True and refind["wait"] == 300


def test_without_a_mac_or_verify_only_the_port_is_waited_for():
    refind = logins.refind(arguments.settle(given(mac="", verify=False)), True, 900, False)
    assert refind["address"] == "192.0.2.10" and refind["port_wait_only"] is True and refind["look"] is False
    # Not waiting either: nothing is done after the reboot (steps.after_reboot is false then); nothing to look at.
    assert logins.refind(arguments.settle(given(mac="", verify=False)), False, 900, False)["port_wait_only"] is False
