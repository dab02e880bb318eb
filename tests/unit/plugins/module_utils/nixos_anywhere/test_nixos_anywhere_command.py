# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nixos-anywhere command line and its problems (plugins/module_utils/_nixos_anywhere/command.py, problems.py)."""

from __future__ import annotations

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._nixos_anywhere import arguments, command, version
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.nixos_anywhere.role_samples import DISKO, SYSTEM, args, given, resolved


def test_plan_default_builds_on_the_controller():
    # The role's default: what the controller built is given as --store-paths; nothing is left to build.
    plan = command.plan(args(build=None))
    assert plan["problems"] == [] and plan["build"] == "controller"
    assert plan["argv"] == ["nixos-anywhere", "--store-paths", "<disko-script>", "<system>", "--target-host", "root@192.0.2.10",
                            "--phases", "disko,install,reboot", "--build-on", "local"]
    built = command.plan(args(build="controller", store_paths=[DISKO, SYSTEM]))
    assert built["argv"][1:4] == ["--store-paths", DISKO, SYSTEM] and "--flake" not in built["argv"]
    # --build-on local makes 1.7.0 the oldest nixos-anywhere it can run with.
    assert version.minimum_version(built["argv"])[0] == "1.7.0"


def test_plan_installables_of_the_configuration():
    assert command.plan(args(build="controller"))["installables"] == {
        "system": "/site#nixosConfigurations.web1.config.system.build.toplevel",
        "disko_script": "/site#nixosConfigurations.web1.config.system.build.diskoScript",
        "disks": "/site#nixosConfigurations.web1.config.disko.devices.disk",
    }
    assert command.plan(args(attribute="web.1"))["installables"]["disks"] == '/site#nixosConfigurations."web.1".config.disko.devices.disk'


def test_plan_controller_keeps_every_other_option():
    plan = command.plan(args(build="controller", store_paths=[DISKO, SYSTEM], port=2222, key="/k", extra_files="/x",
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
    problems = command.plan(args(**overrides))["problems"]
    assert any(problem in text for text in problems), problems


def test_plan_flake_mode_keeps_build_on_and_its_own_args():
    plan = command.plan(args(build="flake", build_on="remote", extra_args=["--disko-mode", "mount"]))
    assert plan["problems"] == [] and plan["argv"][1:3] == ["--flake", "/site#web1"]
    assert plan["argv"][-4:] == ["--build-on", "remote", "--disko-mode", "mount"]


def test_plan_default_is_the_old_command_line():
    plan = command.plan(args())
    assert plan["problems"] == []
    assert plan["argv"] == ["nixos-anywhere", "--flake", "/site#web1", "--target-host", "root@192.0.2.10",
                            "--phases", "disko,install,reboot"]
    assert plan["precheck_destination"] == "root@192.0.2.10" and plan["known_hosts_names"] == ["192.0.2.10"]
    assert plan["post_kexec_port"] is None


def test_without_kexec_the_checks_log_in_as_root():
    plan = command.plan(args(user="nixos", port=2222))
    assert plan["argv"][4] == "nixos@192.0.2.10" and plan["precheck_destination"] == "root@192.0.2.10"
    assert "--ssh-port" in plan["argv"] and "--post-kexec-ssh-port" not in plan["argv"]
    assert plan["known_hosts_names"] == ["[192.0.2.10]:2222"]


def test_kexec_off_port_22_passes_the_post_kexec_port_and_pins_both_names():
    plan = command.plan(args(user="ubuntu", port=2222, phases="kexec,disko,install,reboot"))
    argv = plan["argv"]
    assert argv[argv.index("--ssh-port") + 1] == "2222" and argv[argv.index("--post-kexec-ssh-port") + 1] == "22"
    assert plan["precheck_destination"] == "ubuntu@192.0.2.10"
    assert plan["known_hosts_names"] == ["[192.0.2.10]:2222", "192.0.2.10"]


def test_kexec_to_another_port_gives_ssh_port_22_explicitly():
    # nixos-anywhere only swaps the port after kexec when -p is among its ssh arguments.
    plan = command.plan(args(phases="kexec,disko", post_kexec_port=2200))
    argv = plan["argv"]
    assert argv[argv.index("--ssh-port") + 1] == "22" and argv[argv.index("--post-kexec-ssh-port") + 1] == "2200"
    assert plan["known_hosts_names"] == ["192.0.2.10", "[192.0.2.10]:2200"]


def test_kexec_on_port_22_both_sides_adds_nothing():
    plan = command.plan(args(phases="kexec,disko,install"))
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
    problems = command.plan(args(**overrides))["problems"]
    assert any(problem in text for text in problems), problems


def test_plan_accepts_what_the_phases_use():
    plan = command.plan(args(disk_keys=[["/tmp/secret.key", "/l/k"]], extra_files="/x", copy_host_keys=True,
                        ssh_options=["ServerAliveInterval=5"], disks=["/dev/disk/by-id/nvme-Samsung_1"], build_on="local"))
    assert plan["problems"] == []
    assert plan["argv"][-10:] == ["--build-on", "local", "--extra-files", "/x", "--disk-encryption-keys", "/tmp/secret.key", "/l/k",
                                  "--copy-host-keys", "--ssh-option", "ServerAliveInterval=5"]


def test_settle_gives_the_plan_what_it_wants():
    settled = arguments.settle(given(port="2222", timeout="60", copy_host_keys="false", verify="yes"), resolved)
    assert settled["port"] == 2222 and settled["timeout"] == 60
    assert settled["plan_args"] == dict(
        flake="/site", attribute="web1", target="192.0.2.10", user="root", port=2222, post_kexec_port=None,
        phases="disko,install,reboot", build_on="auto", key="", extra_files="", disk_keys=[], copy_host_keys=False,
        ssh_options=[], extra_args=[], executable="nixos-anywhere", timeout=60, expected_keys=[], installed_keys=[],
        verify=True, mac="52:54:00:00:00:01", disks=None, build="controller", override_inputs={})
    assert command.plan(settled["plan_args"])["problems"] == []


def test_the_known_hosts_file_pins_every_name_to_the_expected_keys():
    plan = command.plan(args(phases="kexec,disko,install", port=2222, expected_keys=["ssh-ed25519 A", "ssh-rsa B"]))
    assert plan["known_hosts"] == "[192.0.2.10]:2222,192.0.2.10 ssh-ed25519 A\n[192.0.2.10]:2222,192.0.2.10 ssh-rsa B\n"
    assert plan["invalid"] is False and plan["builds_on_controller"] is False
    assert command.plan(args(flake=""))["invalid"] is True
