# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One row of the preflight, and the table of all rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Container, Iterable, Sequence
from typing import Any

# Stable row names: the playbook's nixie_preflight_ignore and the tests name rows by them.
NIX = "nix"
NIXOS_ANYWHERE = "nixos-anywhere"
SSH_CLIENT = "ssh-client"
SSH_KEY = "ssh-key"
IPXE = "ipxe"
INTERFACE = "interface"
PORTS = "ports"
FIREWALL = "firewall"
SITE_DHCP = "site-dhcp"
ROW_NAMES = (NIX, NIXOS_ANYWHERE, SSH_CLIENT, SSH_KEY, IPXE, INTERFACE, PORTS, FIREWALL, SITE_DHCP)


@dataclasses.dataclass(frozen=True)
class Row:
    """``ok`` with what was found in ``detail``; a failing row says in ``hint`` what to do, and so
    does a row that passes with a warning (the run can go on, a part of it may not work)."""

    name: str
    ok: bool
    detail: str
    hint: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def passed(name: str, detail: str) -> Row:
    return Row(name, True, detail)


def warned(name: str, detail: str, hint: str) -> Row:
    return Row(name, True, detail, hint)


def failed(name: str, detail: str, hint: str) -> Row:
    return Row(name, False, detail, hint)


def failing(rows: Iterable[Row], ignore: Container[str] = ()) -> list[Row]:
    """The rows that fail and are not in ``ignore``."""
    return [row for row in rows if not row.ok and row.name not in ignore]


def table(rows: Sequence[Row], ignore: Container[str] = ()) -> list[str]:
    """The rows as lines: name, ok/warn/FAIL, what was found; under a failing or warning row, what to do."""
    width = max([len(row.name) for row in rows] + [4])
    lines = []
    for row in rows:
        if row.ok:
            status = "warn" if row.hint else "ok"
        else:
            status = "ignored" if row.name in ignore else "FAIL"
        lines.append("%-*s  %-7s %s" % (width, row.name, status, row.detail))
        if row.hint:
            lines.append("%-*s  %-7s -> %s" % (width, "", "", row.hint))
    return lines
