# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The role's arguments settled, and the files and programs a run needs (plugins/module_utils/_nixos_anywhere/arguments.py)."""

from __future__ import annotations

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._nixos_anywhere import arguments, logins
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.nixos_anywhere.role_samples import given, resolved


@pytest.mark.parametrize("missing", [None, ""])
def test_settle_defaults_what_is_not_given(missing):
    settled = arguments.settle({"flake": missing, "target_host": missing, "target_user": missing, "build": missing,
                                "post_kexec_port": missing, "ssh_key": missing, "expected_system": missing}, resolved)
    assert (settled["flake"], settled["target"], settled["user"], settled["build"]) == ("", "", "root", "controller")
    assert settled["post_kexec_port"] is None and settled["key"] == "" and settled["expected_system"] == ""
    assert settled["port"] == 22 and settled["timeout"] == 3600 and settled["plan_args"]["verify"] is True
    assert settled["disks"] is None and settled["override_inputs"] == {}


def test_settle_cleans_addresses_keys_and_paths():
    settled = arguments.settle(given(target_host=" [FD00:1::2] ", ssh_key="~/.ssh/id", extra_files="files",
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
    assert arguments.settle(given(expected_host_keys=keys, copy_host_keys=True))["installed_keys"] == keys
    assert arguments.settle(given(expected_host_keys=keys))["installed_keys"] == []
    assert arguments.settle(given(installed_address="Host.Example "))["installed_address"] == "host.example"


def test_the_programs_the_run_needs():
    assert arguments.settle(given(disks=[]))["programs"] == ["nixos-anywhere", "timeout"]
    assert arguments.settle(given())["programs"] == ["nixos-anywhere", "timeout", "ssh"]
    assert arguments.settle(given(expected_host_keys=["ssh-ed25519 AAAA"], ssh_key="/k", executable="/opt/na"))["programs"] == [
        "/opt/na", "timeout", "ssh", "ssh-keyscan", "ssh-keygen"]
    assert arguments.settle(given(phases="install,reboot"))["programs"] == ["nixos-anywhere", "timeout"]


def test_missing_files_are_named_by_argument():
    kinds = arguments.file_kinds(["/k", "/a.key", "/fifo", "/files", "/unprinted.key"], "directory\nmissing\nfifo\nfile")
    assert kinds[-1] == ("/unprinted.key", "missing")
    assert arguments.missing_files(kinds, "/k", "/files") == [
        "nixos_anywhere_ssh_key /k is not a file", "nixos_anywhere_extra_files /files is not a directory",
        "the disk encryption key /a.key is not a file", "the disk encryption key /unprinted.key is not a file"]
    assert arguments.missing_files([("/k", "file"), ("/files", "directory")], "/k", "/files") == []


def test_missing_programs_say_what_to_install():
    lookups = arguments.program_paths(["nixos-anywhere", "timeout", "ssh"], "\n/usr/bin/timeout\n")
    assert lookups == [("nixos-anywhere", ""), ("timeout", "/usr/bin/timeout"), ("ssh", "")]
    found = arguments.programs_found(lookups, "nixos-anywhere", "/usr/bin")
    assert found["missing"] == ["nixos-anywhere", "ssh"]
    assert found["message"] == (
        "nixos-anywhere, ssh not found on the controller (PATH=/usr/bin). Install nixos-anywhere (nix profile install "
        "github:nix-community/nixos-anywhere) or set nixos_anywhere_executable. Install the OpenSSH client "
        "(apt-get install openssh-client). ")
    assert found["real_ssh"] == "ssh" and found["uses_ssh"] is True
    installed = "/nix/store/0000-nixos-anywhere/bin/nixos-anywhere"
    fine = arguments.programs_found([("nixos-anywhere", installed), ("timeout", "/bin/timeout")], "nixos-anywhere", "/bin")
    assert fine["missing"] == [] and fine["message"] == "" and fine["uses_ssh"] is False
    assert "Install GNU coreutils (timeout)." in arguments.programs_found([("timeout", "")], "nixos-anywhere", "/bin")["message"]


def test_logins_bound_the_command_and_pin_only_with_expected_keys():
    settled = arguments.settle(given(ssh_key="/k", timeout=60, port=2222, expected_host_keys=["ssh-ed25519 AAAA"]))
    found = logins.logins(settled, ["nixos-anywhere", "--flake", "/site#web1"], ["Ciphers=aes256-ctr"], True)
    assert found["command"] == ["timeout", "--kill-after=30", "60", "nixos-anywhere", "--flake", "/site#web1"]
    assert found["ssh_args"] == ["-T", "-p", "2222", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                                 "-i", "/k", "-o", "IdentitiesOnly=yes", "-o", "Ciphers=aes256-ctr"]
    assert found["pinned"] is True
    assert logins.logins(settled, [], [], "false")["pinned"] is False
    assert logins.logins(arguments.settle(given()), [], [], True)["pinned"] is False
