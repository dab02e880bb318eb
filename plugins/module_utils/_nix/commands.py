# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Installables and the command lines of ``nix build`` and ``nix eval``: pure functions, nothing runs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from ansible_collections.nixie.metal.plugins.module_utils._nix.errors import NixError

T = TypeVar("T")

# Every call enables what the new CLI and flakes need, so no nix.conf change is required.
BASE_ARGS = ("--extra-experimental-features", "nix-command flakes", "--log-format", "internal-json")

# The three outputs of a NixOS configuration that boot it over the network.
NETBOOT_BUILD_ATTRS = (("kernel", "kernel"), ("initrd", "netbootRamdisk"), ("toplevel", "toplevel"))


# --- installables -----------------------------------------------------------------


def split_installable(installable: str) -> tuple[str, str]:
    """``FLAKE#ATTR`` -> (FLAKE, ATTR); ATTR is '' when there is no fragment."""
    flake, sep, attr = installable.partition("#")
    return flake, attr if sep else ""


def nixos_configuration(installer: str) -> str:
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


def configuration_installable(flake: str, attribute: str, path: str = "") -> str:
    """``FLAKE#nixosConfigurations.ATTRIBUTE[.PATH]``, ATTRIBUTE quoted when it needs to be (``"web.1"``)."""
    if _ATTR_NAME.match(attribute):
        name = attribute
    else:
        name = '"%s"' % attribute.replace("\\", "\\\\").replace('"', '\\"')
    return "%s#nixosConfigurations.%s%s" % (flake, name, "." + path if path else "")


def netboot_installables(installer: str) -> dict[str, str]:
    """Role -> installable for the kernel, netboot initrd and system of a NixOS configuration."""
    base = nixos_configuration(installer)
    return {role: "%s.config.system.build.%s" % (base, attr) for role, attr in NETBOOT_BUILD_ATTRS}


def unique(items: Iterable[T]) -> list[T]:
    """Items without repeats, first occurrence kept."""
    seen = set()
    result = []
    for item in items:
        if item not in seen:
            seen.add(item)
            result.append(item)
    return result


# --- command lines ---------------------------------------------------------------


def option_value(value: Any) -> str:
    """A Python value as nix.conf spells it (booleans true/false, lists space-separated)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return " ".join(option_value(v) for v in value)
    return str(value)


def common_flags(impure: bool = False, offline: bool = False, options: Mapping[str, Any] | None = None,
                 extra_args: Iterable[str] | None = None, override_inputs: Mapping[str, str] | None = None,
                 write_lock_file: bool = True) -> list[str]:
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


def build_command(nix: str, installables: Iterable[str], dry_run: bool = False, **flags: Any) -> list[str]:
    """argv of ``nix build --no-link --json`` for all installables at once."""
    argv = [nix, *BASE_ARGS, "build", "--no-link", "--json"]
    if dry_run:
        argv.append("--dry-run")
    return argv + common_flags(**flags) + list(installables)


def eval_command(nix: str, installable: str, apply: str | None = None, **flags: Any) -> list[str]:
    """argv of ``nix eval --json`` (evaluation only, nothing is built)."""
    argv = [nix, *BASE_ARGS, "eval", "--json"]
    if apply:
        argv += ["--apply", apply]
    return argv + common_flags(**flags) + [installable]
