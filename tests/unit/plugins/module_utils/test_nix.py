# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure parts of _nix: command lines, nix's JSON and internal-json log, result matching.

The log lines below were captured from Debian's nix 2.8 (nix build --log-format internal-json).
"""

from __future__ import annotations

import json
import os
import time

import pytest

from ansible_collections.nixie.metal.plugins.module_utils import _nix

S = "/nix/store/"
DRV_A = S + "dhrkybpxixk6r9f4r9arv06czwjkn5xi-a.drv"
DRV_B = S + "k60rsqn5hcksvfq90lhwf3z6lg107w5x-b.drv"
OUT_A = S + "bfllz57r4x5sjijg4wg2yhrqgigahflm-a"
OUT_B = S + "vnff7fg7jl8scf7rx5c3bvhm2ic2ka4n-b"

DRY_RUN_LOG = """\
@nix {"action":"start","id":1,"level":4,"text":"copying '/tmp/f1'","type":0}
@nix {"action":"stop","id":1}
@nix {"action":"start","id":3,"level":6,"text":"querying info about missing paths","type":0}
@nix {"action":"stop","id":3}
@nix {"action":"msg","level":0,"msg":"these 2 derivations will be built:"}
@nix {"action":"msg","level":0,"msg":"  %s"}
@nix {"action":"msg","level":0,"msg":"  %s"}
@nix {"action":"msg","level":0,"msg":"this path will be fetched (0.01 MiB download, 0.05 MiB unpacked):"}
@nix {"action":"msg","level":0,"msg":"  /nix/store/0q5jfgavmf4y78x00s7rdvj6yn58r7g4-hello"}
""" % (DRV_B, DRV_A)

BUILD_LOG = """\
@nix {"action":"start","id":7,"level":0,"text":"","type":102}
@nix {"action":"result","fields":[0,1,0,0],"id":8,"type":105}
@nix {"action":"start","fields":["%s","",1,1],"id":10,"level":3,"text":"building '%s'","type":105}
@nix {"action":"start","fields":["%s","",1,1],"id":11,"level":3,"text":"building '%s'","type":105}
@nix {"action":"result","fields":["LOGLINE"],"id":11,"type":101}
@nix {"action":"start","fields":["/nix/store/0q5jfgavmf4y78x00s7rdvj6yn58r7g4-hello","https://cache.nixos.org"],"id":12,"level":4,"text":"","type":108}
@nix {"action":"stop","id":11}
@nix {"action":"stop","id":10}
""" % (DRV_A, DRV_A, DRV_B, DRV_B)

BUILD_FAILED_LOG = (
    '@nix {"action":"start","fields":["/nix/store/krzx726x1n9mdrazmykr0aw90wsd4l75-bad.drv","",1,1],"id":6,"level":3,'
    '"text":"building","type":105}\n'
    '@nix {"action":"result","fields":["some error output"],"id":6,"type":101}\n'
    '@nix {"action":"msg","column":null,"file":null,"level":0,"line":null,"msg":"\\u001b[31;1merror:\\u001b[0m '
    '\\u001b[35;1m\\u001b[0mbuilder for \'\\u001b[35;1m/nix/store/krzx726x1n9mdrazmykr0aw90wsd4l75-bad.drv\\u001b[0m\' '
    'failed with exit code 3\\u001b[0m"}\n'
)

EVAL_ERROR_LOG = """\
@nix {"action":"start","id":1,"level":4,"text":"copying '/tmp/f1'","type":0}
@nix {"action":"msg","column":null,"file":null,"level":0,"line":null,\
"msg":"\\u001b[31;1merror:\\u001b[0m my eval error\\n       at /tmp/f1/flake.nix:4:5:","raw_msg":"my eval error"}
@nix {"action":"msg","level":0,"msg":"(use '--show-trace' to show detailed location information)"}
"""


def test_log_counts_builds_and_substitutions():
    log = _nix.NixLog().feed_text(BUILD_LOG)
    assert log.built == [DRV_A, DRV_B]
    assert log.fetched == ["/nix/store/0q5jfgavmf4y78x00s7rdvj6yn58r7g4-hello"]
    assert "b> LOGLINE" in log.tail
    assert log.errors == []


def test_log_nothing_built():
    log = _nix.NixLog().feed_text('@nix {"action":"start","id":1,"level":4,"text":"copying","type":0}\n')
    assert log.built == [] and log.fetched == []


def test_log_dry_run_lists():
    log = _nix.NixLog().feed_text(DRY_RUN_LOG)
    assert log.will_build == [DRV_B, DRV_A]
    assert log.will_fetch == ["/nix/store/0q5jfgavmf4y78x00s7rdvj6yn58r7g4-hello"]
    assert log.errors == []


def test_log_dry_run_list_in_one_message():
    line = '@nix {"action":"msg","level":0,"msg":"these 2 derivations will be built:\\n  %s\\n  %s"}' % (DRV_A, DRV_B)
    assert _nix.NixLog().feed_text(line).will_build == [DRV_A, DRV_B]


def test_failed_build_message_has_error_and_builder_output():
    log = _nix.NixLog().feed_text(BUILD_FAILED_LOG)
    msg = log.failure_message("nix build", 1)
    assert msg.startswith("nix build failed (exit 1): error: builder for '/nix/store/krzx726x1n9mdrazmykr0aw90wsd4l75-bad.drv'")
    assert "last log lines of bad:\nsome error output" in msg
    assert "\x1b" not in msg


def test_eval_error_keeps_its_location():
    log = _nix.NixLog().feed_text(EVAL_ERROR_LOG)
    assert log.errors == ["error: my eval error\n       at /tmp/f1/flake.nix:4:5:"]
    assert "my eval error" in log.failure_message("nix build", 1)


def test_plain_stderr_lines_are_kept():
    log = _nix.NixLog().feed_text("error: unrecognised flag '--bogus'\nTry 'nix --help' for more information.\n")
    assert log.errors == ["error: unrecognised flag '--bogus'"]
    assert "Try 'nix --help' for more information." in log.tail


def test_message_without_errors_shows_tail():
    log = _nix.NixLog().feed_text("something odd\n")
    assert log.failure_message("nix build", 2) == "nix build failed (exit 2): something odd"


def test_tail_is_bounded():
    log = _nix.NixLog(keep=5).feed_text("\n".join("line %d" % i for i in range(100)))
    assert list(log.tail) == ["line %d" % i for i in range(95, 100)]


def test_warnings():
    log = _nix.NixLog().feed_text('@nix {"action":"msg","level":1,"msg":"\\u001b[35;1mwarning:\\u001b[0m Git tree \'/x\' is dirty"}\n')
    assert log.warnings == ["warning: Git tree '/x' is dirty"]


def test_parse_build_json():
    out = json.dumps([{"drvPath": DRV_A, "outputs": {"out": OUT_A, "dev": OUT_A + "-dev"}}, {"path": OUT_B}])
    assert _nix.parse_build_json(out) == [
        {"drv_path": DRV_A, "outputs": {"out": OUT_A, "dev": OUT_A + "-dev"}},
        {"drv_path": None, "outputs": {"out": OUT_B}},
    ]
    assert _nix.parse_build_json("") == []
    with pytest.raises(ValueError):
        _nix.parse_build_json("no json here")


def entry(drv, out):
    return {"drv_path": drv, "outputs": {"out": out}}


def test_match_results_by_derivation_not_order():
    # nix 2.8's real build lists results sorted, not in the installables' order
    planned = [entry(DRV_B, OUT_B), entry(DRV_A, OUT_A)]
    built = [entry(DRV_A, OUT_A), entry(DRV_B, OUT_B)]
    assert _nix.match_results(["f#b", "f#a"], planned, built) == {"f#b": entry(DRV_B, OUT_B), "f#a": entry(DRV_A, OUT_A)}


def test_match_results_single_without_dry_run():
    assert _nix.match_results(["f#a"], None, [entry(DRV_A, OUT_A)]) == {"f#a": entry(DRV_A, OUT_A)}
    with pytest.raises(_nix.NixError):
        _nix.match_results(["f#a", "f#b"], None, [entry(DRV_A, OUT_A), entry(DRV_B, OUT_B)])


def test_match_results_detects_a_changed_flake():
    with pytest.raises(_nix.NixError, match="the flake changed"):
        _nix.match_results(["f#a"], [entry(DRV_A, OUT_A)], [entry(DRV_B, OUT_B)])


def test_match_results_plain_store_path():
    assert _nix.match_results([OUT_A], [entry(None, OUT_A)], [entry(None, OUT_A)]) == {OUT_A: entry(None, OUT_A)}


@pytest.mark.parametrize("ref, expected", [
    ("./examples#nixosConfigurations.installer", "./examples#nixosConfigurations.installer"),
    ("./examples#installer", "./examples#nixosConfigurations.installer"),
    ("github:o/r#installer-aarch64", "github:o/r#nixosConfigurations.installer-aarch64"),
    ("/abs#nixosConfigurations.\"my.host\"", "/abs#nixosConfigurations.\"my.host\""),
])
def test_nixos_configuration(ref, expected):
    assert _nix.nixos_configuration(ref) == expected


@pytest.mark.parametrize("ref", ["./examples", "#installer", "./examples#"])
def test_nixos_configuration_needs_flake_and_attr(ref):
    with pytest.raises(_nix.NixError, match="FLAKE#ATTR"):
        _nix.nixos_configuration(ref)


def test_netboot_installables():
    assert _nix.netboot_installables("./e#installer") == {
        "kernel": "./e#nixosConfigurations.installer.config.system.build.kernel",
        "initrd": "./e#nixosConfigurations.installer.config.system.build.netbootRamdisk",
        "toplevel": "./e#nixosConfigurations.installer.config.system.build.toplevel",
    }


def test_build_command_puts_everything_in_one_call():
    argv = _nix.build_command("nix", ["./e#a", "./e#b"], dry_run=True, impure=True, offline=True,
                              options={"cores": 4, "keep-going": True, "extra-platforms": ["aarch64-linux", "i686-linux"]},
                              extra_args=["--show-trace"])
    assert argv == [
        "nix", "--extra-experimental-features", "nix-command flakes", "--log-format", "internal-json",
        "build", "--no-link", "--json", "--dry-run", "--impure", "--offline",
        "--option", "cores", "4", "--option", "keep-going", "true", "--option", "extra-platforms", "aarch64-linux i686-linux",
        "--show-trace", "./e#a", "./e#b",
    ]


def test_eval_command():
    assert _nix.eval_command("nix", "./e#x", apply="c: c") == [
        "nix", "--extra-experimental-features", "nix-command flakes", "--log-format", "internal-json",
        "eval", "--json", "--apply", "c: c", "./e#x"]


def test_unique():
    assert _nix.unique(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]


def test_store_name():
    assert _nix.store_name(DRV_A) == "a"
    assert _nix.store_name(S + "9x2dk4cf1pvyc7c0xsszg5s0v0xv1iqd-nixos-system-node1-25.05") == "nixos-system-node1-25.05"


def test_netboot_artifacts_cmdline_starts_with_init():
    art = _nix.netboot_artifacts("/k", "/r", "/t", "bzImage", ["loglevel=4", "", "console=ttyS0"], "x86_64-linux")
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
    assert _nix.read_toplevel(str(top)) == ("Image", ["loglevel=4", "console=ttyAMA0"], None)
    (top / "system").write_text("aarch64-linux", encoding="utf-8")
    assert _nix.read_toplevel(str(top))[2] == "aarch64-linux"


def test_find_nix(tmp_path, monkeypatch):
    monkeypatch.setattr(_nix, "NIX_FALLBACK_DIRS", (str(tmp_path / "profile"),))
    with pytest.raises(_nix.NixNotFound, match="apt-get install nix-bin"):
        _nix.find_nix(path=str(tmp_path))
    with pytest.raises(_nix.NixNotFound, match="does not exist"):
        _nix.find_nix(str(tmp_path / "nix"))
    (tmp_path / "profile").mkdir()
    fake = tmp_path / "profile" / "nix"
    fake.write_text("#!/bin/sh\n", encoding="utf-8")
    fake.chmod(0o755)
    assert _nix.find_nix(path=str(tmp_path)) == str(fake)
    assert _nix.find_nix(str(fake)) == str(fake)
    assert _nix.find_nix("nix", path=str(tmp_path / "profile")) == str(fake)


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
    result = _nix.build("nix", ["./f#a"], runner=fake)
    assert len(fake.calls) == 1
    assert result["outputs"] == {"./f#a": {"out": OUT_A}}
    assert result["changed"] is True


def test_build_unchanged_when_nothing_built():
    fake = FakeNix({"build": (0, json.dumps([{"drvPath": DRV_A, "outputs": {"out": OUT_A}}]), "")})
    assert _nix.build("nix", ["./f#a"], runner=fake)["changed"] is False


def test_build_check_mode_only_dry_runs():
    fake = FakeNix({"dry-run": (0, json.dumps([{"drvPath": DRV_A, "outputs": {"out": OUT_A}}]), DRY_RUN_LOG)})
    result = _nix.build("nix", ["./f#a"], check_mode=True, runner=fake)
    assert [("--dry-run" in c) for c in fake.calls] == [True]
    assert result["changed"] is True
    assert result["built"] == [DRV_B, DRV_A]


def test_build_failure_raises_with_tail():
    fake = FakeNix({"build": (1, "", BUILD_FAILED_LOG)})
    with pytest.raises(_nix.NixError) as info:
        _nix.build("nix", ["./f#bad"], runner=fake)
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
    result = _nix.build("nix", [], installers={"i": "./e#installer"}, check_mode=True, runner=fake)
    assert fake.calls[1][-1] == "./e#nixosConfigurations.installer.config"
    assert result["artifacts"]["i"]["kernel"] == str(tmp_path / "k" / "bzImage")
    assert result["artifacts"]["i"]["cmdline"] == "init=%s/init loglevel=4" % (tmp_path / "t")
    assert result["changed"] is False


def test_build_needs_something():
    with pytest.raises(_nix.NixError, match="nothing to build"):
        _nix.build("nix", [], runner=FakeNix({}))


def test_run_timeout_kills_the_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = "sleep 60 & echo $! > %s; echo started >&2; wait" % pidfile
    started = time.monotonic()
    with pytest.raises(_nix.NixTimeout, match="ran out of time after 1 seconds"):
        _nix.run(["/bin/sh", "-c", script], timeout=1)
    assert time.monotonic() - started < 15
    child = int(pidfile.read_text(encoding="utf-8"))
    for dummy in range(50):
        if not os.path.exists("/proc/%d" % child) or " Z " in open("/proc/%d/stat" % child, encoding="utf-8").read():
            break
        time.sleep(0.1)
    else:
        pytest.fail("the grandchild sleep survived the timeout")


def test_run_missing_executable():
    with pytest.raises(_nix.NixNotFound, match="apt-get install nix-bin"):
        _nix.run(["/nonexistent/nix", "--version"])


# --- the controller's Nix ------------------------------------------------------------
# Outputs captured from Debian 12's nix 2.8.0; the version lines of other Nixes as they print them.

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
    assert _nix.parse_nix_version(text) == version


def checks(problems):
    return [(p["check"], p["severity"]) for p in problems]


def test_debian_12_nix_bin_is_enough_for_the_collection_but_old_for_nixpkgs():
    problems = _nix.nix_problems("nix (Nix) 2.8.0\n", NIX_28_SHOW_CONFIG_OFF)
    assert checks(problems) == [("nix version", "warning"), ("nix features", "warning")]
    version, features = problems
    assert "Nix 2.8.0 is older than 2.18" in version["problem"] and "nixpkgs 25.11" in version["problem"]
    assert "nixos.org/nix/install" in version["fix"] and "nix-installer" in version["fix"]
    assert "nix-command and flakes" in features["problem"]
    assert "experimental-features = nix-command flakes" in features["fix"] and "/etc/nix/nix.conf" in features["fix"]


def test_too_old_for_the_collection():
    problems = _nix.nix_problems("nix (Nix) 2.7.0\n", NIX_28_SHOW_CONFIG_ON)
    assert checks(problems) == [("nix version", "error")]
    assert "older than 2.8" in problems[0]["problem"] and "apt-cache policy nix-bin" in problems[0]["fix"]


def test_unreadable_version_is_an_error():
    problems = _nix.nix_problems("something else", None)
    assert checks(problems) == [("nix version", "error")]
    assert "cannot read a version" in problems[0]["problem"]


@pytest.mark.parametrize("version", ["2.18.1", "2.24.10", "2.31.2", "2.34.0"])
def test_recent_nix_with_features_has_no_problem(version):
    assert _nix.nix_problems("nix (Nix) %s\n" % version, NIX_28_SHOW_CONFIG_ON) == []


@pytest.mark.parametrize("version", ["2.31.0", "2.31.1"])
def test_nix_that_refuses_ipv6_ssh_urls(version):
    problems = _nix.nix_problems("nix (Nix) %s\n" % version, NIX_28_SHOW_CONFIG_ON)
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
    assert _nix.enabled_features(config) == features


def test_only_flakes_missing():
    problems = _nix.nix_problems("nix (Nix) 2.24.10\n", "experimental-features = nix-command\n")
    assert checks(problems) == [("nix features", "warning")]
    assert "does not enable flakes:" in problems[0]["problem"]


def test_features_unknown_are_not_judged():
    assert _nix.nix_problems("nix (Nix) 2.24.10\n", '{"experimental-features": {"value": [2, 3]}}') == []


# --- input overrides ---------------------------------------------------------------------

UNMATCHED = "warning: the flag '--override-input nixie-metal path:/tmp/nixie-agent-flake-x/nixie-metal' does not match any input"
LOCK = "warning: not writing modified lock file of flake 'path:/srv/site':"


def test_unmatched_overrides_from_nix_28_warning():
    assert _nix.unmatched_overrides([UNMATCHED, LOCK, "warning: Git tree '/srv/site' is dirty"]) == {"nixie-metal"}


def test_automatic_override_of_a_flake_without_the_input_is_dropped():
    used, shown = _nix.settle_overrides({}, {"nixie-metal": "path:/tmp/x"}, [UNMATCHED, LOCK, "warning: other"])
    assert used == {} and shown == ["warning: other"]


def test_used_overrides_and_user_typo():
    used, shown = _nix.settle_overrides({"nixpkgs": "path:/m"}, {"nixie-metal": "path:/tmp/x"}, [LOCK])
    assert used == {"nixpkgs": "path:/m", "nixie-metal": "path:/tmp/x"} and shown == []
    typo = "warning: the flag '--override-input nixpgks path:/m' does not match any input"
    with pytest.raises(_nix.NixError, match="override_inputs names nixpgks, which the flake has no input of"):
        _nix.settle_overrides({"nixpgks": "path:/m"}, {}, [typo])


def test_no_override_keeps_the_lock_file_warning():
    assert _nix.settle_overrides({}, {}, [LOCK]) == ({}, [LOCK])


@pytest.mark.parametrize("inputs, message", [
    ({"": "path:/x"}, "is not an input name"),
    ({"a b": "path:/x"}, "is not an input name"),
    ({"nixpkgs": ""}, "must be a non-empty string"),
    ({"nixpkgs": 3}, "must be a non-empty string"),
])
def test_bad_override_inputs(inputs, message):
    with pytest.raises(_nix.NixError, match=message):
        _nix.check_override_inputs(inputs)


def test_override_flags_in_every_command():
    argv = _nix.build_command("nix", ["./f#a"], override_inputs={"nixie-metal": "path:/c", "disko/nixpkgs": "path:/n"})
    assert argv[-7:] == ["--override-input", "nixie-metal", "path:/c", "--override-input", "disko/nixpkgs", "path:/n", "./f#a"]
    argv = _nix.eval_command("nix", "./f#c", override_inputs={"nixie-metal": "path:/c"})
    assert argv[-4:] == ["--override-input", "nixie-metal", "path:/c", "./f#c"]


def test_agent_flake_copy_holds_only_the_flake_files(tmp_path):
    root = tmp_path / "collection"
    (root / "nix" / "agent").mkdir(parents=True)
    (root / "flake.nix").write_text("{ }", encoding="utf-8")
    (root / "nix" / "agent" / "nixie-agent").write_text("#!/bin/sh\n", encoding="utf-8")
    (root / ".venv").mkdir()
    (root / ".venv" / "big").write_text("x", encoding="utf-8")
    with _nix.agent_flake_copy(str(root)) as ref:
        copy = ref[len("path:"):]
        assert sorted(os.listdir(copy)) == ["flake.nix", "nix"]
        assert os.path.isfile(os.path.join(copy, "nix", "agent", "nixie-agent"))
    assert not os.path.exists(copy)
    with pytest.raises(_nix.NixError, match="has no flake.nix"):
        with _nix.agent_flake_copy(str(tmp_path / "empty")):
            pass


@pytest.mark.parametrize("attribute, path, expected", [
    ("web1", "config.system.build.toplevel", "/site#nixosConfigurations.web1.config.system.build.toplevel"),
    ("web-1_a'", "", "/site#nixosConfigurations.web-1_a'"),
    ("web.1", "config.disko.devices.disk", '/site#nixosConfigurations."web.1".config.disko.devices.disk'),
    ('a"b\\c', "config", '/site#nixosConfigurations."a\\"b\\\\c".config'),
    ("1st", "config", '/site#nixosConfigurations."1st".config'),
])
def test_configuration_installable(attribute, path, expected):
    assert _nix.configuration_installable("/site", attribute, path) == expected


def collection(tmp_path):
    root = tmp_path / "collection"
    (root / "nix").mkdir(parents=True)
    (root / "flake.nix").write_text("{ }", encoding="utf-8")
    return str(root)


def test_run_overrides_are_the_users_and_the_agents(tmp_path):
    root = collection(tmp_path)
    with _nix.run_overrides({"nixpkgs": " path:/m "}, root) as overrides:
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
    with _nix.run_overrides({"nixie-metal": "path:/mine"}, root) as overrides:
        assert overrides.flags == {"nixie-metal": "path:/mine"} and overrides.automatic == {}
    with _nix.run_overrides(None, None) as overrides:
        assert overrides.flags == {}
    with pytest.raises(_nix.NixError, match="is not an input name"):
        with _nix.run_overrides({"a b": "path:/x"}, root):
            pass


def test_evaluate_uses_the_run_overrides_and_leaves_the_lock_file(tmp_path):
    root = collection(tmp_path)
    seen = []

    def runner(argv, cwd=None, env=None, timeout=None):
        copy = argv[argv.index("nixie-metal") + 1]
        seen.append((list(argv), os.path.isfile(copy[len("path:"):] + "/flake.nix"), timeout))
        return 0, '["/dev/vda"]\n', "warning: not writing modified lock file of flake 'path:/site':\nwarning: other\n"

    result = _nix.evaluate("nix", "/site#nixosConfigurations.a.config.disko.devices.disk", apply="d: d", runner=runner,
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

    result = _nix.evaluate("nix", "/site#a", runner=unmatched("nixie-metal"), agent_flake=root)
    assert result["override_inputs"] == {} and result["warnings"] == [] and result["value"] == "/nix/store/x-sys"
    with pytest.raises(_nix.NixError, match="override_inputs names nixpgks"):
        _nix.evaluate("nix", "/site#a", runner=unmatched("nixpgks"), override_inputs={"nixpgks": "path:/m"})


def test_evaluate_failure_says_what_and_shows_the_collection(tmp_path):
    root = collection(tmp_path)

    def runner(argv, cwd=None, env=None, timeout=None):
        return 1, "", EVAL_ERROR_LOG

    with pytest.raises(_nix.NixError) as info:
        _nix.evaluate("nix", "/site#x", runner=runner, agent_flake=root)
    assert info.value.msg.startswith("nix eval of /site#x failed (exit 1): error: my eval error")
    assert info.value.rc == 1 and "path:" + root in info.value.cmd

    def garbage(argv, cwd=None, env=None, timeout=None):
        return 0, "not json", ""

    with pytest.raises(_nix.NixError, match="printed no JSON value"):
        _nix.evaluate("nix", "/site#x", runner=garbage)


def test_build_and_evaluate_override_alike(tmp_path):
    """The same flags for the installer's build and every evaluation of the run (the copy's name aside)."""
    root = collection(tmp_path)
    calls = []

    def runner(argv, cwd=None, env=None, timeout=None):
        calls.append(argv)
        if "eval" in argv:
            return 0, '"/nix/store/x"', ""
        return 0, json.dumps([{"drvPath": DRV_A, "outputs": {"out": OUT_A}}]), ""

    built = _nix.build("nix", ["/site#a"], runner=runner, override_inputs={"nixpkgs": "path:/m"}, agent_flake=root)
    evaluated = _nix.evaluate("nix", "/site#b", runner=runner, override_inputs={"nixpkgs": "path:/m"}, agent_flake=root)

    def overrides(argv):
        pairs = [argv[i + 1:i + 3] for i, arg in enumerate(argv) if arg == "--override-input"]
        return {name: "<copy>" if "/nixie-agent-flake-" in ref else ref for name, ref in pairs}

    assert overrides(calls[0]) == overrides(calls[1]) == {"nixie-metal": "<copy>", "nixpkgs": "path:/m"}
    assert built["override_inputs"] == evaluated["override_inputs"]
