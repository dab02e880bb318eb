# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The role's arguments settled: what each given value stands for, as the tasks and the plan use it.

An argument absent, None or '' is not given and takes the default meta/argument_specs.yml
documents. Also the controller files and programs a run needs, and what their checks found.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PlanInput:
    """The plan's arguments read once, in the types the plan's steps use."""

    phases_text: str
    phases: list[str]
    target: str
    port: int
    post_kexec_port: object
    after_kexec: int
    kexec: bool
    flake: str
    attribute: str
    user: str
    build: str
    ssh_options: list[str]
    disk_keys: list[list[str]]
    keys: list[str]


def read_plan_input(args: Mapping[str, Any]) -> PlanInput:
    """:class:`PlanInput` from the plan's arguments (``plan_args`` of :func:`settle`, or a test's dict)."""
    phases_text = args.get("phases") or ""
    phases = [phase.strip() for phase in phases_text.split(",") if phase.strip()]
    post_kexec_port = args.get("post_kexec_port")
    return PlanInput(
        phases_text=phases_text, phases=phases, target=args.get("target") or "",
        port=int(args["port"]) if args.get("port") is not None else 22,
        post_kexec_port=post_kexec_port,
        after_kexec=int(post_kexec_port if post_kexec_port is not None else 22),
        kexec="kexec" in phases, flake=args.get("flake") or "", attribute=args.get("attribute") or "",
        user=args.get("user") or "root", build=str(args.get("build") or "controller"),
        ssh_options=[str(option) for option in args.get("ssh_options") or []],
        disk_keys=[list(pair) for pair in args.get("disk_keys") or []],
        keys=list(args.get("expected_keys") or []) + list(args.get("installed_keys") or []))


def _given(value: object) -> bool:
    """None and '' mean not given (an argument set to an empty variable); anything else is given."""
    return value is not None and value != ""


def _text(given: Mapping[str, Any], name: str, default: str = "") -> str:
    """An argument as text, or ``default`` when it is not given."""
    value = given.get(name)
    return str(value) if _given(value) else default


def _truth(value: object) -> bool:
    """Ansible's truth of an argument that may arrive as a string (-e x=false)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "y", "t")
    return bool(value)


def _address(value: object) -> str:
    """An address as nixos-anywhere and ssh want it: no surrounding space or IPv6 brackets, lower case."""
    text = str(value).strip() if _given(value) else ""
    return re.sub(r"^\[(.*)\]$", r"\1", text).lower()


def public_keys(values: Iterable[str] | None, unique: bool = True) -> list[str]:
    """SSH public keys as ``type base64``, the form ssh-keyscan and known_hosts use (comments dropped, blanks left out)."""
    found = []
    for value in values or []:
        text = str(value).strip()
        if not text:
            continue
        key = re.sub(r"^(\S+)\s+(\S+).*$", r"\1 \2", text, flags=re.DOTALL)
        if not unique or key not in found:
            found.append(key)
    return found


def settle(given: Mapping[str, Any], resolve: Callable[[str], str] = lambda path: path) -> dict[str, Any]:
    """The role's arguments, as its tasks and :func:`plan` use them, from what the role was given.

    ``given`` maps each argument's name without its ``nixos_anywhere_`` prefix to its value; an
    argument absent, None or '' is not given and takes the default meta/argument_specs.yml
    documents. ``resolve`` makes a controller path absolute (``~`` expanded, symlinks resolved).
    Returns the settled values, ``plan_args`` (the input of :func:`plan`), ``installed_keys``
    (what the installed system will present) and ``local_files`` (the controller files to check).
    """
    def text(name: str, default: str = "") -> str:
        return _text(given, name, default)

    def path(name: str) -> str:
        value = text(name)
        return resolve(value) if value else ""

    disks = given.get("disks")
    post_kexec_port = given.get("post_kexec_port")
    disk_keys = sorted(((str(remote), resolve(str(local))) for remote, local in (given.get("disk_encryption_keys") or {}).items()))
    copy_host_keys = _truth(given.get("copy_host_keys"))
    settled = {
        "flake": text("flake"),
        "attribute": text("attribute"),
        "target": _address(given.get("target_host")),
        "user": text("target_user", "root"),
        "port": int(given.get("port") if _given(given.get("port")) else 22),
        "post_kexec_port": int(post_kexec_port) if _given(post_kexec_port) else None,
        "key": path("ssh_key"),
        "extra_files": path("extra_files"),
        "disk_keys": [list(pair) for pair in disk_keys],
        "expected_keys": public_keys(given.get("expected_host_keys")),
        "installed_given": public_keys(given.get("installed_host_keys"), unique=False),
        "expected_system": text("expected_system"),
        "mac": text("mac"),
        "timeout": int(given.get("timeout") if _given(given.get("timeout")) else 3600),
        # None: evaluate them from the flake (tasks/disks_eval.yml); [] checks nothing.
        "disks": None if disks is None else [str(disk).strip() for disk in disks],
        "build": text("build", "controller"),
        "override_inputs": dict(given.get("override_inputs") or {}),
        "installed_address": _address(given.get("installed_address")) or _address(given.get("target_host")),
        # An address given for the installed system is where it is; otherwise it is looked for by its MAC after the reboot.
        "installed_address_given": bool(_address(given.get("installed_address"))),
        "interface": text("interface"),
    }
    phases = [phase.strip() for phase in text("phases").split(",") if phase.strip()]
    settled["installed_keys"] = settled["installed_given"] or (settled["expected_keys"] if copy_host_keys else [])
    settled["local_files"] = (([settled["key"]] if settled["key"] else []) + [local for _remote, local in disk_keys]
                              + ([settled["extra_files"]] if settled["extra_files"] else []))
    settled["plan_args"] = _plan_args(given, settled, copy_host_keys)
    settled["programs"] = programs_needed(settled, phases)
    return settled


def _plan_args(given: Mapping[str, Any], settled: Mapping[str, Any], copy_host_keys: bool) -> dict[str, Any]:
    """The input of the plan: the settled values and the arguments only the plan reads."""
    return {
        "flake": settled["flake"], "attribute": settled["attribute"], "target": settled["target"], "user": settled["user"],
        "port": settled["port"], "post_kexec_port": settled["post_kexec_port"], "phases": _text(given, "phases"),
        "build_on": _text(given, "build_on", "auto"), "key": settled["key"], "extra_files": settled["extra_files"],
        "disk_keys": settled["disk_keys"], "copy_host_keys": copy_host_keys,
        "ssh_options": [str(option) for option in given.get("ssh_options") or []],
        "extra_args": [str(arg) for arg in given.get("extra_args") or []],
        "executable": _text(given, "executable", "nixos-anywhere"), "timeout": settled["timeout"],
        "expected_keys": settled["expected_keys"], "installed_keys": settled["installed_given"],
        "verify": _truth(given.get("verify", True)), "mac": settled["mac"], "disks": settled["disks"],
        "build": settled["build"], "override_inputs": settled["override_inputs"],
    }


def file_kinds(files: Sequence[str], stdout: str) -> list[tuple[str, str]]:
    """(file, kind) pairs from the role's one look at the controller's files ("Check the local files": directory, file,
    fifo or missing per line, in the order given); a file it printed nothing for is missing."""
    kinds = stdout.splitlines()
    return [(item, kinds[index] if index < len(kinds) else "missing") for index, item in enumerate(files)]


def program_paths(programs: Sequence[str], stdout: str) -> list[tuple[str, str]]:
    """(program, path) pairs from the role's one ``command -v`` of every program ("Find the programs the install needs": a
    line per program, empty when not found)."""
    paths = stdout.split("\n")
    return [(item, paths[index] if index < len(paths) else "") for index, item in enumerate(programs)]


def missing_files(kinds: Iterable[tuple[str, str]], key: str | None, extra_files: str | None) -> list[str]:
    """What is wrong with the controller files the run needs, from the kind of each ((file, kind) pairs): sentences."""
    by_kind = {"key": [], "extra_files": [], "disk_key": []}
    for item, kind in kinds:
        if item == key:
            if kind != "file":
                by_kind["key"].append("nixos_anywhere_ssh_key %s is not a file" % item)
        elif item == extra_files:
            if kind != "directory":
                by_kind["extra_files"].append("nixos_anywhere_extra_files %s is not a directory" % item)
        elif kind not in ("file", "fifo"):
            by_kind["disk_key"].append("the disk encryption key %s is not a file" % item)
    return by_kind["key"] + by_kind["extra_files"] + by_kind["disk_key"]


def programs_needed(settled: Mapping[str, Any], phases: Sequence[str]) -> list[str]:
    """The programs the role runs on the controller, each once: nixos-anywhere, timeout, and ssh's when it logs in itself."""
    wanted = [settled["plan_args"]["executable"], "timeout"]
    if settled["expected_keys"]:
        wanted += ["ssh", "ssh-keyscan", "ssh-keygen"]
    if "disko" in phases and settled["disks"] != []:
        wanted.append("ssh")
    if settled["key"]:
        wanted.append("ssh-keygen")
    return list(dict.fromkeys(wanted))


def programs_found(lookups: Sequence[tuple[str, str]], executable: str, path: str) -> dict[str, Any]:
    """From ``command -v`` of each program ((program, path) pairs, path empty when not found): the paths found, what is
    missing and what to do."""
    found = {item: where for item, where in lookups if where}
    missing = [item for item, where in lookups if not where]
    hints = ""
    if executable in missing:
        hints += "Install nixos-anywhere (nix profile install github:nix-community/nixos-anywhere) or set nixos_anywhere_executable. "
    if any(item.startswith("ssh") for item in missing):
        hints += "Install the OpenSSH client (apt-get install openssh-client). "
    if "timeout" in missing:
        hints += "Install GNU coreutils (timeout). "
    message = "%s not found on the controller (PATH=%s). %s" % (", ".join(missing), path, hints) if missing else ""
    return {"found": found, "missing": missing, "message": message, "real_ssh": found.get("ssh", "ssh"),
            "uses_ssh": "ssh" in [item for item, _where in lookups]}
