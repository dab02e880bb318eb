# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What goes wrong when nix runs: the errors every part of the package raises, and how to install Nix."""

from __future__ import annotations

from collections.abc import Iterable

INSTALL_HINT = (
    "Install Nix on the controller: on Debian or Ubuntu 'apt-get install nix-bin' (Nix 2.8 or newer; a first real "
    "install wants 2.18 or newer, docs/nix.md says why and how), "
    "on other systems the installer from https://nixos.org/download; or set the executable option "
    "to the path of the nix binary."
)


class NixError(Exception):
    """nix failed; ``log_tail`` holds the last lines of its log."""

    def __init__(self, msg: str, rc: int | None = None, log_tail: Iterable[str] | None = None,
                 cmd: Iterable[str] | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.rc = rc
        self.log_tail = list(log_tail or [])
        self.cmd = list(cmd or [])


class NixNotFound(NixError):
    """No nix executable."""


class NixTimeout(NixError):
    """nix ran out of time and was stopped."""
