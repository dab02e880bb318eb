# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding the controller's nix and judging whether its version and features are good enough for a run."""

from __future__ import annotations

import json
import os
import re
import shutil

from ansible_collections.nixie.metal.plugins.module_utils._nix.errors import INSTALL_HINT, NixNotFound

# Where Nix lives when it is not on the PATH a module sees (no login shell, no profile).
NIX_FALLBACK_DIRS = (
    "/nix/var/nix/profiles/default/bin",
    "/run/current-system/sw/bin",
    "~/.nix-profile/bin",
    "~/.local/state/nix/profile/bin",
)


def find_nix(executable: str | None = None, path: str | None = None) -> str:
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


def parse_nix_version(text: str | None) -> tuple[int, int, int] | None:
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


def enabled_features(config_text: str | None) -> set[str] | None:
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


def nix_problems(version_output: str | None, config_output: str | None = None) -> list[dict[str, str]]:
    """What is wrong with the controller's Nix for a nixie.metal run, and what to do.

    ``version_output``: what ``nix --version`` printed. ``config_output``: what
    ``nix show-config`` (before 2.20) or ``nix config show`` printed, run WITHOUT
    ``--extra-experimental-features`` (which would add to the setting it reports); on a
    Nix with nix-command off that call fails, and its error is the answer: pass it too.
    Returns a list of {check, severity, problem, fix}: severity ``error`` means the run
    cannot work, ``warning`` that a part of it may not (the message says which).
    """
    problems = []

    def add(check: str, severity: str, problem: str, fix: str) -> None:
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
