# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running ``nix build`` and ``nix eval`` on the site's flake: command lines, input overrides, log parsing, netboot artifacts.

Everything that decides something is a pure function (command lines, parsing nix's JSON
and its ``--log-format internal-json`` stream, mapping results to installables, the
netboot shortcut); :func:`run` is the one place that starts a process. No Ansible imports.

Every build and evaluation of a run (nix_build, nix_eval, host_status, the nixos_anywhere
role through them) overrides the flake's inputs the same way, :func:`run_overrides`: the
running collection's flake as ``nixie-metal``, and the user's ``override_inputs``.

How one run goes (see docs/installer.md):

1. With more than one installable, ``nix build --dry-run --json`` evaluates them and
   prints one entry per installable, in order: that gives each installable's derivation.
   (A real ``nix build --json`` lists its results sorted, not in the installables' order.)
2. One ``nix build --no-link --json`` builds every installable together. Its results are
   matched to installables by derivation path. If a derivation of step 1 is missing from
   step 2 the flake changed in between, and the run fails instead of mixing two evaluations.
3. For a NixOS installer, kernel file, initrd and kernel parameters are read from the
   built system (``toplevel/kernel``, ``toplevel/kernel-params``), which is a product of
   the same build. Check mode, which builds nothing, asks ``nix eval`` instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import deque

# Nix's activity and result types of the internal-json log format (src/libutil/logging.hh).
ACT_BUILD = 105
ACT_SUBSTITUTE = 108
RES_BUILD_LOG_LINE = 101

# Where Nix lives when it is not on the PATH a module sees (no login shell, no profile).
NIX_FALLBACK_DIRS = (
    "/nix/var/nix/profiles/default/bin",
    "/run/current-system/sw/bin",
    "~/.nix-profile/bin",
    "~/.local/state/nix/profile/bin",
)

INSTALL_HINT = (
    "Install Nix on the controller: on Debian or Ubuntu 'apt-get install nix-bin' (Nix 2.8 or newer; a first real "
    "install wants 2.18 or newer, docs/nix.md says why and how), "
    "on other systems the installer from https://nixos.org/download; or set the executable option "
    "to the path of the nix binary."
)

# Every call enables what the new CLI and flakes need, so no nix.conf change is required.
BASE_ARGS = ("--extra-experimental-features", "nix-command flakes", "--log-format", "internal-json")

# The three outputs of a NixOS configuration that boot it over the network.
NETBOOT_BUILD_ATTRS = (("kernel", "kernel"), ("initrd", "netbootRamdisk"), ("toplevel", "toplevel"))

# Evaluated in check mode only, when the system has not been built yet.
NETBOOT_EVAL_APPLY = "c: { kernelFile = c.system.boot.loader.kernelFile; kernelParams = c.boot.kernelParams; }"

# The site flake's input that receives the agent of the collection running the task.
AGENT_INPUT = "nixie-metal"
# What the collection's flake reads: only these go into the store, not a checkout's
# .venv or test data (a path: input copies its whole directory on every run).
AGENT_FLAKE_FILES = ("flake.nix", "flake.lock", "nix")

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_WILL = re.compile(r"^(?:these (\d+)|this) (derivations?|paths?) will be (built|fetched)")
_STORE_NAME = re.compile(r"^(?:.*/)?[0-9a-z]{32}-(.+?)(?:\.drv)?$")


class NixError(Exception):
    """nix failed; ``log_tail`` holds the last lines of its log."""

    def __init__(self, msg, rc=None, log_tail=None, cmd=None):
        super().__init__(msg)
        self.msg = msg
        self.rc = rc
        self.log_tail = list(log_tail or [])
        self.cmd = list(cmd or [])


class NixNotFound(NixError):
    """No nix executable."""


class NixTimeout(NixError):
    """nix ran out of time and was stopped."""


# --- finding nix -----------------------------------------------------------------


def find_nix(executable=None, path=None):
    """Path of the nix executable: ``executable`` if given (a path or a name), else from PATH
    or the usual install locations. Raises NixNotFound with an install hint."""
    if executable:
        if os.sep in executable:
            if os.path.isfile(executable) and os.access(executable, os.X_OK):
                return executable
            raise NixNotFound("nix executable %s does not exist or is not executable. %s" % (executable, INSTALL_HINT))
        found = shutil.which(executable, path=path)
        if found:
            return found
        raise NixNotFound("%s not found on PATH. %s" % (executable, INSTALL_HINT))
    found = shutil.which("nix", path=path)
    if found:
        return found
    for directory in NIX_FALLBACK_DIRS:
        candidate = os.path.join(os.path.expanduser(directory), "nix")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise NixNotFound(
        "nix not found on PATH nor in %s. %s" % (", ".join(NIX_FALLBACK_DIRS), INSTALL_HINT))


# --- is this Nix good enough? ------------------------------------------------------
# What needs which Nix, found out for docs/nix.md (say it there too when this changes).

# nixie.metal's own calls (nix build --json --dry-run, --log-format internal-json, nix eval
# --json/--raw/--apply, --override-input, --offline): tested on Debian 12's nix-bin 2.8.
NIX_MIN_COLLECTION = (2, 8)
# nixpkgs from 25.11 on (lib/minfeatures.nix), and nixos-anywhere installed with nix from
# its own flake, whose nixpkgs is nixpkgs-unstable. nixos-25.05 itself asks for 2.3.17.
NIX_MIN_NIXPKGS = (2, 18)
# `nix config show` (2.20) and `nix build --print-out-paths` (2.9): nixos-anywhere's script
# when it runs with the controller's nix (its package brings a nix of its own).
NIX_MIN_NIXOS_ANYWHERE_SCRIPT = (2, 20)
# Nix 2.31.0 and 2.31.1 refuse ssh://root@<IPv6 address> store URLs.
NIX_IPV6_SSH_BROKEN = ((2, 31, 0), (2, 31, 1))
NIX_FEATURES = ("nix-command", "flakes")

NIX_UPGRADE_HINT = (
    "On Debian or Ubuntu install Nix with the official installer (sh <(curl -L https://nixos.org/nix/install) "
    "--daemon) or the Determinate Systems nix-installer, or a newer release's nix-bin if it is %s or newer "
    "(apt-cache policy nix-bin); then make sure the nix on root's PATH is the new one (nix --version).")

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
_FEATURES_LINE = re.compile(r"^\s*experimental-features\s*=(.*)$", re.M)
_FEATURE_DISABLED = re.compile(r"experimental Nix feature '([a-z-]+)' is disabled")


def parse_nix_version(text):
    """``nix --version`` output -> (major, minor, patch), or None.

    Takes the last version number of the first line: ``nix (Nix) 2.8.0``,
    ``nix (Determinate Nix 3.6.2) 2.29.0``, ``nix (Lix, like Nix) 2.91.1``.
    """
    first = (text or "").strip().splitlines()[:1]
    found = _VERSION.findall(first[0]) if first else []
    if not found:
        return None
    major, minor, patch = found[-1]
    return int(major), int(minor), int(patch or 0)


def enabled_features(config_text):
    """The experimental features a ``nix show-config`` / ``nix config show`` output enables.

    Takes the text output, its ``--json`` output (names as strings), or the error of a
    ``nix show-config`` run on a Nix whose nix-command is off (then nothing is enabled
    that the error names). None when the output says nothing usable (Nix 2.8's ``--json``
    prints the features as numbers).
    """
    text = (config_text or "").strip()
    if not text:
        return None
    disabled = _FEATURE_DISABLED.findall(text)
    if disabled:
        return set()
    if text.startswith("{"):
        try:
            value = json.loads(text).get("experimental-features", {}).get("value")
        except (ValueError, AttributeError):
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return set(value)
        return None
    match = _FEATURES_LINE.search(text)
    return set(match.group(1).split()) if match else set()


def nix_problems(version_output, config_output=None):
    """What is wrong with the controller's Nix for a nixie.metal run, and what to do.

    ``version_output``: what ``nix --version`` printed. ``config_output``: what
    ``nix show-config`` (before 2.20) or ``nix config show`` printed, run WITHOUT
    ``--extra-experimental-features`` (which would add to the setting it reports); on a
    Nix with nix-command off that call fails, and its error is the answer: pass it too.
    Returns a list of {check, severity, problem, fix}: severity ``error`` means the run
    cannot work, ``warning`` that a part of it may not (the message says which).
    """
    problems = []

    def add(check, severity, problem, fix):
        problems.append({"check": check, "severity": severity, "problem": problem, "fix": fix})

    version = parse_nix_version(version_output)
    shown = ".".join(str(n) for n in version) if version else None
    if version is None:
        add("nix version", "error", "cannot read a version from nix --version: %r" % (version_output or "")[:200],
            "Check that the nix on PATH is Nix. " + NIX_UPGRADE_HINT % "2.18")
    elif version[:2] < NIX_MIN_COLLECTION:
        add("nix version", "error",
            "Nix %s is older than %d.%d, the oldest Nix nixie.metal's own nix build and nix eval calls are tested with"
            % ((shown,) + NIX_MIN_COLLECTION), NIX_UPGRADE_HINT % "2.18")
    elif version[:2] < NIX_MIN_NIXPKGS:
        add("nix version", "warning",
            "Nix %s is older than 2.18: it cannot evaluate nixpkgs 25.11 or newer (nixos-25.05, which the example "
            "flake uses, asks for 2.3.17) nor install nixos-anywhere from its flake; a nixos-anywhere installed "
            "another way brings its own Nix" % shown, NIX_UPGRADE_HINT % "2.18")
    if version and version[:2] >= NIX_MIN_COLLECTION and version in NIX_IPV6_SSH_BROKEN:
        add("nix version", "warning",
            "Nix %s refuses ssh://root@<IPv6 address>: installing a machine known only by an IPv6 address fails" % shown,
            "Use Nix 2.31.2 or newer, or give the machines IPv4 addresses.")

    features = enabled_features(config_output)
    if features is not None:
        missing = [f for f in NIX_FEATURES if f not in features]
        if missing:
            add("nix features", "warning",
                "experimental-features does not enable %s: nixie.metal and nixos-anywhere turn them on for their own "
                "calls, but nix commands you type (nix flake lock, nix profile install) fail without them"
                % " and ".join(missing),
                "Add 'experimental-features = nix-command flakes' to /etc/nix/nix.conf (or ~/.config/nix/nix.conf).")
    return problems


# --- installables -----------------------------------------------------------------


def split_installable(installable):
    """``FLAKE#ATTR`` -> (FLAKE, ATTR); ATTR is '' when there is no fragment."""
    flake, sep, attr = installable.partition("#")
    return flake, attr if sep else ""


def nixos_configuration(installer):
    """Normalise an installer reference to ``FLAKE#ATTR`` naming a NixOS configuration.

    ``./examples#installer`` is short for ``./examples#nixosConfigurations.installer``.
    """
    flake, attr = split_installable(installer)
    if not flake or not attr:
        raise NixError(
            "installer %r must name a NixOS configuration as FLAKE#ATTR, for example "
            "'./examples#nixosConfigurations.installer'" % installer)
    if "." not in attr and '"' not in attr:
        attr = "nixosConfigurations." + attr
    return "%s#%s" % (flake, attr)


# A NixOS configuration's name that needs no quotes in an attribute path.
_ATTR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_'-]*$")


def configuration_installable(flake, attribute, path=""):
    """``FLAKE#nixosConfigurations.ATTRIBUTE[.PATH]``, ATTRIBUTE quoted when it needs to be (``"web.1"``)."""
    if _ATTR_NAME.match(attribute):
        name = attribute
    else:
        name = '"%s"' % attribute.replace("\\", "\\\\").replace('"', '\\"')
    return "%s#nixosConfigurations.%s%s" % (flake, name, "." + path if path else "")


def netboot_installables(installer):
    """Role -> installable for the kernel, netboot initrd and system of a NixOS configuration."""
    base = nixos_configuration(installer)
    return {role: "%s.config.system.build.%s" % (base, attr) for role, attr in NETBOOT_BUILD_ATTRS}


def unique(items):
    """Items without repeats, first occurrence kept."""
    seen = set()
    result = []
    for item in items:
        if item not in seen:
            seen.add(item)
            result.append(item)
    return result


# --- command lines ---------------------------------------------------------------


def option_value(value):
    """A Python value as nix.conf spells it (booleans true/false, lists space-separated)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return " ".join(option_value(v) for v in value)
    return str(value)


def common_flags(impure=False, offline=False, options=None, extra_args=None, override_inputs=None, write_lock_file=True):
    """Flags shared by every nix call of a run."""
    flags = []
    if impure:
        flags.append("--impure")
    if offline:
        flags.append("--offline")
    if not write_lock_file:
        flags.append("--no-write-lock-file")
    for name, ref in (override_inputs or {}).items():
        flags += ["--override-input", str(name), str(ref)]
    for name, value in (options or {}).items():
        flags += ["--option", str(name), option_value(value)]
    flags += list(extra_args or [])
    return flags


def build_command(nix, installables, dry_run=False, **flags):
    """argv of ``nix build --no-link --json`` for all installables at once."""
    argv = [nix, *BASE_ARGS, "build", "--no-link", "--json"]
    if dry_run:
        argv.append("--dry-run")
    return argv + common_flags(**flags) + list(installables)


def eval_command(nix, installable, apply=None, **flags):
    """argv of ``nix eval --json`` (evaluation only, nothing is built)."""
    argv = [nix, *BASE_ARGS, "eval", "--json"]
    if apply:
        argv += ["--apply", apply]
    return argv + common_flags(**flags) + [installable]


# --- nix's output ---------------------------------------------------------------


def strip_ansi(text):
    return _ANSI.sub("", text)


def store_name(path):
    """'/nix/store/<hash>-hello-2.12.drv' -> 'hello-2.12'."""
    match = _STORE_NAME.match(path or "")
    return match.group(1) if match else path


class NixLog:
    """Reads nix's ``--log-format internal-json`` stderr, line by line.

    Keeps what was built and fetched, the error messages, the dry-run's lists of what
    would be built or fetched, and a bounded tail of readable lines for failures.
    """

    def __init__(self, keep=40):
        self.built = []
        self.fetched = []
        self.errors = []
        self.warnings = []
        self.will_build = []
        self.will_fetch = []
        self.tail = deque(maxlen=keep)
        self.build_lines = {}  # derivation path -> deque of its last log lines
        self._activity = {}  # activity id -> derivation path
        self._listing = None

    def feed_text(self, text):
        for line in (text or "").splitlines():
            self.feed(line)
        return self

    def feed(self, line):
        if line.startswith("@nix "):
            try:
                event = json.loads(line[5:])
            except ValueError:
                event = None
            if isinstance(event, dict):
                self._event(event)
                return
        self._message(strip_ansi(line))

    def _event(self, event):
        action = event.get("action")
        if action == "msg":
            level = event.get("level", 0)
            if level is None or level <= 2:
                for line in strip_ansi(str(event.get("msg", ""))).splitlines():
                    self._message(line)
        elif action == "start":
            kind = event.get("type")
            fields = event.get("fields") or []
            if kind == ACT_BUILD and fields:
                drv = str(fields[0])
                self.built.append(drv)
                self._activity[event.get("id")] = drv
                self.tail.append("building %s" % drv)
            elif kind == ACT_SUBSTITUTE and fields:
                path = str(fields[0])
                self.fetched.append(path)
                self.tail.append("fetching %s" % path)
        elif action == "result" and event.get("type") == RES_BUILD_LOG_LINE:
            fields = event.get("fields") or [""]
            drv = self._activity.get(event.get("id"), "")
            text = strip_ansi(str(fields[0])).rstrip()
            self.build_lines.setdefault(drv, deque(maxlen=10)).append(text)
            self.tail.append("%s> %s" % (store_name(drv) or "builder", text))

    def _message(self, line):
        if not line.strip():
            return
        match = _WILL.match(line)
        if match:
            self._listing = self.will_build if match.group(3) == "built" else self.will_fetch
            self.tail.append(line)
            return
        if self._listing is not None and line.startswith("  /"):
            self._listing.append(line.strip())
            return
        self._listing = None
        self.tail.append(line)
        stripped = line.strip()
        if stripped.startswith("error:"):
            self.errors.append(stripped)
        elif stripped.startswith("warning:"):
            self.warnings.append(stripped)
        elif self.errors and line.startswith((" ", "\t")):
            # continuation of a multi-line error (traces, "last N log lines")
            self.errors[-1] += "\n" + line.rstrip()

    def failure_message(self, what, rc):
        """One message for a failed nix call: nix's errors, then the failing builders' last lines."""
        parts = ["%s failed (exit %s)" % (what, rc)]
        if self.errors:
            parts.append("\n".join(self.errors))
        else:
            parts.append("\n".join(list(self.tail)[-15:]) or "nix printed nothing on stderr")
        for drv, lines in self.build_lines.items():
            if drv and any(drv in e for e in self.errors):
                parts.append("last log lines of %s:\n%s" % (store_name(drv), "\n".join(lines)))
        return ": ".join(parts[:2]) + "".join("\n" + p for p in parts[2:])


def parse_build_json(stdout):
    """``nix build --json`` stdout -> list of {drv_path, outputs}.

    Entries are ``{"drvPath": ..., "outputs": {"out": ...}}``; a plain store path is
    ``{"path": ...}`` and becomes ``{"drv_path": None, "outputs": {"out": path}}``.
    """
    text = (stdout or "").strip()
    if not text:
        return []
    # tolerate anything printed before the JSON document
    start = text.find("[")
    if start < 0:
        raise ValueError("nix printed no JSON list: %s" % text[:200])
    data = json.loads(text[start:])
    results = []
    for entry in data:
        if "drvPath" in entry:
            results.append({"drv_path": entry["drvPath"], "outputs": dict(entry.get("outputs") or {})})
        elif "path" in entry:
            results.append({"drv_path": None, "outputs": {"out": entry["path"]}})
        else:
            raise ValueError("unexpected entry in nix's JSON: %r" % (entry,))
    return results


def match_results(installables, planned, built):
    """Map each installable to its {drv_path, outputs}.

    ``planned``: the dry-run's entries, one per installable in order (None to skip the
    dry-run, allowed with a single installable). ``built``: the real build's entries, in
    any order. Raises NixError when the two disagree (the flake changed in between).
    """
    if planned is None:
        if len(installables) != 1 or len(built) != 1:
            raise NixError("cannot match %d results to %d installables without a dry run" % (len(built), len(installables)))
        return {installables[0]: built[0]}
    if len(planned) != len(installables):
        raise NixError("nix's dry run returned %d entries for %d installables" % (len(planned), len(installables)))
    by_drv = {}
    by_out = {}
    for entry in built:
        if entry["drv_path"]:
            by_drv[entry["drv_path"]] = entry
        for path in entry["outputs"].values():
            by_out[path] = entry
    result = {}
    for installable, plan in zip(installables, planned):
        entry = by_drv.get(plan["drv_path"]) if plan["drv_path"] else by_out.get(plan["outputs"].get("out"))
        if entry is None:
            raise NixError(
                "%s evaluated to %s before the build but the build did not produce it: the flake changed "
                "while nix was running. Run again." % (installable, plan["drv_path"] or plan["outputs"].get("out")))
        outputs = dict(plan["outputs"])
        outputs.update(entry["outputs"])
        result[installable] = {"drv_path": entry["drv_path"], "outputs": outputs}
    return result


# --- netboot artifacts ------------------------------------------------------------


def netboot_artifacts(kernel_out, ramdisk_out, toplevel, kernel_file, kernel_params, system=None):
    """What a network boot server needs from a NixOS installer's store paths."""
    params = [p for p in kernel_params if p]
    init = toplevel + "/init"
    result = {
        "kernel": "%s/%s" % (kernel_out, kernel_file),
        "initrd": ramdisk_out + "/initrd",
        "init": init,
        "toplevel": toplevel,
        "kernel_params": params,
        "cmdline": " ".join(["init=" + init] + params),
    }
    if system:
        result["system"] = system
    return result


def read_toplevel(toplevel):
    """(kernel file name, kernel parameters, system) read from a built NixOS system.

    NixOS writes ``kernel`` (a link to ``<kernel>/<kernelFile>``), ``kernel-params``
    and, in recent releases, ``system`` into every system's top-level directory.
    """
    kernel_link = os.readlink(os.path.join(toplevel, "kernel"))
    with open(os.path.join(toplevel, "kernel-params"), encoding="utf-8") as handle:
        params = handle.read().split()
    system = None
    system_file = os.path.join(toplevel, "system")
    if os.path.isfile(system_file):
        with open(system_file, encoding="utf-8") as handle:
            system = handle.read().strip() or None
    return os.path.basename(kernel_link), params, system


# --- input overrides ------------------------------------------------------------

_UNMATCHED_OVERRIDE = re.compile(r"^warning: the flag '--override-input (\S+) .*' does not match any input$")
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9/._-]+$")
_LOCK_NOT_WRITTEN = "warning: not writing modified lock file of flake"


def check_override_inputs(override_inputs):
    """override_inputs as given -> {input: flake ref}; NixError naming a bad entry."""
    checked = {}
    for name, ref in (override_inputs or {}).items():
        name = str(name)
        if not name or any(c.isspace() for c in name) or name.startswith("/") or name.endswith("/"):
            raise NixError(
                "override_inputs: %r is not an input name; give the name of an input of the flake, such as "
                "'nixpkgs' or 'disko/nixpkgs' for an input of an input" % name)
        if not isinstance(ref, str) or not ref.strip():
            raise NixError(
                "override_inputs: the flake reference of input %s must be a non-empty string, such as "
                "'path:/srv/nixpkgs' or 'github:NixOS/nixpkgs/nixos-25.05'" % name)
        checked[name] = ref.strip()
    return checked


def unmatched_overrides(warnings):
    """Input names of --override-input flags that nix said match no input of the flake."""
    names = set()
    for warning in warnings:
        match = _UNMATCHED_OVERRIDE.match(warning)
        if match:
            names.add(match.group(1))
    return names


def settle_overrides(user, automatic, warnings):
    """What the overrides did, from nix's warnings -> (used, warnings to show).

    A user's override that matches no input is an error (a typo would otherwise build
    something else); the automatic agent override of a flake without that input is
    dropped silently. Nix does not write flake.lock while inputs are overridden and
    says so on every call: that warning is expected and not shown.
    """
    unmatched = unmatched_overrides(warnings)
    wrong = sorted(name for name in user if name in unmatched)
    if wrong:
        raise NixError(
            "override_inputs names %s, which the flake has no input of (nix: does not match any input). "
            "Check the names against the flake's inputs (nix flake metadata FLAKE)." % ", ".join(wrong))
    used = dict(user)
    used.update({name: ref for name, ref in automatic.items() if name not in unmatched and name not in user})
    shown = [w for w in warnings if not _UNMATCHED_OVERRIDE.match(w)]
    if used or automatic:
        shown = [w for w in shown if not w.startswith(_LOCK_NOT_WRITTEN)]
    return used, shown


@contextlib.contextmanager
def agent_flake_copy(root):
    """A temporary directory holding the flake files of the collection at ``root``.

    Yields its ``path:`` flake reference (None when ``root`` is None) and removes it
    afterwards: nix copies it into the store, where the installer refers to it.
    """
    if root is None:
        yield None
        return
    if not os.path.isfile(os.path.join(root, "flake.nix")):
        raise NixError(
            "agent_flake %s has no flake.nix: give the root directory of the nixie.metal collection "
            "(the one holding flake.nix and nix/)" % root)
    # Nix takes neither percent-escapes nor characters beyond ASCII in a path: URL.
    base = tempfile.gettempdir()
    if not _PLAIN_PATH.match(base):
        base = "/tmp"
    work = tempfile.mkdtemp(prefix="nixie-agent-flake-", dir=base)
    try:
        target = os.path.join(work, "nixie-metal")
        os.mkdir(target)
        for name in AGENT_FLAKE_FILES:
            source = os.path.join(root, name)
            if os.path.isdir(source):
                shutil.copytree(source, os.path.join(target, name), symlinks=False)
            elif os.path.isfile(source):
                shutil.copy2(source, os.path.join(target, name))
        yield "path:" + target
    except OSError as exc:
        raise NixError("cannot copy the flake of agent_flake %s: %s" % (root, exc)) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


class RunOverrides:
    """The input overrides of one run: the user's, and the agent's (a temporary copy of the collection's flake).

    ``flags`` is what every nix call of the run gets as ``--override-input``; after a call,
    :meth:`settle` reads nix's warnings, :meth:`shown` says which overrides were used (the agent
    as the directory it was copied from) and :meth:`show_command` puts that directory back
    into a command line in place of the copy, which is gone once the run ends.
    """

    def __init__(self, user, automatic, agent_flake):
        self.user = dict(user)
        self.automatic = dict(automatic)
        self.agent_flake = agent_flake

    @property
    def flags(self):
        return dict(self.automatic, **self.user)

    def settle(self, warnings):
        """(used overrides, warnings to show); NixError when a user's override matches no input."""
        return settle_overrides(self.user, self.automatic, warnings)

    def shown(self, used):
        return {name: ("path:" + self.agent_flake if name in self.automatic else ref) for name, ref in used.items()}

    def show_command(self, argv):
        copies = set(self.automatic.values())
        return [("path:" + self.agent_flake) if arg in copies else arg for arg in argv]


@contextlib.contextmanager
def run_overrides(override_inputs=None, agent_flake=None):
    """The overrides of a run (:class:`RunOverrides`), the same for every evaluation and build of the site's flake.

    ``override_inputs``: the user's {input: flake reference}, checked. ``agent_flake``: root of
    the nixie.metal collection whose flake becomes the input ``nixie-metal``, copied for the
    duration of the run (unless ``override_inputs`` names that input, or it is None).
    """
    user = check_override_inputs(override_inputs)
    if AGENT_INPUT in user:
        agent_flake = None
    with agent_flake_copy(agent_flake) as agent_ref:
        yield RunOverrides(user, {AGENT_INPUT: agent_ref} if agent_ref else {}, agent_flake)


# --- processes ---------------------------------------------------------------------


def run(argv, cwd=None, env=None, timeout=None):
    """Run argv in its own process group; (rc, stdout, stderr) as text.

    On timeout the whole group gets SIGTERM, then SIGKILL after 10 s, and NixTimeout
    carries what nix had printed.
    """
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True)
    except FileNotFoundError as exc:
        raise NixNotFound("cannot run %s: %s. %s" % (argv[0], exc.strerror, INSTALL_HINT), cmd=argv) from None
    except OSError as exc:
        raise NixError("cannot run %s: %s" % (argv[0], exc), cmd=argv) from None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc, signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        log = NixLog().feed_text(stderr.decode("utf-8", "replace"))
        what = " ".join([os.path.basename(argv[0])] + [a for a in argv[1:] if a in ("build", "eval")])
        tail = "\n".join(list(log.tail)[-10:])
        raise NixTimeout(
            "%s ran out of time after %s seconds and was stopped%s" % (what, timeout, (": last log lines:\n" + tail) if tail else ""),
            rc=proc.returncode, log_tail=log.tail, cmd=argv) from None
    finally:
        if proc.poll() is None:
            _kill_group(proc, signal.SIGKILL)
            proc.wait()
    return proc.returncode, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")


def _kill_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


class Deadline:
    """The time left of one timeout shared by several nix calls (None: no limit)."""

    def __init__(self, seconds):
        self.end = None if not seconds else time.monotonic() + seconds

    def left(self):
        if self.end is None:
            return None
        return max(0.001, self.end - time.monotonic())


# --- one module run ----------------------------------------------------------------


def build(nix, installables=(), installers=None, check_mode=False, cwd=None, timeout=None, env=None,
          runner=run, override_inputs=None, agent_flake=None, **flags):
    """Build (or, in check mode, evaluate) installables and installers in one nix build call.

    ``installers``: key -> NixOS configuration reference; each key gets the netboot
    artifacts of that configuration. ``override_inputs`` and ``agent_flake``: see
    :func:`run_overrides`. Returns a dict shaped like the module's result.
    """
    if cwd and not os.path.isdir(cwd):
        raise NixError("chdir %s is not a directory" % cwd)
    with run_overrides(override_inputs, agent_flake) as overrides:
        result = _build(nix, installables, installers, check_mode, cwd, timeout, env, runner,
                        dict(flags, override_inputs=overrides.flags))
        used, result["warnings"] = overrides.settle(result["warnings"])
        result["override_inputs"] = overrides.shown(used)
        result["cmd"] = overrides.show_command(result["cmd"])
    return result


def evaluate(nix, installable, apply=None, cwd=None, timeout=None, env=None, runner=run, override_inputs=None,
             agent_flake=None, **flags):
    """``nix eval --json`` of one installable with the run's overrides; nothing is built, no lock file written.

    Returns {value, cmd, override_inputs, warnings}. Raises NixError with nix's errors.
    """
    if cwd and not os.path.isdir(cwd):
        raise NixError("chdir %s is not a directory" % cwd)
    with run_overrides(override_inputs, agent_flake) as overrides:
        argv = eval_command(nix, installable, apply=apply, write_lock_file=False,
                            **dict(flags, override_inputs=overrides.flags))
        try:
            rc, out, err = runner(argv, cwd=cwd, env=env, timeout=timeout)
        except NixTimeout as exc:
            exc.cmd = overrides.show_command(argv)
            raise
        log = NixLog().feed_text(err)
        if rc != 0:
            raise NixError(log.failure_message("nix eval of %s" % installable, rc), rc=rc, log_tail=log.tail,
                           cmd=overrides.show_command(argv))
        try:
            value = json.loads(out)
        except ValueError:
            raise NixError("nix eval of %s printed no JSON value: %r" % (installable, out[:200]),
                           cmd=overrides.show_command(argv)) from None
        used, warnings = overrides.settle(log.warnings)
        # The lock file is left alone on purpose (--no-write-lock-file): saying so is no news.
        warnings = [w for w in warnings if not w.startswith(_LOCK_NOT_WRITTEN)]
        return {"value": value, "cmd": overrides.show_command(argv), "override_inputs": overrides.shown(used),
                "warnings": warnings}


def _build(nix, installables, installers, check_mode, cwd, timeout, env, runner, flags):
    deadline = Deadline(timeout)
    installers = dict(installers or {})
    roles = {key: netboot_installables(ref) for key, ref in installers.items()}
    wanted = unique(list(installables) + [i for r in roles.values() for i in r.values()])
    if not wanted:
        raise NixError("nothing to build: give installables or an installer")

    def call(argv, what):
        try:
            rc, out, err = runner(argv, cwd=cwd, env=env, timeout=deadline.left())
        except NixTimeout as exc:
            exc.msg = "%s ran out of time (timeout %s seconds) and was stopped%s" % (what, timeout, exc.msg.partition(" and was stopped")[2])
            raise
        log = NixLog().feed_text(err)
        if rc != 0:
            raise NixError(log.failure_message(what, rc), rc=rc, log_tail=log.tail, cmd=argv)
        return out, log

    planned = None
    plan_log = None
    if check_mode or len(wanted) > 1:
        out, plan_log = call(build_command(nix, wanted, dry_run=True, **flags), "nix build --dry-run")
        planned = parse_build_json(out)
    cmd = build_command(nix, wanted, dry_run=check_mode, **flags)
    if check_mode:
        mapped = match_results(wanted, planned, planned)
        built, fetched = plan_log.will_build, plan_log.will_fetch
        warnings = plan_log.warnings
    else:
        out, log = call(cmd, "nix build")
        mapped = match_results(wanted, planned, parse_build_json(out))
        built, fetched = log.built, log.fetched
        warnings = unique((plan_log.warnings if plan_log else []) + log.warnings)

    result = {
        "changed": bool(built or fetched),
        "cmd": cmd,
        "outputs": {i: mapped[i]["outputs"] for i in wanted},
        "drv_paths": {i: mapped[i]["drv_path"] for i in wanted},
        "built": built,
        "fetched": fetched,
        "warnings": warnings,
        "artifacts": {},
    }
    for key, role in roles.items():
        paths = {name: mapped[inst]["outputs"].get("out") for name, inst in role.items()}
        result["artifacts"][key] = _installer_artifacts(
            nix, installers[key], paths, check_mode, lambda argv: call(argv, "nix eval")[0], flags)
    return result


def _installer_artifacts(nix, installer, paths, check_mode, evaluate, flags):
    toplevel = paths["toplevel"]
    if os.path.isdir(toplevel):
        kernel_file, params, system = read_toplevel(toplevel)
    elif check_mode:
        out = evaluate(eval_command(nix, nixos_configuration(installer) + ".config", apply=NETBOOT_EVAL_APPLY, **flags))
        data = json.loads(out)
        kernel_file, params, system = data["kernelFile"], data["kernelParams"], None
    else:
        raise NixError("nix built %s but %s does not exist" % (installer, toplevel))
    return netboot_artifacts(paths["kernel"], paths["initrd"], toplevel, kernel_file, params, system)
