# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_nix.version: finding nix, and whether its version and features are good enough.

Outputs captured from Debian 12's nix 2.8.0; the version lines of other Nixes as they print them.
"""

from __future__ import annotations

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._nix import errors as nix_errors, version as nix_version


def test_find_nix(tmp_path, monkeypatch):
    monkeypatch.setattr(nix_version, "NIX_FALLBACK_DIRS", (str(tmp_path / "profile"),))
    with pytest.raises(nix_errors.NixNotFound, match="apt-get install nix-bin"):
        nix_version.find_nix(path=str(tmp_path))
    with pytest.raises(nix_errors.NixNotFound, match="does not exist"):
        nix_version.find_nix(str(tmp_path / "nix"))
    (tmp_path / "profile").mkdir()
    fake = tmp_path / "profile" / "nix"
    fake.write_text("#!/bin/sh\n", encoding="utf-8")
    fake.chmod(0o755)
    assert nix_version.find_nix(path=str(tmp_path)) == str(fake)
    assert nix_version.find_nix(str(fake)) == str(fake)
    assert nix_version.find_nix("nix", path=str(tmp_path / "profile")) == str(fake)


NIX_28_SHOW_CONFIG_OFF = ("error: experimental Nix feature 'nix-command' is disabled; "
                          "use '--extra-experimental-features nix-command' to override\n")


NIX_28_SHOW_CONFIG_ON = ("eval-cache = true\nexperimental-features = flakes nix-command\nextra-platforms = i686-linux\n"
                         "system = x86_64-linux\n")


@pytest.mark.parametrize("text, version", [
    ("nix (Nix) 2.8.0\n", (2, 8, 0)),
    ("nix (Nix) 2.24.10\n", (2, 24, 10)),
    ("nix (Determinate Nix 3.6.2) 2.29.0\n", (2, 29, 0)),
    ("nix (Lix, like Nix) 2.91.1\nSystem type: x86_64-linux\n", (2, 91, 1)),
    ("nix (Nix) 2.18\n", (2, 18, 0)),
    ("", None),
    ("command not found", None),
])
def test_parse_nix_version(text, version):
    assert nix_version.parse_nix_version(text) == version


def checks(problems):
    return [(p["check"], p["severity"]) for p in problems]


def test_debian_12_nix_bin_is_enough_for_the_collection_but_old_for_nixpkgs():
    problems = nix_version.nix_problems("nix (Nix) 2.8.0\n", NIX_28_SHOW_CONFIG_OFF)
    assert checks(problems) == [("nix version", "warning"), ("nix features", "warning")]
    version, features = problems
    assert "Nix 2.8.0 is older than 2.18" in version["problem"] and "nixpkgs 25.11" in version["problem"]
    assert "nixos.org/nix/install" in version["fix"] and "nix-installer" in version["fix"]
    assert "nix-command and flakes" in features["problem"]
    assert "experimental-features = nix-command flakes" in features["fix"] and "/etc/nix/nix.conf" in features["fix"]


def test_too_old_for_the_collection():
    problems = nix_version.nix_problems("nix (Nix) 2.7.0\n", NIX_28_SHOW_CONFIG_ON)
    assert checks(problems) == [("nix version", "error")]
    assert "older than 2.8" in problems[0]["problem"] and "apt-cache policy nix-bin" in problems[0]["fix"]


def test_unreadable_version_is_an_error():
    problems = nix_version.nix_problems("something else", None)
    assert checks(problems) == [("nix version", "error")]
    assert "cannot read a version" in problems[0]["problem"]


@pytest.mark.parametrize("version", ["2.18.1", "2.24.10", "2.31.2", "2.34.0"])
def test_recent_nix_with_features_has_no_problem(version):
    assert nix_version.nix_problems("nix (Nix) %s\n" % version, NIX_28_SHOW_CONFIG_ON) == []


@pytest.mark.parametrize("version", ["2.31.0", "2.31.1"])
def test_nix_that_refuses_ipv6_ssh_urls(version):
    problems = nix_version.nix_problems("nix (Nix) %s\n" % version, NIX_28_SHOW_CONFIG_ON)
    assert checks(problems) == [("nix version", "warning")]
    assert "ssh://root@<IPv6 address>" in problems[0]["problem"] and "2.31.2" in problems[0]["fix"]


@pytest.mark.parametrize("config, features", [
    (NIX_28_SHOW_CONFIG_ON, {"flakes", "nix-command"}),
    (NIX_28_SHOW_CONFIG_OFF, set()),
    ("experimental-features = nix-command\n", {"nix-command"}),
    ("experimental-features =\n", set()),
    ("system = x86_64-linux\n", set()),
    ('{"experimental-features": {"value": ["flakes", "nix-command", "fetch-closure"]}}', {"flakes", "nix-command", "fetch-closure"}),
    ('{"experimental-features": {"value": [2, 3]}}', None),  # nix 2.8's --json: enum numbers
    ("", None),
    (None, None),
])
def test_enabled_features(config, features):
    assert nix_version.enabled_features(config) == features


def test_only_flakes_missing():
    problems = nix_version.nix_problems("nix (Nix) 2.24.10\n", "experimental-features = nix-command\n")
    assert checks(problems) == [("nix features", "warning")]
    assert "does not enable flakes:" in problems[0]["problem"]


def test_features_unknown_are_not_judged():
    assert nix_version.nix_problems("nix (Nix) 2.24.10\n", '{"experimental-features": {"value": [2, 3]}}') == []
