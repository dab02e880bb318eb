# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which nixos-anywhere the controller has, and whether it is recent enough for a command line.

nixos-anywhere has no ``--version`` option (1.13.0): its version is read from the Nix store path
of its package, which the package's wrapper script names too. The preflight uses
:func:`check_version` as the role does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

#: The options of the role's command lines that not every nixos-anywhere knows, with
#: the release that added them, oldest requirement first.
MINIMUM_VERSIONS = (("--target-host", "1.6.0"), ("--build-on", "1.7.0"))

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
