# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nixos_anywhere filters: what they read of registered results and hand to module_utils/_nixos_anywhere/."""

from __future__ import annotations

from ansible_collections.nixie.metal.plugins.filter import nixos_anywhere as f
from ansible_collections.nixie.metal.plugins.module_utils._nixos_anywhere import arguments

SETTLED = arguments.settle({"flake": "/site", "attribute": "web1", "target_host": "192.0.2.10", "ssh_key": "/k",
                            "timeout": 60, "expected_host_keys": ["ssh-ed25519 AAAA"], "phases": "disko,install,reboot"})


def test_the_ssh_version_is_read_from_the_registered_result_and_a_skipped_one_does_not_warn():
    ran = f.nixos_anywhere_ssh_options({"rc": 0, "stderr": "OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15"}, "/tmp/r/known_hosts", "/usr/bin/ssh")
    assert ran["version"] == "9.2" and ran["pinnable"] and not ran["warn"]
    assert ran["command"].startswith("/usr/bin/ssh -o ControlMaster=no ") and "UserKnownHostsFile=/tmp/r/known_hosts" in ran["command"]
    assert f.nixos_anywhere_ssh_options({"rc": 0, "stderr": "garbled"})["warn"] is True
    assert f.nixos_anywhere_ssh_options({"skipped": True})["warn"] is False
    assert f.nixos_anywhere_ssh_options("", "/tmp/a b/known_hosts")["pinnable"] is False


def test_the_version_is_read_from_the_registered_result_or_text():
    head = {"rc": 0, "stdout": "/nix/store/abc-nixos-anywhere-1.6.0/bin/nixos-anywhere"}
    assert f.nixos_anywhere_version_check(head, ["--build-on", "local"])["ok"] is False
    assert f.nixos_anywhere_version_check({"rc": 1}, ["--build-on", "local"])["ok"] is None
    assert f.nixos_anywhere_version_check(head["stdout"], ["--target-host", "r@h"])["ok"] is True


def test_the_programs_are_looked_up_under_the_controllers_path(monkeypatch):
    monkeypatch.setenv("PATH", "/opt/bin:/usr/bin")
    found = f.nixos_anywhere_programs_check({"rc": 0, "stdout": "\n/usr/bin/timeout"}, "nixos-anywhere", ["nixos-anywhere", "timeout"])
    assert found["ok"] is False and found["missing"] == ["nixos-anywhere"] and "(PATH=/opt/bin:/usr/bin)" in found["message"]
    assert f.nixos_anywhere_programs_check({"rc": 0, "stdout": "/t"}, "na", ["timeout"], "/x")["ok"] is True


def test_logins_say_whom_the_role_logs_in_as_and_what_runs():
    decided = f.nixos_anywhere_logins(SETTLED, ["nixos-anywhere", "--target-host", "root@192.0.2.10"], [], True,
                                      "root@192.0.2.10", {"real_ssh": "/usr/bin/ssh"})
    assert decided["destination"] == "root@192.0.2.10" and decided["ssh"] == "/usr/bin/ssh" and decided["checks_host_key"]
    assert decided["shell_command"] == "timeout --kill-after=30 60 nixos-anywhere --target-host root@192.0.2.10"
    assert decided["pinned_note"] == "(every ssh of it pinned to the host keys the installer reported)"
    assert f.nixos_anywhere_logins(SETTLED, [], [], False)["pinned_note"] == ""


def test_the_disk_probe_checks_nothing_without_disks_and_a_skipped_check_passes():
    decided = f.nixos_anywhere_logins(SETTLED, [], [], True, "root@192.0.2.10", {"real_ssh": "ssh"})
    probe = f.nixos_anywhere_disk_probe(["/dev/vda"], decided, "/tmp/r", {"args": []})
    assert probe["checks"] is True and probe["argv"][3] == "/tmp/r/bin/ssh" and probe["argv"][-1].startswith("for d in /dev/vda;")
    assert f.nixos_anywhere_disk_probe([], decided, "/tmp/r", {"args": []})["checks"] is False
    assert f.nixos_anywhere_disk_check({"skipped": True}, "web1", [])["ok"] is True
    missing = f.nixos_anywhere_disk_check({"rc": 0, "stdout": "missing /dev/vda"}, "web1", ["/dev/vda"], "192.0.2.10")
    assert missing["ok"] is False and missing["message"].startswith("web1 (192.0.2.10) has no block device /dev/vda")


def test_the_built_paths_are_what_nix_build_built_and_go_on_the_command_line():
    plan_args = dict(SETTLED["plan_args"], build="controller")
    installables = f.nixos_anywhere_plan(plan_args)["installables"]
    built = {"outputs": {installables["system"]: {"out": "/nix/store/s-system"}, installables["disko_script"]: {"out": "/nix/store/d-disko"}}}
    result = f.nixos_anywhere_built(built, plan_args, "/nix/store/s-system/")
    assert result["system"] == "/nix/store/s-system" and result["disko_script"] == "/nix/store/d-disko"
    assert result["argv"][1:4] == ["--store-paths", "/nix/store/d-disko", "/nix/store/s-system"]
    assert result["other_system"] is False
    assert f.nixos_anywhere_built(built, plan_args, "/nix/store/o-other")["other_system"] is True
    assert f.nixos_anywhere_built(built, plan_args, "")["other_system"] is False


def test_a_pinned_run_finds_the_wrapper_first_on_its_path(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert f.nixos_anywhere_run_environment("/tmp/r", True) == {"NIXOS_ANYWHERE_PINNED_LOG": "/tmp/r/ssh.log", "PATH": "/tmp/r/bin:/usr/bin:/bin"}
    assert f.nixos_anywhere_run_environment("/tmp/r", False) == {}


def test_the_pinned_calls_are_counted_and_a_bypass_is_seen():
    two = {"content": "c3NoIDEKc3NoIDIK", "encoding": "base64"}   # "ssh 1\nssh 2\n"
    assert f.nixos_anywhere_pinned_use(two, True) == {"calls": 2, "bypassed": False}
    assert f.nixos_anywhere_pinned_use({"failed": True, "msg": "file not found"}, True) == {"calls": 0, "bypassed": True}
    assert f.nixos_anywhere_pinned_use({"skipped": True}, False) == {"calls": 0, "bypassed": False}


def test_the_outcome_says_whether_it_installed():
    assert f.nixos_anywhere_outcome({"rc": 0}, "na", "f#a on h", 60)["ok"] is True
    failed = f.nixos_anywhere_outcome({"rc": 124, "stdout": "", "stderr": ""}, "na", "f#a on h", "60")
    assert failed["ok"] is False and failed["message"].startswith("nixos-anywhere did not finish within 60 s (killed) installing f#a on h.")
