# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nix and nixos-anywhere on the controller: are they there, and new enough for the run.

The verdicts are the ones the rest of the collection uses (``_nix.version.nix_problems`` and
``_nixos_anywhere.check_version``); ``nix_row`` and ``nixos_anywhere_row`` turn them into rows
(pure: they take what was read), ``read_nix`` and ``read_nixos_anywhere`` read it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable

from ansible_collections.nixie.metal.plugins.module_utils._nixos_anywhere import version as _nixos_anywhere
from ansible_collections.nixie.metal.plugins.module_utils._nix import errors as nix_errors, version as nix_version
from ansible_collections.nixie.metal.plugins.module_utils._preflight import report

COMMAND_TIMEOUT = 20

# The options of the role's command line that need a minimum version (docs/nix.md, the role's README).
TARGET_HOST_ARGV = ("--target-host",)
BUILD_ON_ARGV = ("--target-host", "--build-on")

# The first bytes of the executable: the package's wrapper script names its own store path.
EXECUTABLE_HEAD = 16384

NIX_MISSING_HINT = ("install Nix (docs/nix.md: the official installer, or Debian's nix-bin for the collection's own "
                    "calls); a prebuilt installer (nixie_installer) with nixie_build=flake needs no Nix here")

NIXOS_ANYWHERE_HINT = ("install nixos-anywhere %s or newer through Nix (nix profile install "
                       "github:nix-community/nixos-anywhere), or set nixie_nixos_anywhere to its path")


def nix_row(path: str | None, version_output: str | None, config_output: str | None, error: str | None = None) -> report.Row:
    """The verdict on the controller's Nix.

    ``path`` is the nix found (None: none); ``version_output`` what ``nix --version`` printed;
    ``config_output`` what ``nix show-config`` printed (its error too, on a Nix whose nix-command
    is off); ``error`` why ``nix --version`` could not be read.
    """
    if path is None:
        return report.failed(report.NIX, "not found: %s" % (error or "no nix on PATH"), NIX_MISSING_HINT)
    if error is not None:
        return report.failed(report.NIX, "%s --version failed: %s" % (path, error.strip()[:200]), NIX_MISSING_HINT)
    problems = nix_version.nix_problems(version_output, config_output)
    version = nix_version.parse_nix_version(version_output)
    found = "Nix %s at %s" % (".".join(str(part) for part in version), path) if version else path
    errors = [problem for problem in problems if problem["severity"] == "error"]
    if errors:
        return report.failed(report.NIX, "%s: %s" % (found, "; ".join(p["problem"] for p in errors)), errors[0]["fix"])
    if problems:
        return report.warned(report.NIX, "%s: %s" % (found, "; ".join(p["problem"] for p in problems)),
                             " ".join(_unique(p["fix"] for p in problems)))
    return report.passed(report.NIX, found)


def _unique(items: Iterable[str]) -> list[str]:
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _run(argv: list[str]) -> tuple[str, str, str | None]:
    """(stdout, stderr, error): what ``argv`` printed, and why it failed (None when it did not)."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return "", "", "%s did not answer within %d s" % (" ".join(argv), COMMAND_TIMEOUT)
    except OSError as exc:
        return "", "", "%s: %s" % (argv[0], exc.strerror or exc)
    if result.returncode != 0:
        return result.stdout, result.stderr, (result.stderr.strip() or "exit code %d" % result.returncode).splitlines()[-1]
    return result.stdout, result.stderr, None


def read_nix(executable: str | None = None) -> report.Row:
    """``nix_row``'s verdict for the nix the run would use (found as nix_build finds it)."""
    try:
        path = nix_version.find_nix(executable)
    except nix_errors.NixError as exc:
        return nix_row(None, None, None, str(exc).split(". ", maxsplit=1)[0])
    version_output, dummy, error = _run([path, "--version"])
    config_output = ""
    if error is None:
        # Without --extra-experimental-features, which would add to the setting it reports; on a Nix whose
        # nix-command is off it fails, and its error says so (nix_problems reads that too).
        stdout, stderr, dummy = _run([path, "show-config"])
        config_output = stdout + stderr
    return nix_row(path, version_output, config_output, error)


# -- nixos-anywhere ------------------------------------------------------------------

def nixos_anywhere_row(executable: str, path: str | None, head: str, build_on: bool = False) -> report.Row:
    """The verdict on nixos-anywhere.

    ``path`` is where ``executable`` resolves to (None: not found); ``head`` that path and the
    first bytes of the file, as the role reads them; ``build_on`` whether the run passes --build-on.
    """
    verdict = _nixos_anywhere.check_version(head, BUILD_ON_ARGV if build_on else TARGET_HOST_ARGV, executable)
    hint = NIXOS_ANYWHERE_HINT % verdict["minimum"]
    if path is None:
        return report.failed(report.NIXOS_ANYWHERE, "%s not found" % executable, hint)
    if verdict["ok"] is None:
        return report.warned(report.NIXOS_ANYWHERE, "%s: version unknown" % path, verdict["message"])
    if not verdict["ok"]:
        return report.failed(report.NIXOS_ANYWHERE, "%s at %s is too old" % (verdict["version"], path), verdict["message"])
    return report.passed(report.NIXOS_ANYWHERE, "%s at %s" % (verdict["version"], path))


def read_nixos_anywhere(executable: str = "nixos-anywhere", build_on: bool = False) -> report.Row:
    """``nixos_anywhere_row``'s verdict for ``executable`` (a name on PATH or a path).

    nixos-anywhere has no --version option (an unknown word is taken as the target host), so
    its version is read from its Nix store path: where its executable resolves to, and what the
    package's wrapper script names.
    """
    found = shutil.which(executable) if os.sep not in executable else (
        executable if os.path.isfile(executable) and os.access(executable, os.X_OK) else None)
    if found is None:
        return nixos_anywhere_row(executable, None, "", build_on)
    path = os.path.realpath(found)
    try:
        with open(path, "rb") as handle:
            head = handle.read(EXECUTABLE_HEAD).decode("utf-8", "replace")
    except OSError:
        head = ""
    return nixos_anywhere_row(executable, path, path + "\n" + head, build_on)
