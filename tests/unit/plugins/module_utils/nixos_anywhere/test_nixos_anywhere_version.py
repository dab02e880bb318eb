# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which nixos-anywhere the controller has (plugins/module_utils/_nixos_anywhere/version.py)."""

from __future__ import annotations

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._nixos_anywhere import version
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.nixos_anywhere.role_samples import WRAPPER


@pytest.mark.parametrize("text, expected", [
    (WRAPPER, "1.13.0"),
    ("/nix/store/abc-nixos-anywhere-1.6.0/bin/nixos-anywhere\n", "1.6.0"),
    ("nixos-anywhere 1.14.2\n", "1.14.2"),
    ("nixos-anywhere version 2.0\n", "2.0.0"),
    ("1.9.1\n", "1.9.1"),
    ("/home/me/src/nixos-anywhere/src/nixos-anywhere.sh\n#!/usr/bin/env bash\n", None),
    ("aborted: --flake or --store-paths must be set\n", None),
    ("/tmp/bin/nixos-anywhere\n#!/usr/bin/python\n# parses it as nixos-anywhere 1.13.0's parseArgs does\n", None),
    ("/nix/store/abc-nixos-anywhere-1.13.0-unstable-2025-01-01/bin/nixos-anywhere\n", "1.13.0"),
    ("", None),
])
def test_parse_version(text, expected):
    assert version.parse_version(text) == expected


def test_version_needs_follow_the_options():
    assert version.minimum_version(["nixos-anywhere", "--target-host", "root@h"]) == ("1.6.0", {"--target-host": "1.6.0"})
    assert version.minimum_version(["--target-host", "x", "--build-on", "local"])[0] == "1.7.0"
    assert version.minimum_version(["--flake", "f#a", "h"]) == (None, {})


def test_check_version_too_old_names_the_option_and_the_minimum():
    check = version.check_version("/nix/store/abc-nixos-anywhere-1.6.0/bin/nixos-anywhere", ["--target-host", "r@h", "--build-on", "local"], "/x/na")
    assert check["ok"] is False and check["version"] == "1.6.0" and check["minimum"] == "1.7.0"
    assert "--build-on needs 1.7.0" in check["message"] and "/x/na is nixos-anywhere 1.6.0" in check["message"]


def test_check_version_recent_enough_and_unknown():
    assert version.check_version(WRAPPER, ["--target-host", "r@h", "--build-on", "local"])["ok"] is True
    assert version.check_version("/nix/store/abc-nixos-anywhere-1.5.2/bin/nixos-anywhere", ["--target-host", "r@h"])["ok"] is False
    unknown = version.check_version("/usr/local/bin/nixos-anywhere\n#!/bin/sh\n", ["--target-host", "r@h"])
    assert unknown["ok"] is None and "needs 1.6.0 or later" in unknown["message"]
