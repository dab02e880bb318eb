# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decisions of the nixos_anywhere role (moving into a package: command.py holds them all for now)."""

from __future__ import annotations

from ansible_collections.nixie.metal.plugins.module_utils._nixos_anywhere.command import (  # noqa: F401
    check_version, disk_check, logins, minimum_version, missing_files, outcome, parse_version, plan, programs_found,
    public_keys, settle, would_run)
