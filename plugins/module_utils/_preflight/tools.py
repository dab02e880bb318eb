# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nix and nixos-anywhere on the controller: are they there, new enough, with what the run needs.

``nix_row`` and ``nixos_anywhere_row`` are the two verdicts (pure: they take what was read);
``read_nix`` and ``read_nixos_anywhere`` read it, each behind one function so that the
shared version checks of _nix can replace them in one place.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from ansible_collections.nixie.metal.plugins.module_utils import _nix
from ansible_collections.nixie.metal.plugins.module_utils._preflight import report

# reconciled with _nix at merge
MINIMUM_NIX = (2, 18)

# nixos-anywhere: --target-host came with 1.6.0 and --build-on with 1.7.0; the role passes the first
# always and the second when nixos_anywhere_build_on is not auto.
MINIMUM_NIXOS_ANYWHERE = (1, 6, 0)
MINIMUM_NIXOS_ANYWHERE_BUILD_ON = (1, 7, 0)

COMMAND_TIMEOUT = 20

# Asks the evaluator itself: builtins.getFlake exists only when flakes are enabled, and `nix eval`
# runs only with nix-command. The dummy store keeps it from opening (or creating) a real one.
NIX_FEATURES_ARGS = ("--extra-experimental-features", "nix-command flakes", "eval", "--store", "dummy://",
                     "--expr", "builtins ? getFlake")

NIX_HINT = ("Install Nix %s or newer: the installer from https://nixos.org/download (on Debian 12, whose nix-bin "
            "is 2.8, remove nix-bin first), then check that root's PATH finds it (sudo nix --version); "
            "or give a prebuilt installer (nixie_installer), which needs no Nix here" % ".".join(map(str, MINIMUM_NIX)))

NIXOS_ANYWHERE_HINT = ("install nixos-anywhere %s or newer through Nix (nix profile install "
                       "github:nix-community/nixos-anywhere), or set nixie_nixos_anywhere to its path")

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
# A Nix store path's name: 32 base-32 characters, then the derivation's name and version.
_STORE_NAME = re.compile(r"/[0-9a-df-np-sv-z]{32}-nixos-anywhere-(\d+\.\d+(?:\.\d+)?)(?:/|$)")


def version_tuple(text):
    """``"2.18.1"`` -> ``(2, 18, 1)``; None when ``text`` holds no version."""
    found = _VERSION.search(text or "")
    if found is None:
        return None
    return tuple(int(part) for part in found.groups() if part is not None)


def _spelled(version):
    return ".".join(str(part) for part in version)


def nix_version(output):
    """The Nix version that ``nix --version`` printed (the last version on its first line:
    ``nix (Nix) 2.8.0``, ``nix (Determinate Nix 3.6.2) 2.29.0``); None when there is none."""
    lines = (output or "").strip().splitlines()
    if not lines:
        return None
    found = _VERSION.findall(lines[0])
    if not found:
        return None
    return tuple(int(part) for part in found[-1] if part != "")


def nix_row(path, version_output, features_output, error=None):
    """The verdict on the controller's Nix.

    ``path`` is the nix found (None: none); ``version_output`` what ``nix --version`` printed;
    ``features_output`` what evaluating ``builtins ? getFlake`` with nix-command and flakes
    enabled printed (``true`` when this Nix has both); ``error`` why reading failed.
    """
    if path is None:
        return report.failed(report.NIX, "not found: %s" % (error or "no nix on PATH"), NIX_HINT)
    version = nix_version(version_output)
    if version is None:
        return report.failed(report.NIX, "%s printed no version (%s)" % (path, (error or version_output or "nothing").strip()[:200]),
                             NIX_HINT)
    if version < MINIMUM_NIX:
        return report.failed(report.NIX, "Nix %s at %s is older than %s" % (_spelled(version), path, _spelled(MINIMUM_NIX)),
                             NIX_HINT)
    if (features_output or "").strip() != "true":
        return report.failed(report.NIX, "Nix %s at %s cannot use nix-command and flakes (%s)"
                             % (_spelled(version), path, (error or features_output or "no answer").strip()[:200]),
                             "use a Nix built with flakes (the one from https://nixos.org/download is); " + NIX_HINT)
    return report.passed(report.NIX, "Nix %s at %s, nix-command and flakes usable" % (_spelled(version), path))


def _run(argv):
    """(stdout, error): the output of ``argv``, or why there is none."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return "", "%s did not answer within %d s" % (" ".join(argv), COMMAND_TIMEOUT)
    except OSError as exc:
        return "", "%s: %s" % (argv[0], exc.strerror or exc)
    if result.returncode != 0:
        return result.stdout, (result.stderr.strip() or "exit code %d" % result.returncode).splitlines()[-1]
    return result.stdout, None


def read_nix(executable=None):
    """``nix_row``'s verdict for the nix the run would use (found as nix_build finds it)."""
    try:
        path = _nix.find_nix(executable)
    except _nix.NixError as exc:
        return nix_row(None, None, None, str(exc).split(". ", maxsplit=1)[0])
    version_output, error = _run([path, "--version"])
    features_output = ""
    if error is None:
        features_output, error = _run([path] + list(NIX_FEATURES_ARGS))
    return nix_row(path, version_output, features_output, error)


# -- nixos-anywhere ------------------------------------------------------------------

def version_from_paths(paths):
    """The version in the first path that is inside a ``nixos-anywhere-X.Y.Z`` store path, or None."""
    for path in paths:
        found = _STORE_NAME.search(path)
        if found:
            return version_tuple(found.group(1))
    return None


def link_chain(path, limit=40):
    """``path`` and every path its symbolic links lead to, in order (a Nix profile's bin/ entry
    leads through the profile's generation and user environment to the package's store path)."""
    chain = [path]
    for dummy in range(limit):
        try:
            target = os.readlink(path)
        except OSError:
            break
        path = os.path.normpath(os.path.join(os.path.dirname(path), target))
        chain.append(path)
    # A link in a directory along the way (a profile's bin -> store path) shows only here.
    chain.append(os.path.realpath(chain[0]))
    return chain


def flags_in_help(text):
    """The version-telling options a ``nixos-anywhere --help`` lists."""
    return {flag for flag in ("--target-host", "--build-on") if re.search(r"(^|\s)%s(?![\w-])" % re.escape(flag), text or "")}


def nixos_anywhere_row(executable, path, version, help_flags, build_on=False, error=None):
    """The verdict on nixos-anywhere.

    ``path`` is where ``executable`` was found (None: not found); ``version`` what its store path
    names (None: it names none); ``help_flags`` the options its ``--help`` lists (None: not read);
    ``build_on`` whether the run passes ``--build-on``.
    """
    minimum = MINIMUM_NIXOS_ANYWHERE_BUILD_ON if build_on else MINIMUM_NIXOS_ANYWHERE
    needs = "--build-on" if build_on else "--target-host"
    hint = NIXOS_ANYWHERE_HINT % _spelled(minimum)
    if path is None:
        return report.failed(report.NIXOS_ANYWHERE, "%s not found%s" % (executable, " (%s)" % error if error else ""), hint)
    if version is not None:
        if version < minimum:
            return report.failed(report.NIXOS_ANYWHERE, "%s at %s is older than %s (the run passes %s)"
                                 % (_spelled(version), path, _spelled(minimum), needs), hint)
        return report.passed(report.NIXOS_ANYWHERE, "%s at %s" % (_spelled(version), path))
    if help_flags is not None and needs in help_flags:
        return report.passed(report.NIXOS_ANYWHERE, "%s (its path names no version; its --help lists %s: %s or newer)"
                             % (path, needs, _spelled(minimum)))
    why = error or ("its --help does not list %s" % needs if help_flags is not None else "its --help could not be read")
    return report.failed(report.NIXOS_ANYWHERE, "%s: version unknown, %s; %s or newer is needed" % (path, why, _spelled(minimum)), hint)


def read_nixos_anywhere(executable="nixos-anywhere", build_on=False):
    """``nixos_anywhere_row``'s verdict for ``executable`` (a name on PATH or a path).

    nixos-anywhere has no --version option (an unknown word is taken as the target host), so
    its version is read from its Nix store path, and failing that from the options its
    --help lists, which it prints without doing anything else.
    """
    path = shutil.which(executable) if os.sep not in executable else (
        executable if os.path.isfile(executable) and os.access(executable, os.X_OK) else None)
    if path is None:
        return nixos_anywhere_row(executable, None, None, None, build_on)
    version = version_from_paths(link_chain(os.path.abspath(path)))
    help_flags, error = None, None
    if version is None:
        help_text, error = _run([path, "--help"])
        help_flags = flags_in_help(help_text) if error is None else None
    return nixos_anywhere_row(executable, path, version, help_flags, build_on, error)
