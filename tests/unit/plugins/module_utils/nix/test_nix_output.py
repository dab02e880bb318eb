# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_nix.output: nix's internal-json log, nix build --json and result matching, netboot artifacts."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._nix import errors as nix_errors, output as nix_output
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.nix.samples import (
    BUILD_FAILED_LOG, BUILD_LOG, DRV_A, DRV_B, DRY_RUN_LOG, EVAL_ERROR_LOG, OUT_A, OUT_B, S)


def test_log_counts_builds_and_substitutions():
    log = nix_output.NixLog().feed_text(BUILD_LOG)
    assert log.built == [DRV_A, DRV_B]
    assert log.fetched == ["/nix/store/0q5jfgavmf4y78x00s7rdvj6yn58r7g4-hello"]
    assert "b> LOGLINE" in log.tail
    assert log.errors == []


def test_log_nothing_built():
    log = nix_output.NixLog().feed_text('@nix {"action":"start","id":1,"level":4,"text":"copying","type":0}\n')
    assert log.built == [] and log.fetched == []


def test_log_dry_run_lists():
    log = nix_output.NixLog().feed_text(DRY_RUN_LOG)
    assert log.will_build == [DRV_B, DRV_A]
    assert log.will_fetch == ["/nix/store/0q5jfgavmf4y78x00s7rdvj6yn58r7g4-hello"]
    assert log.errors == []


def test_log_dry_run_list_in_one_message():
    line = '@nix {"action":"msg","level":0,"msg":"these 2 derivations will be built:\\n  %s\\n  %s"}' % (DRV_A, DRV_B)
    assert nix_output.NixLog().feed_text(line).will_build == [DRV_A, DRV_B]


def test_failed_build_message_has_error_and_builder_output():
    log = nix_output.NixLog().feed_text(BUILD_FAILED_LOG)
    msg = log.failure_message("nix build", 1)
    assert msg.startswith("nix build failed (exit 1): error: builder for '/nix/store/krzx726x1n9mdrazmykr0aw90wsd4l75-bad.drv'")
    assert "last log lines of bad:\nsome error output" in msg
    assert "\x1b" not in msg


def test_eval_error_keeps_its_location():
    log = nix_output.NixLog().feed_text(EVAL_ERROR_LOG)
    assert log.errors == ["error: my eval error\n       at /tmp/f1/flake.nix:4:5:"]
    assert "my eval error" in log.failure_message("nix build", 1)


def test_plain_stderr_lines_are_kept():
    log = nix_output.NixLog().feed_text("error: unrecognised flag '--bogus'\nTry 'nix --help' for more information.\n")
    assert log.errors == ["error: unrecognised flag '--bogus'"]
    assert "Try 'nix --help' for more information." in log.tail


def test_message_without_errors_shows_tail():
    log = nix_output.NixLog().feed_text("something odd\n")
    assert log.failure_message("nix build", 2) == "nix build failed (exit 2): something odd"


def test_tail_is_bounded():
    log = nix_output.NixLog(keep=5).feed_text("\n".join("line %d" % i for i in range(100)))
    assert list(log.tail) == ["line %d" % i for i in range(95, 100)]


def test_warnings():
    log = nix_output.NixLog().feed_text('@nix {"action":"msg","level":1,"msg":"\\u001b[35;1mwarning:\\u001b[0m Git tree \'/x\' is dirty"}\n')
    assert log.warnings == ["warning: Git tree '/x' is dirty"]


def test_parse_build_json():
    out = json.dumps([{"drvPath": DRV_A, "outputs": {"out": OUT_A, "dev": OUT_A + "-dev"}}, {"path": OUT_B}])
    assert nix_output.parse_build_json(out) == [
        {"drv_path": DRV_A, "outputs": {"out": OUT_A, "dev": OUT_A + "-dev"}},
        {"drv_path": None, "outputs": {"out": OUT_B}},
    ]
    assert nix_output.parse_build_json("") == []
    with pytest.raises(ValueError):
        nix_output.parse_build_json("no json here")


def entry(drv, out):
    return {"drv_path": drv, "outputs": {"out": out}}


def test_match_results_by_derivation_not_order():
    # nix 2.8's real build lists results sorted, not in the installables' order
    planned = [entry(DRV_B, OUT_B), entry(DRV_A, OUT_A)]
    built = [entry(DRV_A, OUT_A), entry(DRV_B, OUT_B)]
    assert nix_output.match_results(["f#b", "f#a"], planned, built) == {"f#b": entry(DRV_B, OUT_B), "f#a": entry(DRV_A, OUT_A)}


def test_match_results_single_without_dry_run():
    assert nix_output.match_results(["f#a"], None, [entry(DRV_A, OUT_A)]) == {"f#a": entry(DRV_A, OUT_A)}
    with pytest.raises(nix_errors.NixError):
        nix_output.match_results(["f#a", "f#b"], None, [entry(DRV_A, OUT_A), entry(DRV_B, OUT_B)])


def test_match_results_detects_a_changed_flake():
    with pytest.raises(nix_errors.NixError, match="the flake changed"):
        nix_output.match_results(["f#a"], [entry(DRV_A, OUT_A)], [entry(DRV_B, OUT_B)])


def test_match_results_plain_store_path():
    assert nix_output.match_results([OUT_A], [entry(None, OUT_A)], [entry(None, OUT_A)]) == {OUT_A: entry(None, OUT_A)}


def test_store_name():
    assert nix_output.store_name(DRV_A) == "a"
    assert nix_output.store_name(S + "9x2dk4cf1pvyc7c0xsszg5s0v0xv1iqd-nixos-system-node1-25.05") == "nixos-system-node1-25.05"


def test_netboot_artifacts_cmdline_starts_with_init():
    art = nix_output.netboot_artifacts("/k", "/r", "/t", "bzImage", ["loglevel=4", "", "console=ttyS0"], "x86_64-linux")
    assert art == {
        "kernel": "/k/bzImage", "initrd": "/r/initrd", "init": "/t/init", "toplevel": "/t",
        "kernel_params": ["loglevel=4", "console=ttyS0"], "cmdline": "init=/t/init loglevel=4 console=ttyS0",
        "system": "x86_64-linux",
    }


def test_read_toplevel(tmp_path):
    kernel = tmp_path / "kernel-out"
    kernel.mkdir()
    (kernel / "Image").write_text("k", encoding="utf-8")
    top = tmp_path / "top"
    top.mkdir()
    os.symlink(kernel / "Image", top / "kernel")
    (top / "kernel-params").write_text("loglevel=4 console=ttyAMA0", encoding="utf-8")
    assert nix_output.read_toplevel(str(top)) == ("Image", ["loglevel=4", "console=ttyAMA0"], None)
    (top / "system").write_text("aarch64-linux", encoding="utf-8")
    assert nix_output.read_toplevel(str(top))[2] == "aarch64-linux"
