# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nixos-anywhere command line and the SSH endpoints it will use, from the role's settled arguments.

``plan`` turns the settled arguments into the problems to refuse (problems.py), the
nixos-anywhere command line and the SSH endpoints it will use (before and after a kexec).

What these encode about nixos-anywhere was read from its ``src/nixos-anywhere.sh``
(1.13.0): with ``--store-paths`` it evaluates nothing and builds nothing (it checks that both
paths exist, copies them with ``nix copy``); without the kexec phase it logs in as
root whatever user was given; after a kexec it reconnects as root on ``--post-kexec-ssh-port`` (default 22),
and it only applies that port when ``--ssh-port`` was given. This file is private to the collection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._nix.commands import configuration_installable
from ansible_collections.nixie.metal.plugins.module_utils._nixos_anywhere.arguments import PlanInput, read_plan_input
from ansible_collections.nixie.metal.plugins.module_utils._nixos_anywhere.problems import problems

#: What ``--store-paths`` stands for before the build (check of arguments, version, check mode).
DISKO_PLACEHOLDER = "<disko-script>"

SYSTEM_PLACEHOLDER = "<system>"


def known_hosts_name(host: str, port: int | str) -> str:
    """How known_hosts names ``host`` on ``port`` (ssh writes [host]:port off port 22)."""
    return host if int(port) == 22 else "[%s]:%d" % (host, int(port))


def _what_to_install(given: PlanInput, args: Mapping[str, Any]) -> list[str]:
    """The store paths built on the controller (placeholders before the build), or the flake to build."""
    if given.build == "controller":
        paths = args.get("store_paths")
        disko_script, system = paths if paths and len(paths) == 2 else (DISKO_PLACEHOLDER, SYSTEM_PLACEHOLDER)
        return ["--store-paths", str(disko_script), str(system)]
    return ["--flake", "%s#%s" % (given.flake, given.attribute)]


def _login_args(given: PlanInput, args: Mapping[str, Any]) -> list[str]:
    """Whom and where nixos-anywhere logs in as, with which key, on which ports."""
    argv = ["--target-host", "%s@%s" % (given.user, given.target)]
    if args.get("key"):
        argv += ["-i", args["key"]]
    # nixos-anywhere only swaps in the post-kexec port when "-p" is among its ssh arguments,
    # so with kexec and any port off 22 both are given, even an --ssh-port of 22.
    if given.kexec and (given.port != 22 or given.after_kexec != 22):
        argv += ["--ssh-port", str(given.port), "--post-kexec-ssh-port", str(given.after_kexec)]
    elif given.port != 22:
        argv += ["--ssh-port", str(given.port)]
    return argv


def _build_on_args(given: PlanInput, args: Mapping[str, Any]) -> list[str]:
    if given.build == "controller":
        # Nothing is left to build; "local" also skips nixos-anywhere's probe of where to build, which runs
        # `nix config show` (Nix 2.20) and, for a machine of another architecture, a test build.
        return ["--build-on", "local"]
    if args.get("build_on", "auto") != "auto":
        return ["--build-on", args["build_on"]]
    return []


def _payload_args(given: PlanInput, args: Mapping[str, Any]) -> list[str]:
    """What nixos-anywhere carries to the target besides the system, then the SSH options and the extra arguments."""
    argv = ["--extra-files", args["extra_files"]] if args.get("extra_files") else []
    for remote, local in given.disk_keys:
        argv += ["--disk-encryption-keys", remote, local]
    if args.get("copy_host_keys"):
        argv.append("--copy-host-keys")
    for option in given.ssh_options:
        argv += ["--ssh-option", option]
    return argv + [str(arg) for arg in args.get("extra_args") or []]


def command_line(given: PlanInput, args: Mapping[str, Any]) -> list[str]:
    """The nixos-anywhere command line."""
    return ([str(args.get("executable") or "nixos-anywhere")] + _what_to_install(given, args) + _login_args(given, args)
            + ["--phases", ",".join(given.phases)] + _build_on_args(given, args) + _payload_args(given, args))


def endpoints(given: PlanInput) -> dict[str, Any]:
    """Whom nixos-anywhere logs in as first, and every name its ssh will look the host key up under."""
    precheck_user = given.user if given.kexec else "root"
    names = [known_hosts_name(given.target, given.port)]
    if given.kexec and known_hosts_name(given.target, given.after_kexec) not in names:
        names.append(known_hosts_name(given.target, given.after_kexec))
    return {
        "precheck_user": precheck_user,
        "precheck_destination": "%s@%s" % (precheck_user, given.target),
        "post_kexec_port": given.after_kexec if given.kexec else None,
        "known_hosts_names": names,
    }


def known_hosts(names: list[str], keys: list[str]) -> str:
    """The known_hosts file that pins every name to the expected keys alone."""
    return "".join("%s %s\n" % (",".join(names), key) for key in keys)


def plan(args: Mapping[str, Any]) -> dict[str, Any]:
    """The role's decisions from its settled arguments (a dict; see the role's tasks/main.yml).

    ``build`` is where the system is built (:data:`problems.BUILDS`); with ``controller``, ``store_paths``
    is [disko script, system] once they are built (placeholders stand in for them before).
    Returns ``problems`` (each a sentence naming the argument), ``argv`` (the nixos-anywhere
    command line), ``build``, ``installables`` (system, disko_script, disks), ``kexec``,
    ``precheck_user``/``precheck_destination`` (whom nixos-anywhere logs in as first, so the
    role's pinned check logs in as the same), ``post_kexec_port``, ``known_hosts_names``
    (every name nixos-anywhere's ssh will look the host key up under) and ``known_hosts``
    (the file that pins them to the expected keys).
    """
    given = read_plan_input(args)
    found = problems(given, args)
    ends = endpoints(given)
    return dict(ends, **{
        "problems": found,
        "invalid": bool(found),
        "argv": command_line(given, args),
        "build": given.build,
        "builds_on_controller": given.build == "controller",
        # What the role builds (controller) and evaluates (the disk guard), with the run's input overrides.
        "installables": {
            "system": configuration_installable(given.flake, given.attribute, "config.system.build.toplevel"),
            "disko_script": configuration_installable(given.flake, given.attribute, "config.system.build.diskoScript"),
            "disks": configuration_installable(given.flake, given.attribute, "config.disko.devices.disk"),
        },
        "phases": given.phases,
        "kexec": given.kexec,
        "known_hosts": known_hosts(ends["known_hosts_names"], list(args.get("expected_keys") or [])),
    })


def built(outputs: Mapping[str, Any], plan_args: Mapping[str, Any], expected_system: str) -> dict[str, Any]:
    """What nix_build built on the controller, and the command line that installs exactly that.

    ``outputs`` is nix_build's ``outputs`` (installable to its outputs). Returns ``system``,
    ``disko_script``, ``argv`` (planned again with them as ``--store-paths``) and ``other_system``:
    whether hosts.json's expected system (trailing slashes aside) is another one than the flake builds.
    """
    installables = plan(plan_args)["installables"]
    system = str(outputs[installables["system"]]["out"])
    disko_script = str(outputs[installables["disko_script"]]["out"])
    return {
        "system": system,
        "disko_script": disko_script,
        "argv": plan(dict(plan_args, store_paths=[disko_script, system]))["argv"],
        "other_system": bool(expected_system) and expected_system.rstrip("/") != system,
    }
