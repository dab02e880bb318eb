# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_nix.calls: one build or evaluation, with nix answered from a table (FakeNix) or a small runner."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._nix import calls as nix_calls, errors as nix_errors
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.nix.samples import (
    BUILD_FAILED_LOG, BUILD_LOG, DRV_A, DRV_B, DRY_RUN_LOG, EVAL_ERROR_LOG, OUT_A, S, collection)


class FakeNix:
    """Answers nix calls from a table: (subcommand, dry_run) -> (rc, stdout, stderr)."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, argv, cwd=None, env=None, timeout=None):
        self.calls.append(argv)
        key = "eval" if "eval" in argv else ("dry-run" if "--dry-run" in argv else "build")
        return self.answers[key]


def test_build_single_installable_skips_the_dry_run():
    fake = FakeNix({"build": (0, json.dumps([{"drvPath": DRV_A, "outputs": {"out": OUT_A}}]), BUILD_LOG)})
    result = nix_calls.build("nix", ["./f#a"], runner=fake)
    assert len(fake.calls) == 1
    assert result["outputs"] == {"./f#a": {"out": OUT_A}}
    assert result["changed"] is True


def test_build_unchanged_when_nothing_built():
    fake = FakeNix({"build": (0, json.dumps([{"drvPath": DRV_A, "outputs": {"out": OUT_A}}]), "")})
    assert nix_calls.build("nix", ["./f#a"], runner=fake)["changed"] is False


def test_build_check_mode_only_dry_runs():
    fake = FakeNix({"dry-run": (0, json.dumps([{"drvPath": DRV_A, "outputs": {"out": OUT_A}}]), DRY_RUN_LOG)})
    result = nix_calls.build("nix", ["./f#a"], check_mode=True, runner=fake)
    assert [("--dry-run" in c) for c in fake.calls] == [True]
    assert result["changed"] is True
    assert result["built"] == [DRV_B, DRV_A]


def test_build_failure_raises_with_tail():
    fake = FakeNix({"build": (1, "", BUILD_FAILED_LOG)})
    with pytest.raises(nix_errors.NixError) as info:
        nix_calls.build("nix", ["./f#bad"], runner=fake)
    assert "some error output" in info.value.msg
    assert info.value.rc == 1
    assert "bad> some error output" in info.value.log_tail


def test_build_installer_check_mode_evaluates_params(tmp_path):
    planned = [{"drvPath": S + "k.drv", "outputs": {"out": str(tmp_path / "k")}},
               {"drvPath": S + "r.drv", "outputs": {"out": str(tmp_path / "r")}},
               {"drvPath": S + "t.drv", "outputs": {"out": str(tmp_path / "t")}}]
    fake = FakeNix({
        "dry-run": (0, json.dumps(planned), ""),
        "eval": (0, json.dumps({"kernelFile": "bzImage", "kernelParams": ["loglevel=4"]}), ""),
    })
    result = nix_calls.build("nix", [], installers={"i": "./e#installer"}, check_mode=True, runner=fake)
    assert fake.calls[1][-1] == "./e#nixosConfigurations.installer.config"
    assert result["artifacts"]["i"]["kernel"] == str(tmp_path / "k" / "bzImage")
    assert result["artifacts"]["i"]["cmdline"] == "init=%s/init loglevel=4" % (tmp_path / "t")
    assert result["changed"] is False


def test_build_needs_something():
    with pytest.raises(nix_errors.NixError, match="nothing to build"):
        nix_calls.build("nix", [], runner=FakeNix({}))


def test_evaluate_uses_the_run_overrides_and_leaves_the_lock_file(tmp_path):
    root = collection(tmp_path)
    seen = []

    def runner(argv, cwd=None, env=None, timeout=None):
        copy = argv[argv.index("nixie-metal") + 1]
        seen.append((list(argv), os.path.isfile(copy[len("path:"):] + "/flake.nix"), timeout))
        return 0, '["/dev/vda"]\n', "warning: not writing modified lock file of flake 'path:/site':\nwarning: other\n"

    result = nix_calls.evaluate("nix", "/site#nixosConfigurations.a.config.disko.devices.disk", apply="d: d", runner=runner,
                                override_inputs={"disko": "path:/d"}, agent_flake=root, timeout=7, offline=True)
    argv, copy_there, timeout = seen[0]
    assert copy_there and timeout == 7
    assert argv[:8] == ["nix", "--extra-experimental-features", "nix-command flakes", "--log-format", "internal-json",
                        "eval", "--json", "--apply"]
    assert "--no-write-lock-file" in argv and "--offline" in argv and argv[-1].endswith("disko.devices.disk")
    assert result["value"] == ["/dev/vda"]
    assert result["override_inputs"] == {"nixie-metal": "path:" + root, "disko": "path:/d"}
    assert "path:" + root in result["cmd"] and result["warnings"] == ["warning: other"]


def test_evaluate_drops_the_agent_of_a_flake_without_it_and_refuses_a_users_typo(tmp_path):
    root = collection(tmp_path)

    def unmatched(*names):
        def runner(argv, cwd=None, env=None, timeout=None):
            warnings = "".join("warning: the flag '--override-input %s %s' does not match any input\n"
                               % (name, argv[argv.index(name) + 1]) for name in names)
            return 0, '"/nix/store/x-sys"', warnings
        return runner

    result = nix_calls.evaluate("nix", "/site#a", runner=unmatched("nixie-metal"), agent_flake=root)
    assert result["override_inputs"] == {} and result["warnings"] == [] and result["value"] == "/nix/store/x-sys"
    with pytest.raises(nix_errors.NixError, match="override_inputs names nixpgks"):
        nix_calls.evaluate("nix", "/site#a", runner=unmatched("nixpgks"), override_inputs={"nixpgks": "path:/m"})


def test_evaluate_failure_says_what_and_shows_the_collection(tmp_path):
    root = collection(tmp_path)

    def runner(argv, cwd=None, env=None, timeout=None):
        return 1, "", EVAL_ERROR_LOG

    with pytest.raises(nix_errors.NixError) as info:
        nix_calls.evaluate("nix", "/site#x", runner=runner, agent_flake=root)
    assert info.value.msg.startswith("nix eval of /site#x failed (exit 1): error: my eval error")
    assert info.value.rc == 1 and "path:" + root in info.value.cmd

    def garbage(argv, cwd=None, env=None, timeout=None):
        return 0, "not json", ""

    with pytest.raises(nix_errors.NixError, match="printed no JSON value"):
        nix_calls.evaluate("nix", "/site#x", runner=garbage)


def test_build_and_evaluate_override_alike(tmp_path):
    """The same flags for the installer's build and every evaluation of the run (the copy's name aside)."""
    root = collection(tmp_path)
    calls = []

    def runner(argv, cwd=None, env=None, timeout=None):
        calls.append(argv)
        if "eval" in argv:
            return 0, '"/nix/store/x"', ""
        return 0, json.dumps([{"drvPath": DRV_A, "outputs": {"out": OUT_A}}]), ""

    built = nix_calls.build("nix", ["/site#a"], runner=runner, override_inputs={"nixpkgs": "path:/m"}, agent_flake=root)
    evaluated = nix_calls.evaluate("nix", "/site#b", runner=runner, override_inputs={"nixpkgs": "path:/m"}, agent_flake=root)

    def overrides(argv):
        pairs = [argv[i + 1:i + 3] for i, arg in enumerate(argv) if arg == "--override-input"]
        return {name: "<copy>" if "/nixie-agent-flake-" in ref else ref for name, ref in pairs}

    assert overrides(calls[0]) == overrides(calls[1]) == {"nixie-metal": "<copy>", "nixpkgs": "path:/m"}
    assert built["override_inputs"] == evaluated["override_inputs"]
