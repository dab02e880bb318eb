# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_nix.commands: installables and the command lines of nix build and nix eval."""

from __future__ import annotations

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._nix import commands as nix_commands, errors as nix_errors


@pytest.mark.parametrize("ref, expected", [
    ("./examples#nixosConfigurations.installer", "./examples#nixosConfigurations.installer"),
    ("./examples#installer", "./examples#nixosConfigurations.installer"),
    ("github:o/r#installer-aarch64", "github:o/r#nixosConfigurations.installer-aarch64"),
    ("/abs#nixosConfigurations.\"my.host\"", "/abs#nixosConfigurations.\"my.host\""),
])
def test_nixos_configuration(ref, expected):
    assert nix_commands.nixos_configuration(ref) == expected


@pytest.mark.parametrize("ref", ["./examples", "#installer", "./examples#"])
def test_nixos_configuration_needs_flake_and_attr(ref):
    with pytest.raises(nix_errors.NixError, match="FLAKE#ATTR"):
        nix_commands.nixos_configuration(ref)


def test_netboot_installables():
    assert nix_commands.netboot_installables("./e#installer") == {
        "kernel": "./e#nixosConfigurations.installer.config.system.build.kernel",
        "initrd": "./e#nixosConfigurations.installer.config.system.build.netbootRamdisk",
        "toplevel": "./e#nixosConfigurations.installer.config.system.build.toplevel",
    }


def test_build_command_puts_everything_in_one_call():
    argv = nix_commands.build_command("nix", ["./e#a", "./e#b"], dry_run=True, impure=True, offline=True,
                                      options={"cores": 4, "keep-going": True, "extra-platforms": ["aarch64-linux", "i686-linux"]},
                                      extra_args=["--show-trace"])
    assert argv == [
        "nix", "--extra-experimental-features", "nix-command flakes", "--log-format", "internal-json",
        "build", "--no-link", "--json", "--dry-run", "--impure", "--offline",
        "--option", "cores", "4", "--option", "keep-going", "true", "--option", "extra-platforms", "aarch64-linux i686-linux",
        "--show-trace", "./e#a", "./e#b",
    ]


def test_eval_command():
    assert nix_commands.eval_command("nix", "./e#x", apply="c: c") == [
        "nix", "--extra-experimental-features", "nix-command flakes", "--log-format", "internal-json",
        "eval", "--json", "--apply", "c: c", "./e#x"]


def test_unique():
    assert nix_commands.unique(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]


@pytest.mark.parametrize("attribute, path, expected", [
    ("web1", "config.system.build.toplevel", "/site#nixosConfigurations.web1.config.system.build.toplevel"),
    ("web-1_a'", "", "/site#nixosConfigurations.web-1_a'"),
    ("web.1", "config.disko.devices.disk", '/site#nixosConfigurations."web.1".config.disko.devices.disk'),
    ('a"b\\c', "config", '/site#nixosConfigurations."a\\"b\\\\c".config'),
    ("1st", "config", '/site#nixosConfigurations."1st".config'),
])
def test_configuration_installable(attribute, path, expected):
    assert nix_commands.configuration_installable("/site", attribute, path) == expected
