# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What is wrong with the role's settled arguments: each problem a sentence naming the argument.

What these encode about nixos-anywhere was read from its ``src/nixos-anywhere.sh`` (1.13.0): it
aborts on ``--disko-mode`` with ``--store-paths`` and ignores ``--build-on`` past its probe of
where to build; it joins the SSH options with spaces into ``NIX_SSHOPTS``; it writes a disk
encryption key with an unquoted ``cat > PATH`` on the target.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._nixos_anywhere.arguments import PlanInput

PHASES = ("kexec", "disko", "install", "reboot")

#: Where the machine's system is built: ``controller`` (nix_build on the controller with the run's input
#: overrides, then ``nixos-anywhere --store-paths``) or ``flake`` (``nixos-anywhere --flake``, which
#: evaluates and builds the flake itself, as its flake.lock says).
BUILDS = ("controller", "flake")

#: nixos-anywhere 1.13.0 options that choose what to install or how to build it: with --store-paths
#: it refuses them, or ignores them and installs something else than they ask for.
_FLAKE_ONLY_ARGS = {
    "-f": "the systems built on the controller are given as --store-paths",
    "--flake": "the systems built on the controller are given as --store-paths",
    "-s": "the role gives the store paths it built",
    "--store-paths": "the role gives the store paths it built",
    "--build-on": "nixos-anywhere builds nothing, it copies what the controller built",
    "--build-on-remote": "nixos-anywhere builds nothing, it copies what the controller built",
    "--disko-mode": "nixos-anywhere aborts: --disko-mode cannot be used if --store-paths is used",
    "--no-disko-deps": "nixos-anywhere ignores it with --store-paths",
    "--generate-hardware-config": "the system is built before the hardware configuration would be generated, "
                                  "so it would not be in the installed system",
    "--vm-test": "nixos-anywhere does not support it with --store-paths",
}

#: Characters a disk encryption key's path on the target may hold: nixos-anywhere puts
#: it unquoted into a shell command, so anything a shell reads specially is refused.
_SAFE_REMOTE_PATH = re.compile(r"/[A-Za-z0-9._+/:@%,=-]*")

_SSH_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9]*=\S+")


def _phase_problems(phases_text: str, phases: Sequence[str]) -> list[str]:
    if not phases or set(phases) - set(PHASES):
        return ["nixos_anywhere_phases must name some of kexec, disko, install, reboot: %s" % phases_text]
    return []


def _ignored_options(args: Mapping[str, Any], phases: Sequence[str]) -> list[str]:
    """Options the given phases would ignore: refused, since dropping them silently installs something else."""
    problems = []
    listed = ",".join(phases)
    if args.get("disk_keys") and "disko" not in phases:
        problems.append("nixos_anywhere_disk_encryption_keys are only used by the disko phase, which nixos_anywhere_phases "
                        "(%s) leaves out: add disko or remove the keys" % listed)
    if args.get("extra_files") and "install" not in phases:
        problems.append("nixos_anywhere_extra_files is only used by the install phase, which nixos_anywhere_phases "
                        "(%s) leaves out: add install or remove it" % listed)
    if args.get("copy_host_keys") and "install" not in phases:
        problems.append("nixos_anywhere_copy_host_keys is only used by the install phase, which nixos_anywhere_phases "
                        "(%s) leaves out: add install or set it to false" % listed)
    if args.get("post_kexec_port") is not None and "kexec" not in phases:
        problems.append("nixos_anywhere_post_kexec_port is only used after the kexec phase, which nixos_anywhere_phases "
                        "(%s) leaves out: add kexec or remove it" % listed)
    return problems


def remote_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be a disk encryption key's path on the target, or None."""
    if not path.startswith("/"):
        return "the disk encryption key path %r on the target must be absolute (start with /)" % path
    if not _SAFE_REMOTE_PATH.fullmatch(path):
        return ("the disk encryption key path %r on the target may hold only letters, digits and . _ + - / : @ %% , = "
                "(nixos-anywhere writes it with an unquoted cat > PATH on the target, so spaces, newlines and shell "
                "characters would change the command)" % path)
    return None


def ssh_option_problem(option: str) -> str | None:
    """Why ``option`` cannot be passed as --ssh-option, or None."""
    if re.search(r"\s", option):
        return ("nixos_anywhere_ssh_options entry %r holds whitespace: nixos-anywhere joins the SSH options with spaces "
                "into NIX_SSHOPTS, where nix copy splits them apart again; put it in ~/.ssh/config (a Host block for the "
                "machine's address) instead" % option)
    if not _SSH_OPTION.fullmatch(option):
        return "nixos_anywhere_ssh_options entry %r must be Name=value (an ssh -o option, without -o)" % option
    return None


def _build_problems(args: Mapping[str, Any], build: str) -> list[str]:
    """Arguments that do not fit where the system is built."""
    if build not in BUILDS:
        return ["nixos_anywhere_build must be controller or flake: %s" % build]
    problems = []
    if build == "controller":
        if args.get("build_on", "auto") != "auto":
            problems.append(
                "nixos_anywhere_build_on is only for nixos_anywhere_build flake (nixos-anywhere builds then); with "
                "controller the controller builds the system and nixos-anywhere copies it: leave nixos_anywhere_build_on "
                "at auto, or set nixos_anywhere_build to flake")
        for arg in args.get("extra_args") or []:
            reason = _FLAKE_ONLY_ARGS.get(str(arg))
            if reason:
                problems.append("nixos_anywhere_extra_args holds %s, which does not fit nixos_anywhere_build controller (%s): "
                                "remove it, or set nixos_anywhere_build to flake" % (arg, reason))
        paths = args.get("store_paths")
        if paths is not None and (len(paths) != 2 or not all(str(path).startswith("/") for path in paths)):
            problems.append("the built store paths must be two absolute paths (disko script, system): %s" % (paths,))
    elif args.get("override_inputs"):
        problems.append(
            "nixos_anywhere_override_inputs cannot be applied with nixos_anywhere_build flake: nixos-anywhere evaluates "
            "the flake itself and has no --override-input (1.13.0). Set nixos_anywhere_build to controller, or pin the "
            "inputs in the flake's flake.lock")
    return problems


def _disk_problems(disks: Iterable[str] | None) -> list[str]:
    if disks is None:
        return []
    return ["nixos_anywhere_disks entry %r must be an absolute device path without whitespace (such as "
            "/dev/disk/by-id/...)" % disk for disk in disks if not re.fullmatch(r"/\S+", disk)]


def _identity_problems(given: PlanInput) -> list[str]:
    """What names the machine and its system: the flake, the attribute, the address."""
    found = []
    if not given.flake:
        found.append("nixos_anywhere_flake is empty (or set nixie_flake)")
    if "#" in given.flake:
        found.append("nixos_anywhere_flake must not carry #attribute (give it as nixos_anywhere_attribute)")
    if not given.attribute:
        found.append("nixos_anywhere_attribute is empty")
    if not given.target:
        found.append("nixos_anywhere_target_host is empty (the address the installer reported)")
    elif re.search(r"\s|@|/", given.target):
        found.append("nixos_anywhere_target_host must be an address or a host name, without user or spaces: %s" % given.target)
    return found


def _range_problems(given: PlanInput, args: Mapping[str, Any]) -> list[str]:
    """Ports, timeout, where to build, the keys' form and what checking the installed system needs."""
    found = []
    if not 0 < given.port < 65536:
        found.append("nixos_anywhere_port must be 1-65535")
    if given.post_kexec_port is not None and not 0 < int(given.post_kexec_port) < 65536:
        found.append("nixos_anywhere_post_kexec_port must be 1-65535")
    found += _phase_problems(given.phases_text, given.phases)
    if args.get("build_on", "auto") not in ("auto", "local", "remote"):
        found.append("nixos_anywhere_build_on must be auto, local or remote")
    if int(args.get("timeout") or 0) <= 0:
        found.append("nixos_anywhere_timeout must be positive")
    found += ["not an SSH public key (type base64 [comment]): %s" % key for key in given.keys if not re.fullmatch(r"\S+ \S+", key)]
    if args.get("verify") and "reboot" in given.phases and not args.get("mac"):
        found.append("checking the installed system needs nixos_anywhere_mac (or the host variable nixie_mac)")
    return found


def problems(given: PlanInput, args: Mapping[str, Any]) -> list[str]:
    """Every problem of the plan's arguments, in the order a person fixes them."""
    found = _identity_problems(given) + _range_problems(given, args) + _ignored_options(args, given.phases)
    found += [problem for problem in (remote_path_problem(remote) for remote, _local in given.disk_keys) if problem]
    found += [problem for problem in (ssh_option_problem(option) for option in given.ssh_options) if problem]
    return found + _disk_problems(args.get("disks")) + _build_problems(args, given.build)
