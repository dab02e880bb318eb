# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decisions of the nixos_anywhere role, without Ansible: pure functions, no I/O.

``plan`` turns the role's settled arguments into the problems to refuse, the
nixos-anywhere command line and the SSH endpoints it will use (before and after
a kexec). ``check_version`` says whether the nixos-anywhere found on the
controller is recent enough for the options on that command line (the
preflight uses it too). ``disk_check`` reads the target's answer to the disk
guard, ``outcome`` the exit of a nixos-anywhere run.

What these encode about nixos-anywhere was read from its ``src/nixos-anywhere.sh``
(1.13.0): with ``--store-paths`` it evaluates nothing and builds nothing (it checks that both
paths exist, copies them with ``nix copy``, aborts on ``--disko-mode`` and ignores
``--build-on`` past its probe of where to build); without the kexec phase it logs in as
root whatever user was given; after a kexec it reconnects as root on ``--post-kexec-ssh-port`` (default 22),
and it only applies that port when ``--ssh-port`` was given; it joins the SSH
options with spaces into ``NIX_SSHOPTS``; it writes a disk encryption key with
an unquoted ``cat > PATH`` on the target; it has no ``--version`` option. This
file is private to the collection.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._nix.commands import configuration_installable

PHASES = ("kexec", "disko", "install", "reboot")

#: Where the machine's system is built: ``controller`` (nix_build on the controller with the run's input
#: overrides, then ``nixos-anywhere --store-paths``) or ``flake`` (``nixos-anywhere --flake``, which
#: evaluates and builds the flake itself, as its flake.lock says).
BUILDS = ("controller", "flake")
#: What ``--store-paths`` stands for before the build (check of arguments, version, check mode).
DISKO_PLACEHOLDER = "<disko-script>"
SYSTEM_PLACEHOLDER = "<system>"
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

#: The options of the role's command lines that not every nixos-anywhere knows, with
#: the release that added them, oldest requirement first.
MINIMUM_VERSIONS = (("--target-host", "1.6.0"), ("--build-on", "1.7.0"))

#: Characters a disk encryption key's path on the target may hold: nixos-anywhere puts
#: it unquoted into a shell command, so anything a shell reads specially is refused.
_SAFE_REMOTE_PATH = re.compile(r"/[A-Za-z0-9._+/:@%,=-]*")
_SSH_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9]*=\S+")
# ".../<hash>-nixos-anywhere-1.13.0/..." (the Nix store path of its package, where its version is,
# as it has no --version), or a whole line "nixos-anywhere [version] 1.13.0" (should it gain one);
# not any mention in a script's comments.
_VERSION_IN_STORE_PATH = re.compile(r"-nixos-anywhere-(\d+)\.(\d+)(?:\.(\d+))?(?=[/\s\"']|-unstable|$)", re.M)
_VERSION_LINE = re.compile(r"^\s*nixos-anywhere(?:\s+version)?\s+v?(\d+)\.(\d+)(?:\.(\d+))?\s*$", re.M)
_BARE_VERSION = re.compile(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?\s*$")


def parse_version(text: str | None) -> str | None:
    """The nixos-anywhere version named in ``text``, as "X.Y.Z", else None.

    ``text`` is the output of ``nixos-anywhere --version`` (should a release gain one), or
    the resolved path and the first bytes of the executable: the Nix package's wrapper
    lives in ``/nix/store/<hash>-nixos-anywhere-<version>/`` and names that path again.
    """
    text = text or ""
    match = _VERSION_IN_STORE_PATH.search(text) or _VERSION_LINE.search(text) or _BARE_VERSION.match(text)
    if not match:
        return None
    return "%d.%d.%d" % (int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def minimum_version(argv: Iterable[str]) -> tuple[str | None, dict[str, str]]:
    """(the minimum version for ``argv``, {option: version} of the options that need one)."""
    needs = {flag: version for flag, version in MINIMUM_VERSIONS if flag in argv}
    if not needs:
        return None, {}
    return max(needs.values(), key=version_tuple), needs


def check_version(text: str | None, argv: Iterable[str], executable: str = "nixos-anywhere") -> dict[str, Any]:
    """Whether the nixos-anywhere described by ``text`` can run ``argv``.

    Returns ``ok`` (True, False, or None when the version cannot be told), ``version``,
    ``minimum``, ``needs`` ({option: version}) and a ``message`` for a person.
    """
    version = parse_version(text)
    minimum, needs = minimum_version(argv)
    reasons = ", ".join("%s needs %s" % (flag, needed) for flag, needed in needs.items())
    result = {"version": version, "minimum": minimum, "needs": needs}
    if minimum is None:
        result.update(ok=True, message="%s %s: no option on the command line needs a minimum version." % (executable, version or "(version unknown)"))
    elif version is None:
        result.update(ok=None, message=(
            "Could not tell which version %s is (no nixos-anywhere-<version> in its Nix store path, and nixos-anywhere "
            "has no --version): this command line needs %s or later (%s)." % (executable, minimum, reasons)))
    elif version_tuple(version) < version_tuple(minimum):
        result.update(ok=False, message=(
            "%s is nixos-anywhere %s, too old for this command line (%s). Install %s or later, for example "
            "nix profile install github:nix-community/nixos-anywhere/1.13.0, or set the executable to a newer one."
            % (executable, version, reasons, minimum)))
    else:
        result.update(ok=True, message="%s is nixos-anywhere %s (at least %s: %s)." % (executable, version, minimum, reasons))
    return result


def known_hosts_name(host: str, port: int | str) -> str:
    """How known_hosts names ``host`` on ``port`` (ssh writes [host]:port off port 22)."""
    return host if int(port) == 22 else "[%s]:%d" % (host, int(port))


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


def plan(args: Mapping[str, Any]) -> dict[str, Any]:
    """The role's decisions from its settled arguments (a dict; see the role's tasks/main.yml).

    ``build`` is where the system is built (:data:`BUILDS`); with ``controller``, ``store_paths``
    is [disko script, system] once they are built (placeholders stand in for them before).
    Returns ``problems`` (each a sentence naming the argument), ``argv`` (the nixos-anywhere
    command line), ``build``, ``installables`` (system, disko_script, disks), ``kexec``,
    ``precheck_user``/``precheck_destination`` (whom nixos-anywhere logs in as first, so the
    role's pinned check logs in as the same), ``post_kexec_port`` and ``known_hosts_names``
    (every name nixos-anywhere's ssh will look the host key up under).
    """
    phases_text = args.get("phases") or ""
    phases = [phase.strip() for phase in phases_text.split(",") if phase.strip()]
    target = args.get("target") or ""
    port = int(args["port"]) if args.get("port") is not None else 22
    post_kexec_port = args.get("post_kexec_port")
    kexec = "kexec" in phases
    flake = args.get("flake") or ""
    attribute = args.get("attribute") or ""
    ssh_options = [str(option) for option in args.get("ssh_options") or []]
    disk_keys = [list(pair) for pair in args.get("disk_keys") or []]
    keys = list(args.get("expected_keys") or []) + list(args.get("installed_keys") or [])

    build = str(args.get("build") or "controller")

    problems = []
    if not flake:
        problems.append("nixos_anywhere_flake is empty (or set nixie_flake)")
    if "#" in flake:
        problems.append("nixos_anywhere_flake must not carry #attribute (give it as nixos_anywhere_attribute)")
    if not attribute:
        problems.append("nixos_anywhere_attribute is empty")
    if not target:
        problems.append("nixos_anywhere_target_host is empty (the address the installer reported)")
    elif re.search(r"\s|@|/", target):
        problems.append("nixos_anywhere_target_host must be an address or a host name, without user or spaces: %s" % target)
    if not 0 < port < 65536:
        problems.append("nixos_anywhere_port must be 1-65535")
    if post_kexec_port is not None and not 0 < int(post_kexec_port) < 65536:
        problems.append("nixos_anywhere_post_kexec_port must be 1-65535")
    problems += _phase_problems(phases_text, phases)
    if args.get("build_on", "auto") not in ("auto", "local", "remote"):
        problems.append("nixos_anywhere_build_on must be auto, local or remote")
    if int(args.get("timeout") or 0) <= 0:
        problems.append("nixos_anywhere_timeout must be positive")
    problems += ["not an SSH public key (type base64 [comment]): %s" % key for key in keys if not re.fullmatch(r"\S+ \S+", key)]
    if args.get("verify") and "reboot" in phases and not args.get("mac"):
        problems.append("checking the installed system needs nixos_anywhere_mac (or the host variable nixie_mac)")
    problems += _ignored_options(args, phases)
    problems += [problem for problem in (remote_path_problem(remote) for remote, _local in disk_keys) if problem]
    problems += [problem for problem in (ssh_option_problem(option) for option in ssh_options) if problem]
    problems += _disk_problems(args.get("disks"))
    problems += _build_problems(args, build)

    after_kexec = int(post_kexec_port if post_kexec_port is not None else 22)
    user = args.get("user") or "root"
    argv = [str(args.get("executable") or "nixos-anywhere")]
    if build == "controller":
        paths = args.get("store_paths")
        disko_script, system = paths if paths and len(paths) == 2 else (DISKO_PLACEHOLDER, SYSTEM_PLACEHOLDER)
        argv += ["--store-paths", str(disko_script), str(system)]
    else:
        argv += ["--flake", "%s#%s" % (flake, attribute)]
    argv += ["--target-host", "%s@%s" % (user, target)]
    if args.get("key"):
        argv += ["-i", args["key"]]
    # nixos-anywhere only swaps in the post-kexec port when "-p" is among its ssh arguments,
    # so with kexec and any port off 22 both are given, even an --ssh-port of 22.
    if kexec and (port != 22 or after_kexec != 22):
        argv += ["--ssh-port", str(port), "--post-kexec-ssh-port", str(after_kexec)]
    elif port != 22:
        argv += ["--ssh-port", str(port)]
    argv += ["--phases", ",".join(phases)]
    if build == "controller":
        # Nothing is left to build; "local" also skips nixos-anywhere's probe of where to build, which runs
        # `nix config show` (Nix 2.20) and, for a machine of another architecture, a test build.
        argv += ["--build-on", "local"]
    elif args.get("build_on", "auto") != "auto":
        argv += ["--build-on", args["build_on"]]
    if args.get("extra_files"):
        argv += ["--extra-files", args["extra_files"]]
    for remote, local in disk_keys:
        argv += ["--disk-encryption-keys", remote, local]
    if args.get("copy_host_keys"):
        argv.append("--copy-host-keys")
    for option in ssh_options:
        argv += ["--ssh-option", option]
    argv += [str(arg) for arg in args.get("extra_args") or []]

    precheck_user = user if kexec else "root"
    names = [known_hosts_name(target, port)]
    if kexec and known_hosts_name(target, after_kexec) not in names:
        names.append(known_hosts_name(target, after_kexec))
    return {
        "problems": problems,
        "argv": argv,
        "build": build,
        # What the role builds (controller) and evaluates (the disk guard), with the run's input overrides.
        "installables": {
            "system": configuration_installable(flake, attribute, "config.system.build.toplevel"),
            "disko_script": configuration_installable(flake, attribute, "config.system.build.diskoScript"),
            "disks": configuration_installable(flake, attribute, "config.disko.devices.disk"),
        },
        "phases": phases,
        "kexec": kexec,
        "precheck_user": precheck_user,
        "precheck_destination": "%s@%s" % (precheck_user, target),
        "post_kexec_port": after_kexec if kexec else None,
        "known_hosts_names": names,
    }


def disk_check(host: str, disks: Sequence[str], rc: int, stdout: str, stderr: str) -> dict[str, Any]:
    """Reads the target's answer to the disk guard (``present PATH``, ``missing PATH``,
    ``by-id LINK -> DEVICE`` lines); returns ``ok``, ``missing``, ``by_id`` and a ``message``."""
    present, missing_seen, by_id = set(), set(), []
    for line in (stdout or "").splitlines():
        kind, _sep, rest = line.partition(" ")
        if kind == "present":
            present.add(rest)
        elif kind == "missing":
            missing_seen.add(rest)
        elif kind == "by-id":
            by_id.append(rest)
    if rc != 0:
        return {"ok": False, "missing": [], "by_id": by_id, "message": (
            "Could not check the disks of %s over SSH (exit %d): %s. Nothing was written to it."
            % (host, rc, (stderr or "").strip() or "no output"))}
    # A disk the answer does not mention counts as missing: the check must not pass on a garbled answer.
    missing = [disk for disk in disks if disk not in present or disk in missing_seen]
    if not missing:
        return {"ok": True, "missing": [], "by_id": by_id,
                "message": "%s has every disk its disko configuration names: %s." % (host, ", ".join(disks))}
    held = "; ".join(by_id) if by_id else "nothing (no /dev/disk/by-id there)"
    return {"ok": False, "missing": missing, "by_id": by_id, "message": (
        "%s has no block device %s, which its disko configuration names; nothing was partitioned. "
        "/dev/disk/by-id there holds: %s. Name the disk by one of those paths in the flake (or in nixos_anywhere_disks)."
        % (host, ", ".join(missing), held))}


def outcome(rc: int, stdout: str, stderr: str, executable: str, what: str, timeout: object) -> dict[str, str]:
    """What a nixos-anywhere run under ``timeout`` ended as: ``kind`` (ok, timeout, not_started,
    failed) and a ``message`` with the last lines of its output."""
    out_lines = (stdout or "").splitlines()
    err_lines = (stderr or "").splitlines()
    tail = " | ".join(out_lines[-10:] + err_lines[-15:])
    if rc == 0:
        return {"kind": "ok", "message": "nixos-anywhere installed %s." % what}
    if rc in (124, 137):
        return {"kind": "timeout", "message": "nixos-anywhere did not finish within %s s (killed) installing %s. Last output: %s"
                % (timeout, what, tail)}
    # coreutils timeout exits 126/127 itself, saying so, when it cannot execute the program; an
    # exit 127 after any other output is nixos-anywhere's own (set -e after a command not found).
    own = [line for line in err_lines if line.strip() and not line.startswith("timeout: failed to run command")]
    if rc in (126, 127) and not (stdout or "").strip() and not own:
        return {"kind": "not_started", "message": "nixos-anywhere (%s) could not be started (exit %d): %s"
                % (executable, rc, (stderr or "").strip() or "no output")}
    hint = (" Exit 127 means a command nixos-anywhere ran was not found (on the target, or in its own PATH)."
            if rc == 127 else "")
    return {"kind": "failed", "message": "nixos-anywhere failed (exit %d) installing %s.%s Last output: %s" % (rc, what, hint, tail)}


def _given(value: object) -> bool:
    """None and '' mean not given (an argument set to an empty variable); anything else is given."""
    return value is not None and value != ""


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
        value = given.get(name)
        return str(value) if _given(value) else default

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
    }
    phases = [phase.strip() for phase in text("phases").split(",") if phase.strip()]
    settled["installed_keys"] = settled["installed_given"] or (settled["expected_keys"] if copy_host_keys else [])
    settled["local_files"] = (([settled["key"]] if settled["key"] else []) + [local for _remote, local in disk_keys]
                              + ([settled["extra_files"]] if settled["extra_files"] else []))
    settled["plan_args"] = {
        "flake": settled["flake"], "attribute": settled["attribute"], "target": settled["target"], "user": settled["user"],
        "port": settled["port"], "post_kexec_port": settled["post_kexec_port"], "phases": text("phases"),
        "build_on": text("build_on", "auto"), "key": settled["key"], "extra_files": settled["extra_files"],
        "disk_keys": settled["disk_keys"], "copy_host_keys": copy_host_keys,
        "ssh_options": [str(option) for option in given.get("ssh_options") or []],
        "extra_args": [str(arg) for arg in given.get("extra_args") or []],
        "executable": text("executable", "nixos-anywhere"), "timeout": settled["timeout"],
        "expected_keys": settled["expected_keys"], "installed_keys": settled["installed_given"],
        "verify": _truth(given.get("verify", True)), "mac": settled["mac"], "disks": settled["disks"],
        "build": settled["build"], "override_inputs": settled["override_inputs"],
    }
    settled["programs"] = programs_needed(settled, phases)
    return settled


def missing_files(stats: Iterable[tuple[str, Mapping[str, Any]]], key: str | None, extra_files: str | None) -> list[str]:
    """What is wrong with the controller files the run needs, from ``stat`` of each (item, stat) pair: sentences."""
    by_kind = {"key": [], "extra_files": [], "disk_key": []}
    for item, stat in stats:
        if item == key:
            if not stat.get("isreg"):
                by_kind["key"].append("nixos_anywhere_ssh_key %s is not a file" % item)
        elif item == extra_files:
            if not stat.get("isdir"):
                by_kind["extra_files"].append("nixos_anywhere_extra_files %s is not a directory" % item)
        elif not stat.get("isreg") and not stat.get("isfifo"):
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


def programs_found(lookups: Iterable[tuple[str, int, str]], executable: str, path: str) -> dict[str, Any]:
    """From ``command -v`` of each program ((item, rc, stdout) triples): the paths found, what is missing and what to do."""
    found = {item: stdout for item, rc, stdout in lookups if rc == 0 and stdout}
    missing = [item for item, rc, _stdout in lookups if rc != 0] + [item for item, rc, stdout in lookups if rc == 0 and not stdout]
    hints = ""
    if executable in missing:
        hints += "Install nixos-anywhere (nix profile install github:nix-community/nixos-anywhere) or set nixos_anywhere_executable. "
    if any(item.startswith("ssh") for item in missing):
        hints += "Install the OpenSSH client (apt-get install openssh-client). "
    if "timeout" in missing:
        hints += "Install GNU coreutils (timeout). "
    message = "%s not found on the controller (PATH=%s). %s" % (", ".join(missing), path, hints) if missing else ""
    return {"found": found, "missing": missing, "message": message, "real_ssh": found.get("ssh", "ssh"),
            "uses_ssh": "ssh" in [item for item, _rc, _stdout in lookups]}


def logins(settled: Mapping[str, Any], argv: Sequence[str], ssh_options: Sequence[str] | None, pin_host_key: object) -> dict[str, Any]:
    """How the role runs nixos-anywhere and its own ssh logins: the bounded command, ssh's options, whether pinned."""
    args = ["-T", "-p", str(settled["port"]), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    if settled["key"]:
        args += ["-i", settled["key"], "-o", "IdentitiesOnly=yes"]
    for option in ssh_options or []:
        args += ["-o", str(option)]
    return {"ssh_args": args, "command": ["timeout", "--kill-after=30", str(settled["timeout"])] + list(argv),
            "pinned": bool(settled["expected_keys"]) and _truth(pin_host_key)}


def would_run(host: str, command: Sequence[object], expected_keys: Sequence[str], pinned: bool, phases: Sequence[str],
              disks: Sequence[str] | None) -> str:
    """Check mode's line: the command that would run, whether the host key is checked, which disks are."""
    if expected_keys:
        keys = "(host key checked against %d expected key(s) first%s)" % (
            len(expected_keys), ", connections pinned to them" if pinned else "")
    else:
        keys = "(host key NOT checked: no expected host keys)"
    checked = ""
    if "disko" in phases:
        checked = "(disks checked first: %s)" % (", ".join(disks) if disks is not None else "those of the flake's disko configuration")
    return "Would run, for %s: %s %s %s" % (host, " ".join(shlex.quote(str(arg)) for arg in command), keys, checked)
