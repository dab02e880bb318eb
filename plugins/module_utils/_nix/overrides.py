# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flake input overrides of a run: the user's ``override_inputs`` and a temporary copy of the collection's flake as ``nixie-metal``."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._nix.errors import NixError

# The site flake's input that receives the agent of the collection running the task.
AGENT_INPUT = "nixie-metal"
# What the collection's flake reads: only these go into the store, not a checkout's
# .venv or test data (a path: input copies its whole directory on every run).
AGENT_FLAKE_FILES = ("flake.nix", "flake.lock", "nix")

# --- input overrides ------------------------------------------------------------

_UNMATCHED_OVERRIDE = re.compile(r"^warning: the flag '--override-input (\S+) .*' does not match any input$")
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9/._-]+$")
LOCK_NOT_WRITTEN = "warning: not writing modified lock file of flake"


def check_override_inputs(override_inputs: Mapping[Any, Any] | None) -> dict[str, str]:
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


def unmatched_overrides(warnings: Iterable[str]) -> set[str]:
    """Input names of --override-input flags that nix said match no input of the flake."""
    names = set()
    for warning in warnings:
        match = _UNMATCHED_OVERRIDE.match(warning)
        if match:
            names.add(match.group(1))
    return names


def settle_overrides(user: Mapping[str, str], automatic: Mapping[str, str],
                     warnings: Sequence[str]) -> tuple[dict[str, str], list[str]]:
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
        shown = [w for w in shown if not w.startswith(LOCK_NOT_WRITTEN)]
    return used, shown


@contextlib.contextmanager
def agent_flake_copy(root: str | None) -> Iterator[str | None]:
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

    def __init__(self, user: Mapping[str, str], automatic: Mapping[str, str], agent_flake: str | None) -> None:
        self.user = dict(user)
        self.automatic = dict(automatic)
        self.agent_flake = agent_flake

    @property
    def flags(self) -> dict[str, str]:
        return dict(self.automatic, **self.user)

    def settle(self, warnings: Sequence[str]) -> tuple[dict[str, str], list[str]]:
        """(used overrides, warnings to show); NixError when a user's override matches no input."""
        return settle_overrides(self.user, self.automatic, warnings)

    def shown(self, used: Mapping[str, str]) -> dict[str, str]:
        return {name: ("path:" + self.agent_flake if name in self.automatic else ref) for name, ref in used.items()}

    def show_command(self, argv: Iterable[str]) -> list[str]:
        copies = set(self.automatic.values())
        return [("path:" + self.agent_flake) if arg in copies else arg for arg in argv]


@contextlib.contextmanager
def run_overrides(override_inputs: Mapping[Any, Any] | None = None, agent_flake: str | None = None) -> Iterator[RunOverrides]:
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
