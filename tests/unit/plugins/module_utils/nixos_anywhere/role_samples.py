# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nixos_anywhere role's arguments and nixos-anywhere's wrapper as the tests of _nixos_anywhere/ share them."""

from __future__ import annotations

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


DISKO = "/nix/store/0b1xq4f5kz3v6g7h8j9k0l1m2n3p4q5r-disko-web1"


SYSTEM = "/nix/store/9x2dk4cf1pvyc7c0xsszg5s0v0xv1iqd-nixos-system-web1-25.05"


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
