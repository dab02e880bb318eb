# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nixos_anywhere role's decisions (plugins/module_utils/_nixos_anywhere.py), without SSH."""

from __future__ import annotations

import pytest

from ansible_collections.nixie.metal.plugins.module_utils import _nixos_anywhere as na

# The head of the wrapper that nixpkgs' makeShellWrapper writes for the nixos-anywhere package
# (the shape of its bin/nixos-anywhere; the store hashes are made up).
WRAPPER = """/nix/store/0c5bqa6kq8f6nv1ym3v1mvyq9q4qf1a0-nixos-anywhere-1.13.0/bin/nixos-anywhere
#! /nix/store/1sffjkg6c6ff16fz5yh0s9vgpf9x4wgv-bash-5.2p37/bin/bash -e
PATH=${PATH:+':'$PATH':'}
PATH=${PATH/':''/nix/store/2m7dz5k8dp5k2gv5rn2v7j6q5f3qkd9r-nix-2.28.3/bin'':'/':'}
exec -a "$0" "/nix/store/0c5bqa6kq8f6nv1ym3v1mvyq9q4qf1a0-nixos-anywhere-1.13.0/libexec/nixos-anywhere/nixos-anywhere.sh"  "$@"
"""


def args(**overrides):
    """The role's settled arguments; nixos-anywhere --flake unless ``build`` says otherwise."""
    values = dict(build="flake", override_inputs={}, store_paths=None,
                  flake="/site", attribute="web1", target="192.0.2.10", user="root", port=22, post_kexec_port=None,
                  phases="disko,install,reboot", build_on="auto", key="", extra_files="", disk_keys=[],
                  copy_host_keys=False, ssh_options=[], extra_args=[], executable="nixos-anywhere", timeout=3600,
                  expected_keys=[], installed_keys=[], verify=False, mac="", disks=None)
    values.update(overrides)
    return values


@pytest.mark.parametrize("text, version", [
    (WRAPPER, "1.13.0"),
    ("/nix/store/abc-nixos-anywhere-1.6.0/bin/nixos-anywhere\n", "1.6.0"),
    ("nixos-anywhere 1.14.2\n", "1.14.2"),
    ("nixos-anywhere version 2.0\n", "2.0.0"),
    ("1.9.1\n", "1.9.1"),
    ("/home/me/src/nixos-anywhere/src/nixos-anywhere.sh\n#!/usr/bin/env bash\n", None),
    ("aborted: --flake or --store-paths must be set\n", None),
    ("/tmp/bin/nixos-anywhere\n#!/usr/bin/python\n# parses it as nixos-anywhere 1.13.0's parseArgs does\n", None),
    ("/nix/store/abc-nixos-anywhere-1.13.0-unstable-2025-01-01/bin/nixos-anywhere\n", "1.13.0"),
    ("", None),
])
def test_parse_version(text, version):
    assert na.parse_version(text) == version


def test_version_needs_follow_the_options():
    assert na.minimum_version(["nixos-anywhere", "--target-host", "root@h"]) == ("1.6.0", {"--target-host": "1.6.0"})
    assert na.minimum_version(["--target-host", "x", "--build-on", "local"])[0] == "1.7.0"
    assert na.minimum_version(["--flake", "f#a", "h"]) == (None, {})


def test_check_version_too_old_names_the_option_and_the_minimum():
    check = na.check_version("/nix/store/abc-nixos-anywhere-1.6.0/bin/nixos-anywhere", ["--target-host", "r@h", "--build-on", "local"], "/x/na")
    assert check["ok"] is False and check["version"] == "1.6.0" and check["minimum"] == "1.7.0"
    assert "--build-on needs 1.7.0" in check["message"] and "/x/na is nixos-anywhere 1.6.0" in check["message"]


def test_check_version_recent_enough_and_unknown():
    assert na.check_version(WRAPPER, ["--target-host", "r@h", "--build-on", "local"])["ok"] is True
    assert na.check_version("/nix/store/abc-nixos-anywhere-1.5.2/bin/nixos-anywhere", ["--target-host", "r@h"])["ok"] is False
    unknown = na.check_version("/usr/local/bin/nixos-anywhere\n#!/bin/sh\n", ["--target-host", "r@h"])
    assert unknown["ok"] is None and "needs 1.6.0 or later" in unknown["message"]


DISKO = "/nix/store/0b1xq4f5kz3v6g7h8j9k0l1m2n3p4q5r-disko-web1"
SYSTEM = "/nix/store/9x2dk4cf1pvyc7c0xsszg5s0v0xv1iqd-nixos-system-web1-25.05"


def test_plan_default_builds_on_the_controller():
    # The role's default: what the controller built is given as --store-paths; nothing is left to build.
    plan = na.plan(args(build=None))
    assert plan["problems"] == [] and plan["build"] == "controller"
    assert plan["argv"] == ["nixos-anywhere", "--store-paths", "<disko-script>", "<system>", "--target-host", "root@192.0.2.10",
                            "--phases", "disko,install,reboot", "--build-on", "local"]
    built = na.plan(args(build="controller", store_paths=[DISKO, SYSTEM]))
    assert built["argv"][1:4] == ["--store-paths", DISKO, SYSTEM] and "--flake" not in built["argv"]
    # --build-on local makes 1.7.0 the oldest nixos-anywhere it can run with.
    assert na.minimum_version(built["argv"])[0] == "1.7.0"


def test_plan_installables_of_the_configuration():
    assert na.plan(args(build="controller"))["installables"] == {
        "system": "/site#nixosConfigurations.web1.config.system.build.toplevel",
        "disko_script": "/site#nixosConfigurations.web1.config.system.build.diskoScript",
        "disks": "/site#nixosConfigurations.web1.config.disko.devices.disk",
    }
    assert na.plan(args(attribute="web.1"))["installables"]["disks"] == '/site#nixosConfigurations."web.1".config.disko.devices.disk'


def test_plan_controller_keeps_every_other_option():
    plan = na.plan(args(build="controller", store_paths=[DISKO, SYSTEM], port=2222, key="/k", extra_files="/x",
                        disk_keys=[["/tmp/secret.key", "/l/k"]], copy_host_keys=True, ssh_options=["ServerAliveInterval=5"],
                        extra_args=["--no-substitute-on-destination"], override_inputs={"nixpkgs": "path:/m"}))
    assert plan["problems"] == []
    assert plan["argv"] == ["nixos-anywhere", "--store-paths", DISKO, SYSTEM, "--target-host", "root@192.0.2.10", "-i", "/k",
                            "--ssh-port", "2222", "--phases", "disko,install,reboot", "--build-on", "local",
                            "--extra-files", "/x", "--disk-encryption-keys", "/tmp/secret.key", "/l/k", "--copy-host-keys",
                            "--ssh-option", "ServerAliveInterval=5", "--no-substitute-on-destination"]


@pytest.mark.parametrize("overrides, problem", [
    (dict(build="nix"), "nixos_anywhere_build must be controller or flake: nix"),
    (dict(build="controller", build_on="remote"), "nixos_anywhere_build_on is only for nixos_anywhere_build flake"),
    (dict(build="controller", extra_args=["--disko-mode", "mount"]),
     "holds --disko-mode, which does not fit nixos_anywhere_build controller (nixos-anywhere aborts"),
    (dict(build="controller", extra_args=["--flake", "/other#x"]), "holds --flake"),
    (dict(build="controller", extra_args=["-s", "/a", "/b"]), "holds -s"),
    (dict(build="controller", extra_args=["--build-on-remote"]), "holds --build-on-remote"),
    (dict(build="controller", extra_args=["--no-disko-deps"]), "nixos-anywhere ignores it with --store-paths"),
    (dict(build="controller", extra_args=["--generate-hardware-config", "nixos-facter", "/f.json"]),
     "it would not be in the installed system"),
    (dict(build="controller", extra_args=["--vm-test"]), "holds --vm-test"),
    (dict(build="controller", store_paths=["relative", SYSTEM]), "must be two absolute paths"),
    (dict(build="controller", store_paths=[SYSTEM]), "must be two absolute paths"),
    (dict(build="flake", override_inputs={"nixpkgs": "path:/m"}),
     "nixos_anywhere_override_inputs cannot be applied with nixos_anywhere_build flake"),
])
def test_plan_build_problems(overrides, problem):
    problems = na.plan(args(**overrides))["problems"]
    assert any(problem in text for text in problems), problems


def test_plan_flake_mode_keeps_build_on_and_its_own_args():
    plan = na.plan(args(build="flake", build_on="remote", extra_args=["--disko-mode", "mount"]))
    assert plan["problems"] == [] and plan["argv"][1:3] == ["--flake", "/site#web1"]
    assert plan["argv"][-4:] == ["--build-on", "remote", "--disko-mode", "mount"]


def test_plan_default_is_the_old_command_line():
    plan = na.plan(args())
    assert plan["problems"] == []
    assert plan["argv"] == ["nixos-anywhere", "--flake", "/site#web1", "--target-host", "root@192.0.2.10",
                            "--phases", "disko,install,reboot"]
    assert plan["precheck_destination"] == "root@192.0.2.10" and plan["known_hosts_names"] == ["192.0.2.10"]
    assert plan["post_kexec_port"] is None


def test_without_kexec_the_checks_log_in_as_root():
    plan = na.plan(args(user="nixos", port=2222))
    assert plan["argv"][4] == "nixos@192.0.2.10" and plan["precheck_destination"] == "root@192.0.2.10"
    assert "--ssh-port" in plan["argv"] and "--post-kexec-ssh-port" not in plan["argv"]
    assert plan["known_hosts_names"] == ["[192.0.2.10]:2222"]


def test_kexec_off_port_22_passes_the_post_kexec_port_and_pins_both_names():
    plan = na.plan(args(user="ubuntu", port=2222, phases="kexec,disko,install,reboot"))
    argv = plan["argv"]
    assert argv[argv.index("--ssh-port") + 1] == "2222" and argv[argv.index("--post-kexec-ssh-port") + 1] == "22"
    assert plan["precheck_destination"] == "ubuntu@192.0.2.10"
    assert plan["known_hosts_names"] == ["[192.0.2.10]:2222", "192.0.2.10"]


def test_kexec_to_another_port_gives_ssh_port_22_explicitly():
    # nixos-anywhere only swaps the port after kexec when -p is among its ssh arguments.
    plan = na.plan(args(phases="kexec,disko", post_kexec_port=2200))
    argv = plan["argv"]
    assert argv[argv.index("--ssh-port") + 1] == "22" and argv[argv.index("--post-kexec-ssh-port") + 1] == "2200"
    assert plan["known_hosts_names"] == ["192.0.2.10", "[192.0.2.10]:2200"]


def test_kexec_on_port_22_both_sides_adds_nothing():
    plan = na.plan(args(phases="kexec,disko,install"))
    assert "--ssh-port" not in plan["argv"] and plan["known_hosts_names"] == ["192.0.2.10"] and plan["post_kexec_port"] == 22


@pytest.mark.parametrize("overrides, problem", [
    (dict(phases="install,reboot", disk_keys=[["/tmp/k", "/l/k"]]), "nixos_anywhere_disk_encryption_keys are only used by the disko phase"),
    (dict(phases="disko", extra_files="/x"), "nixos_anywhere_extra_files is only used by the install phase"),
    (dict(phases="disko,reboot", copy_host_keys=True), "nixos_anywhere_copy_host_keys is only used by the install phase"),
    (dict(post_kexec_port=22), "nixos_anywhere_post_kexec_port is only used after the kexec phase"),
    (dict(disk_keys=[["tmp/k", "/l/k"]]), "'tmp/k' on the target must be absolute"),
    (dict(disk_keys=[["/tmp/my key", "/l/k"]]), "'/tmp/my key' on the target may hold only"),
    (dict(disk_keys=[["/tmp/k\n", "/l/k"]]), "may hold only"),
    (dict(disk_keys=[["/tmp/$(reboot)", "/l/k"]]), "may hold only"),
    (dict(ssh_options=["ProxyCommand=ssh -W %h:%p bastion"]), "holds whitespace: nixos-anywhere joins the SSH options"),
    (dict(ssh_options=["-oX=y"]), "must be Name=value"),
    (dict(phases="disko,instal"), "nixos_anywhere_phases must name some of kexec, disko, install, reboot: disko,instal"),
    (dict(phases=""), "nixos_anywhere_phases must name some of"),
    (dict(target="root@h"), "without user or spaces"),
    (dict(port=0), "nixos_anywhere_port must be 1-65535"),
    (dict(phases="kexec,disko", post_kexec_port=70000), "nixos_anywhere_post_kexec_port must be 1-65535"),
    (dict(flake="/site#x"), "must not carry #attribute"),
    (dict(verify=True), "needs nixos_anywhere_mac"),
    (dict(expected_keys=["ssh-ed25519"]), "not an SSH public key"),
    (dict(disks=["sda"]), "nixos_anywhere_disks entry 'sda' must be an absolute device path"),
])
def test_plan_problems(overrides, problem):
    problems = na.plan(args(**overrides))["problems"]
    assert any(problem in text for text in problems), problems


def test_plan_accepts_what_the_phases_use():
    plan = na.plan(args(disk_keys=[["/tmp/secret.key", "/l/k"]], extra_files="/x", copy_host_keys=True,
                        ssh_options=["ServerAliveInterval=5"], disks=["/dev/disk/by-id/nvme-Samsung_1"], build_on="local"))
    assert plan["problems"] == []
    assert plan["argv"][-10:] == ["--build-on", "local", "--extra-files", "/x", "--disk-encryption-keys", "/tmp/secret.key", "/l/k",
                                  "--copy-host-keys", "--ssh-option", "ServerAliveInterval=5"]


def test_disk_check_all_present():
    verdict = na.disk_check("web1", ["/dev/vda"], 0, "present /dev/vda\nby-id /dev/disk/by-id/virtio-x -> /dev/vda\n", "")
    assert verdict["ok"] and verdict["by_id"] == ["/dev/disk/by-id/virtio-x -> /dev/vda"]


def test_disk_check_missing_lists_by_id():
    verdict = na.disk_check("web1", ["/dev/disk/by-id/nvme-A", "/dev/vda"], 0,
                            "missing /dev/disk/by-id/nvme-A\npresent /dev/vda\nby-id /dev/disk/by-id/ata-B -> /dev/sda\n", "")
    assert not verdict["ok"] and verdict["missing"] == ["/dev/disk/by-id/nvme-A"]
    assert "web1 has no block device /dev/disk/by-id/nvme-A" in verdict["message"]
    assert "/dev/disk/by-id/ata-B -> /dev/sda" in verdict["message"]


def test_disk_check_an_unmentioned_disk_is_missing_and_no_by_id_is_said():
    verdict = na.disk_check("web1", ["/dev/vda"], 0, "", "")
    assert not verdict["ok"] and verdict["missing"] == ["/dev/vda"] and "no /dev/disk/by-id there" in verdict["message"]


def test_disk_check_ssh_failure():
    verdict = na.disk_check("web1", ["/dev/vda"], 255, "", "Permission denied (publickey).\n")
    assert not verdict["ok"] and "exit 255" in verdict["message"] and "Permission denied" in verdict["message"]


def test_outcome_not_started_is_timeouts_own_127():
    result = na.outcome(127, "", "timeout: failed to run command '/x/na': No such file or directory\n", "/x/na", "f#a on h", 60)
    assert result["kind"] == "not_started" and "could not be started (exit 127)" in result["message"]


def test_outcome_127_of_nixos_anywhere_itself_is_a_failure_with_its_tail():
    stdout = "### Uploading install SSH keys ###\n### Gathering machine facts ###\n### Formatting hard drive with disko ###\n"
    result = na.outcome(127, stdout, "bash: line 1: /nix/store/x-disko: No such file or directory\n", "na", "f#a on h", 60)
    assert result["kind"] == "failed" and "nixos-anywhere failed (exit 127)" in result["message"]
    assert "was not found" in result["message"] and "Formatting hard drive with disko" in result["message"]
    assert "x-disko: No such file" in result["message"]


def test_outcome_127_with_stderr_only_is_still_a_failure():
    result = na.outcome(127, "", "sh: 1: disko: not found\n", "na", "f#a on h", 60)
    assert result["kind"] == "failed"


def test_outcome_timeout_and_ok():
    assert na.outcome(124, "### Uploading install SSH keys ###\n", "", "na", "f#a on h", 4)["message"].startswith(
        "nixos-anywhere did not finish within 4 s")
    assert na.outcome(0, "", "", "na", "f#a on h", 4)["kind"] == "ok"


# settle: the role's arguments as its tasks use them (formerly Jinja in tasks/main.yml).

def given(**overrides):
    """The role's arguments as its defaults give them, without the nixos_anywhere_ prefix."""
    values = dict(flake="/site", attribute="web1", target_host="192.0.2.10", target_user="root", port=22,
                  post_kexec_port=None, ssh_key="", ssh_options=[], phases="disko,install,reboot", build="controller",
                  override_inputs={}, build_on="auto", extra_files="", disk_encryption_keys={}, copy_host_keys=False,
                  extra_args=[], timeout=3600, executable="nixos-anywhere", expected_host_keys=[], installed_address="",
                  installed_host_keys=[], verify=True, expected_system="", disks=None, mac="52:54:00:00:00:01")
    values.update(overrides)
    return values


def resolved(path):
    return "/resolved" + path


def test_settle_gives_the_plan_what_it_wants():
    settled = na.settle(given(port="2222", timeout="60", copy_host_keys="false", verify="yes"), resolved)
    assert settled["port"] == 2222 and settled["timeout"] == 60
    assert settled["plan_args"] == dict(
        flake="/site", attribute="web1", target="192.0.2.10", user="root", port=2222, post_kexec_port=None,
        phases="disko,install,reboot", build_on="auto", key="", extra_files="", disk_keys=[], copy_host_keys=False,
        ssh_options=[], extra_args=[], executable="nixos-anywhere", timeout=60, expected_keys=[], installed_keys=[],
        verify=True, mac="52:54:00:00:00:01", disks=None, build="controller", override_inputs={})
    assert na.plan(settled["plan_args"])["problems"] == []


@pytest.mark.parametrize("missing", [None, ""])
def test_settle_defaults_what_is_not_given(missing):
    settled = na.settle({"flake": missing, "target_host": missing, "target_user": missing, "build": missing,
                         "post_kexec_port": missing, "ssh_key": missing, "expected_system": missing}, resolved)
    assert (settled["flake"], settled["target"], settled["user"], settled["build"]) == ("", "", "root", "controller")
    assert settled["post_kexec_port"] is None and settled["key"] == "" and settled["expected_system"] == ""
    assert settled["port"] == 22 and settled["timeout"] == 3600 and settled["plan_args"]["verify"] is True
    assert settled["disks"] is None and settled["override_inputs"] == {}


def test_settle_cleans_addresses_keys_and_paths():
    settled = na.settle(given(target_host=" [FD00:1::2] ", ssh_key="~/.ssh/id", extra_files="files",
                              disk_encryption_keys={"/tmp/b.key": "b", "/tmp/a.key": "a"},
                              expected_host_keys=[" ssh-ed25519 AAAA installer@nixos", "ssh-ed25519 AAAA other", "", "ssh-rsa BBBB"],
                              installed_host_keys=["ssh-ed25519 CCCC x", "ssh-ed25519 CCCC y"], disks=[" /dev/vda ", "/dev/vdb"]),
                        resolved)
    assert settled["target"] == "fd00:1::2" and settled["installed_address"] == "fd00:1::2"
    assert settled["key"] == "/resolved~/.ssh/id" and settled["extra_files"] == "/resolvedfiles"
    assert settled["disk_keys"] == [["/tmp/a.key", "/resolveda"], ["/tmp/b.key", "/resolvedb"]]
    assert settled["expected_keys"] == ["ssh-ed25519 AAAA", "ssh-rsa BBBB"]
    assert settled["installed_given"] == ["ssh-ed25519 CCCC", "ssh-ed25519 CCCC"]
    assert settled["installed_keys"] == settled["installed_given"]
    assert settled["disks"] == ["/dev/vda", "/dev/vdb"]
    assert settled["local_files"] == ["/resolved~/.ssh/id", "/resolveda", "/resolvedb", "/resolvedfiles"]


def test_copied_host_keys_are_what_the_installed_system_presents():
    keys = ["ssh-ed25519 AAAA"]
    assert na.settle(given(expected_host_keys=keys, copy_host_keys=True))["installed_keys"] == keys
    assert na.settle(given(expected_host_keys=keys))["installed_keys"] == []
    assert na.settle(given(installed_address="Host.Example "))["installed_address"] == "host.example"


def test_the_programs_the_run_needs():
    assert na.settle(given(disks=[]))["programs"] == ["nixos-anywhere", "timeout"]
    assert na.settle(given())["programs"] == ["nixos-anywhere", "timeout", "ssh"]
    assert na.settle(given(expected_host_keys=["ssh-ed25519 AAAA"], ssh_key="/k", executable="/opt/na"))["programs"] == [
        "/opt/na", "timeout", "ssh", "ssh-keyscan", "ssh-keygen"]
    assert na.settle(given(phases="install,reboot"))["programs"] == ["nixos-anywhere", "timeout"]


def test_missing_files_are_named_by_argument():
    stats = [("/k", {"exists": True, "isdir": True}), ("/a.key", {"exists": False}), ("/fifo", {"isfifo": True}),
             ("/files", {"isreg": True})]
    assert na.missing_files(stats, "/k", "/files") == [
        "nixos_anywhere_ssh_key /k is not a file", "nixos_anywhere_extra_files /files is not a directory",
        "the disk encryption key /a.key is not a file"]
    assert na.missing_files([("/k", {"isreg": True}), ("/files", {"isdir": True})], "/k", "/files") == []


def test_missing_programs_say_what_to_install():
    found = na.programs_found([("nixos-anywhere", 1, ""), ("timeout", 0, "/usr/bin/timeout"), ("ssh", 0, "")],
                              "nixos-anywhere", "/usr/bin")
    assert found["missing"] == ["nixos-anywhere", "ssh"]
    assert found["message"] == (
        "nixos-anywhere, ssh not found on the controller (PATH=/usr/bin). Install nixos-anywhere (nix profile install "
        "github:nix-community/nixos-anywhere) or set nixos_anywhere_executable. Install the OpenSSH client "
        "(apt-get install openssh-client). ")
    assert found["real_ssh"] == "ssh" and found["uses_ssh"] is True
    installed = "/nix/store/0000-nixos-anywhere/bin/nixos-anywhere"
    fine = na.programs_found([("nixos-anywhere", 0, installed), ("timeout", 0, "/bin/timeout")], "nixos-anywhere", "/bin")
    assert fine["missing"] == [] and fine["message"] == "" and fine["uses_ssh"] is False
    assert "Install GNU coreutils (timeout)." in na.programs_found([("timeout", 127, "")], "nixos-anywhere", "/bin")["message"]


def test_logins_bound_the_command_and_pin_only_with_expected_keys():
    settled = na.settle(given(ssh_key="/k", timeout=60, port=2222, expected_host_keys=["ssh-ed25519 AAAA"]))
    found = na.logins(settled, ["nixos-anywhere", "--flake", "/site#web1"], ["Ciphers=aes256-ctr"], True)
    assert found["command"] == ["timeout", "--kill-after=30", "60", "nixos-anywhere", "--flake", "/site#web1"]
    assert found["ssh_args"] == ["-T", "-p", "2222", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                                 "-i", "/k", "-o", "IdentitiesOnly=yes", "-o", "Ciphers=aes256-ctr"]
    assert found["pinned"] is True
    assert na.logins(settled, [], [], "false")["pinned"] is False
    assert na.logins(na.settle(given()), [], [], True)["pinned"] is False


def test_check_mode_says_what_would_run():
    line = na.would_run("web1", ["timeout", "60", "nixos-anywhere", "--target-host", "root@<installer-address>"],
                        ["ssh-ed25519 AAAA"], True, ["disko", "install"], None)
    assert line == ("Would run, for web1: timeout 60 nixos-anywhere --target-host 'root@<installer-address>' "
                    "(host key checked against 1 expected key(s) first, connections pinned to them) "
                    "(disks checked first: those of the flake's disko configuration)")
    assert na.would_run("web1", ["x"], [], False, ["install"], ["/dev/vda"]) == (
        "Would run, for web1: x (host key NOT checked: no expected host keys) ")
    assert na.would_run("web1", ["x"], [], False, ["disko"], ["/dev/vda", "/dev/vdb"]).endswith("(disks checked first: /dev/vda, /dev/vdb)")
