# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_nix.overrides: the run's flake input overrides."""

from __future__ import annotations

import os

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._nix import (
    commands as nix_commands, errors as nix_errors, overrides as nix_overrides)
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.nix.samples import collection


UNMATCHED = "warning: the flag '--override-input nixie-metal path:/tmp/nixie-agent-flake-x/nixie-metal' does not match any input"


LOCK = "warning: not writing modified lock file of flake 'path:/srv/site':"


def test_unmatched_overrides_from_nix_28_warning():
    assert nix_overrides.unmatched_overrides([UNMATCHED, LOCK, "warning: Git tree '/srv/site' is dirty"]) == {"nixie-metal"}


def test_automatic_override_of_a_flake_without_the_input_is_dropped():
    used, shown = nix_overrides.settle_overrides({}, {"nixie-metal": "path:/tmp/x"}, [UNMATCHED, LOCK, "warning: other"])
    assert used == {} and shown == ["warning: other"]


def test_used_overrides_and_user_typo():
    used, shown = nix_overrides.settle_overrides({"nixpkgs": "path:/m"}, {"nixie-metal": "path:/tmp/x"}, [LOCK])
    assert used == {"nixpkgs": "path:/m", "nixie-metal": "path:/tmp/x"} and shown == []
    typo = "warning: the flag '--override-input nixpgks path:/m' does not match any input"
    with pytest.raises(nix_errors.NixError, match="override_inputs names nixpgks, which the flake has no input of"):
        nix_overrides.settle_overrides({"nixpgks": "path:/m"}, {}, [typo])


def test_no_override_keeps_the_lock_file_warning():
    assert nix_overrides.settle_overrides({}, {}, [LOCK]) == ({}, [LOCK])


@pytest.mark.parametrize("inputs, message", [
    ({"": "path:/x"}, "is not an input name"),
    ({"a b": "path:/x"}, "is not an input name"),
    ({"nixpkgs": ""}, "must be a non-empty string"),
    ({"nixpkgs": 3}, "must be a non-empty string"),
])
def test_bad_override_inputs(inputs, message):
    with pytest.raises(nix_errors.NixError, match=message):
        nix_overrides.check_override_inputs(inputs)


def test_override_flags_in_every_command():
    argv = nix_commands.build_command("nix", ["./f#a"], override_inputs={"nixie-metal": "path:/c", "disko/nixpkgs": "path:/n"})
    assert argv[-7:] == ["--override-input", "nixie-metal", "path:/c", "--override-input", "disko/nixpkgs", "path:/n", "./f#a"]
    argv = nix_commands.eval_command("nix", "./f#c", override_inputs={"nixie-metal": "path:/c"})
    assert argv[-4:] == ["--override-input", "nixie-metal", "path:/c", "./f#c"]


def test_agent_flake_copy_holds_only_the_flake_files(tmp_path):
    root = tmp_path / "collection"
    (root / "nix" / "agent").mkdir(parents=True)
    (root / "flake.nix").write_text("{ }", encoding="utf-8")
    (root / "nix" / "agent" / "nixie-agent").write_text("#!/bin/sh\n", encoding="utf-8")
    (root / ".venv").mkdir()
    (root / ".venv" / "big").write_text("x", encoding="utf-8")
    with nix_overrides.agent_flake_copy(str(root)) as ref:
        copy = ref[len("path:"):]
        assert sorted(os.listdir(copy)) == ["flake.nix", "nix"]
        assert os.path.isfile(os.path.join(copy, "nix", "agent", "nixie-agent"))
    assert not os.path.exists(copy)
    with pytest.raises(nix_errors.NixError, match="has no flake.nix"):
        with nix_overrides.agent_flake_copy(str(tmp_path / "empty")):
            pass


def test_run_overrides_are_the_users_and_the_agents(tmp_path):
    root = collection(tmp_path)
    with nix_overrides.run_overrides({"nixpkgs": " path:/m "}, root) as overrides:
        copy = overrides.automatic["nixie-metal"]
        assert copy.startswith("path:") and copy != "path:" + root
        assert overrides.flags == {"nixie-metal": copy, "nixpkgs": "path:/m"}
        assert overrides.show_command(["nix", "--override-input", "nixie-metal", copy]) == [
            "nix", "--override-input", "nixie-metal", "path:" + root]
        assert overrides.shown({"nixie-metal": copy, "nixpkgs": "path:/m"}) == {"nixie-metal": "path:" + root,
                                                                                "nixpkgs": "path:/m"}
    assert not os.path.exists(copy[len("path:"):])


def test_run_overrides_the_users_agent_wins_and_none_is_nothing(tmp_path):
    root = collection(tmp_path)
    with nix_overrides.run_overrides({"nixie-metal": "path:/mine"}, root) as overrides:
        assert overrides.flags == {"nixie-metal": "path:/mine"} and overrides.automatic == {}
    with nix_overrides.run_overrides(None, None) as overrides:
        assert overrides.flags == {}
    with pytest.raises(nix_errors.NixError, match="is not an input name"):
        with nix_overrides.run_overrides({"a b": "path:/x"}, root):
            pass
