# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_status's probe (plugins/module_utils/_host_status/probe.py): os-release, the SSH command
line and its failures, ssh_probe with a fake ssh, nix eval with a fake nix. No network."""

from __future__ import annotations

import os

import pytest

from ansible_collections.nixie.metal.plugins.module_utils import _ssh
from ansible_collections.nixie.metal.plugins.module_utils._host_status import common, probe
from ansible_collections.nixie.metal.plugins.module_utils._nix import errors as nix_errors
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.host_status.samples import ECDSA, ED25519, SYSTEM


def probe_output(os_release, current=""):
    return "motd line\n%s\nos-release:\n%s\n\ncurrent-system:\n%s\n%s\n" % (probe.BEGIN, os_release, current, probe.END)


# --- os-release -------------------------------------------------------------------------


def test_parse_os_release_nixos():
    text = '''# comment
ANSI_COLOR="1;34"
BUG_REPORT_URL="https://github.com/NixOS/nixpkgs/issues"
BUILD_ID="24.05.20240101.abcdef"
ID=nixos
NAME=NixOS
PRETTY_NAME="NixOS 24.05 (Uakari)"
VERSION='24.05 (Uakari)'
QUOTED="a \\"b\\" \\$c"
not a line
9BAD=x
'''
    values = probe.parse_os_release(text)
    assert values["ID"] == "nixos"
    assert values["PRETTY_NAME"] == "NixOS 24.05 (Uakari)"
    assert values["VERSION"] == "24.05 (Uakari)"
    assert values["QUOTED"] == 'a "b" $c'
    assert "9BAD" not in values


def test_parse_os_release_empty_and_debian():
    assert probe.parse_os_release("") == {}
    assert probe.parse_os_release(None) == {}
    assert probe.parse_os_release('ID=debian\nID_LIKE=""\n')["ID"] == "debian"


def test_parse_probe_output():
    os_release, current = probe.parse_probe_output(probe_output("ID=nixos\nNAME=NixOS", SYSTEM + "/"))
    assert os_release["ID"] == "nixos"
    assert current == SYSTEM


def test_parse_probe_output_without_current_system():
    os_release, current = probe.parse_probe_output(probe_output('ID="nixie-lab-installer"'))
    assert os_release == {"ID": "nixie-lab-installer"}
    assert current is None


def test_parse_probe_output_garbled():
    assert probe.parse_probe_output("This account is restricted\n") is None
    assert probe.parse_probe_output(probe.BEGIN + "\nsomething\n") is None
    assert probe.parse_probe_output(probe.BEGIN + "\nno sections\n" + probe.END) is None


def test_remote_command_runs_under_sh(tmp_path):
    """The remote command, run by a POSIX sh on a fake root, prints what the parser reads."""
    sh = "/bin/sh"  # every Debian/Ubuntu machine has it (dash), as every target the probe logs in to
    command = probe.REMOTE_COMMAND.replace("/etc/os-release", str(tmp_path / "os-release")) \
        .replace("/usr/lib/os-release", str(tmp_path / "none")).replace("/run/current-system", str(tmp_path / "current"))
    (tmp_path / "os-release").write_text("ID=nixos\n", encoding="utf-8")
    target = tmp_path / "store" / "x-nixos-system"
    target.mkdir(parents=True)
    rc, out, dummy = common.run([sh, "-c", command])
    assert rc == 0
    assert probe.parse_probe_output(out) == ({"ID": "nixos"}, None)
    (tmp_path / "current").symlink_to(target)
    rc, out, dummy = common.run([sh, "-c", command])
    assert probe.parse_probe_output(out) == ({"ID": "nixos"}, str(target))


# --- command lines ------------------------------------------------------------------------


def test_ssh_command_accept_new():
    argv = probe.ssh_command("/usr/bin/ssh", "10.77.0.173", "/tmp/kh", timeout=7)
    assert argv[0] == "/usr/bin/ssh"
    assert argv[-3:] == ["--", "10.77.0.173", probe.REMOTE_COMMAND]
    options = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    assert "BatchMode=yes" in options
    assert "ConnectTimeout=7" in options
    assert "StrictHostKeyChecking=accept-new" in options
    assert "UserKnownHostsFile=/tmp/kh" in options
    assert "GlobalKnownHostsFile=/dev/null" in options
    assert "HostKeyAlias=%s" % probe.HOST_KEY_ALIAS in options
    assert argv[argv.index("-l") + 1] == "root"
    assert argv[argv.index("-p") + 1] == "22"
    assert "-i" not in argv


def test_ssh_command_gives_the_pinned_options_first():
    argv = probe.ssh_command("/usr/bin/ssh", "10.77.0.173", "/tmp/kh", strict=True, ssh_version=(9, 2))
    pinned = _ssh.option_args(_ssh.pinned_options((9, 2)) + _ssh.known_hosts_options("/tmp/kh"))
    assert argv[4:4 + len(pinned)] == pinned
    assert "ControlMaster=no" in pinned and "ControlPath=none" in pinned and "KnownHostsCommand=none" in pinned


@pytest.mark.parametrize("version", [(8, 4), None])
def test_ssh_command_accept_new_is_isolated_too(version):
    # No known keys yet, but still a connection of its own: a shared master would answer for whoever it reached.
    argv = probe.ssh_command("ssh", "10.77.0.173", "/tmp/kh", ssh_version=version)
    options = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    assert options[:3] == ["ControlMaster=no", "ControlPath=none", "VerifyHostKeyDNS=no"]
    assert "StrictHostKeyChecking=accept-new" in options
    # An 8.4 client stops on KnownHostsCommand; an unknown one is treated as older.
    assert not any(option.startswith("KnownHostsCommand") for option in options)


def test_ssh_command_strict_with_key_and_port():
    argv = probe.ssh_command("ssh", "fd77::10", "/tmp/kh", user="admin", port=2222, key="/k/id", strict=True)
    assert "StrictHostKeyChecking=yes" in argv
    assert argv[argv.index("-i") + 1] == "/k/id"
    assert "IdentitiesOnly=yes" in argv
    assert argv[argv.index("-p") + 1] == "2222"
    assert argv[argv.index("-l") + 1] == "admin"


def test_known_hosts_lines():
    assert probe.known_hosts_lines([ED25519, ECDSA]) == [
        "%s %s" % (probe.HOST_KEY_ALIAS, " ".join(ED25519.split()[:2])),
        "%s %s" % (probe.HOST_KEY_ALIAS, ECDSA),
    ]
    for bad in ("ssh-ed25519", "AAAAC3Nz", "ssh-foo AAAA", "ssh-ed25519 not*base64"):
        with pytest.raises(common.HostStatusError, match="not an SSH public key"):
            probe.known_hosts_lines([bad])


# --- ssh failures and classification ----------------------------------------------------------


@pytest.mark.parametrize("stderr, kind", [
    ("ssh: connect to host 10.77.0.5 port 22: Connection refused\r\n", "closed"),
    ("ssh: connect to host 10.77.0.5 port 22: No route to host\r\n", "unreachable"),
    ("ssh: connect to host 10.77.0.5 port 22: Connection timed out\r\n", "unreachable"),
    ("ssh: connect to host 10.1.0.5 port 22: Network is unreachable\r\n", "unreachable"),
    ("ssh: Could not resolve hostname web1: Name or service not known\r\n", "unreachable"),
    ("root@10.77.0.5: Permission denied (publickey).\r\n", "auth"),
    ("No ED25519 host key is known for nixie-host-status-target and you have requested strict checking.\r\n"
     "Host key verification failed.\r\n", "host_key"),
    ("Connection timed out during banner exchange\r\nConnection to 10.77.0.5 port 22 timed out\r\n", "other"),
    ("kex_exchange_identification: read: Connection reset by peer\r\n", "other"),
])
def test_classify_ssh_failure(stderr, kind):
    assert probe.classify_ssh_failure(stderr) == kind


# --- ssh_probe with a fake ssh --------------------------------------------------------------


class FakeRunner:
    def __init__(self, rc, out="", err=""):
        self.rc, self.out, self.err = rc, out, err
        self.calls = []
        self.known_hosts = None

    def __call__(self, argv, timeout=None, **kwargs):
        self.calls.append((argv, timeout))
        option = next(a for a in argv if a.startswith("UserKnownHostsFile="))
        with open(option.split("=", 1)[1], encoding="utf-8") as handle:
            self.known_hosts = handle.read()
        return self.rc, self.out, self.err


def test_ssh_probe_installed():
    runner = FakeRunner(0, probe_output("ID=nixos", SYSTEM))
    found = probe.ssh_probe("ssh", "10.0.0.5", runner=runner, timeout=5)
    assert found["outcome"] == "ok" and found["os_id"] == "nixos" and found["current_system"] == SYSTEM
    assert runner.known_hosts == ""
    assert "StrictHostKeyChecking=accept-new" in runner.calls[0][0]
    assert runner.calls[0][1] == 20


def test_ssh_probe_strict_known_hosts():
    runner = FakeRunner(0, probe_output("ID=nixos", SYSTEM))
    probe.ssh_probe("ssh", "10.0.0.5", known_host_keys=[ED25519], runner=runner)
    assert runner.known_hosts == "%s %s\n" % (probe.HOST_KEY_ALIAS, " ".join(ED25519.split()[:2]))
    assert "StrictHostKeyChecking=yes" in runner.calls[0][0]


def test_ssh_probe_host_key_mismatch_fails():
    runner = FakeRunner(255, "", "No ED25519 host key is known for x and you have requested strict checking.\n"
                                 "Host key verification failed.\n")
    with pytest.raises(common.HostStatusError, match="none of known_host_keys") as info:
        probe.ssh_probe("ssh", "10.0.0.5", known_host_keys=[ED25519], runner=runner)
    assert info.value.result["ip"] == "10.0.0.5"


def test_ssh_probe_failures():
    assert probe.ssh_probe("ssh", "h", runner=FakeRunner(255, "", "ssh: connect to host h port 22: Connection refused"))["outcome"] == "closed"
    assert probe.ssh_probe("ssh", "h", runner=FakeRunner(None, "", ""))["outcome"] == "timeout"
    assert probe.ssh_probe("ssh", "h", runner=FakeRunner(1, "Only sftp allowed\n", ""))["outcome"] == "garbled"


def test_ssh_probe_missing_ssh():
    def runner(argv, timeout=None):
        raise FileNotFoundError(argv[0])
    with pytest.raises(common.HostStatusError, match="openssh-client"):
        probe.ssh_probe("/nonexistent/ssh", "h", runner=runner)


def test_ssh_probe_passes_the_version_on():
    runner = FakeRunner(0, probe_output("ID=nixos", SYSTEM))
    probe.ssh_probe("ssh", "10.0.0.5", runner=runner, ssh_version=(9, 2))
    assert "KnownHostsCommand=none" in runner.calls[0][0]
    runner = FakeRunner(0, probe_output("ID=nixos", SYSTEM))
    probe.ssh_probe("ssh", "10.0.0.5", runner=runner, ssh_version=(8, 4))
    assert "KnownHostsCommand=none" not in runner.calls[0][0] and "ControlPath=none" in runner.calls[0][0]


def test_ssh_probe_refuses_a_temporary_directory_ssh_would_split(tmp_path, monkeypatch):
    spaced = tmp_path / "my tmp"
    spaced.mkdir()
    monkeypatch.setattr(probe.tempfile, "tempdir", str(spaced))
    runner = FakeRunner(0, probe_output("ID=nixos", SYSTEM))
    with pytest.raises(common.HostStatusError, match="cannot check 10.0.0.5: the known hosts file .* holds whitespace.*TMPDIR"):
        probe.ssh_probe("ssh", "10.0.0.5", runner=runner)
    assert runner.calls == []


def test_find_ssh_missing():
    with pytest.raises(common.HostStatusError, match="openssh-client"):
        probe.find_ssh("no-such-ssh-client-here")


# --- nix eval -----------------------------------------------------------------------------------


def test_evaluate_expected_system(tmp_path):
    nix = tmp_path / "nix"
    nix.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    nix.chmod(0o755)
    calls = []

    def runner(argv, cwd=None, env=None, timeout=None):
        calls.append(argv)
        return 0, '"%s"\n' % SYSTEM, ""

    assert probe.evaluate_expected_system("path:/site", "web1", nix=str(nix), runner=runner) == SYSTEM
    assert calls[0][0] == str(nix) and calls[0][-1] == "path:/site#nixosConfigurations.web1.config.system.build.toplevel.outPath"
    assert "--no-write-lock-file" in calls[0] and "--override-input" not in calls[0]
    probe.evaluate_expected_system(".", "web.1", nix=str(nix), runner=runner)
    assert calls[1][-1] == '.#nixosConfigurations."web.1".config.system.build.toplevel.outPath'


def test_evaluate_expected_system_with_the_run_overrides(tmp_path):
    """As nix_build builds it: the collection's agent as nixie-metal, and the user's own overrides."""
    nix = tmp_path / "nix"
    nix.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    nix.chmod(0o755)
    root = tmp_path / "collection"
    (root / "nix").mkdir(parents=True)
    (root / "flake.nix").write_text("{ }", encoding="utf-8")
    seen = []

    def runner(argv, cwd=None, env=None, timeout=None):
        copy = argv[argv.index("nixie-metal") + 1][len("path:"):]
        seen.append((argv, os.path.isfile(os.path.join(copy, "flake.nix"))))
        return 0, '"%s"' % SYSTEM, "warning: Git tree '/site' is dirty\n"

    warnings = []
    assert probe.evaluate_expected_system("path:/site", "web1", nix=str(nix), runner=runner, agent_flake=str(root),
                                          override_inputs={"nixpkgs": "path:/m"}, warnings=warnings) == SYSTEM
    argv, copied = seen[0]
    assert copied and argv[argv.index("nixpkgs") - 1] == "--override-input" and argv[argv.index("nixpkgs") + 1] == "path:/m"
    assert warnings == ["nix: warning: Git tree '/site' is dirty"]


def test_evaluate_expected_system_failure_has_tail(tmp_path):
    nix = tmp_path / "nix"
    nix.write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    nix.chmod(0o755)
    err = "\x1b[31;1merror:\x1b[0m flake 'path:/site' does not provide attribute 'nixosConfigurations.web9'\n"

    def runner(argv, cwd=None, env=None, timeout=None):
        return 1, "", err

    with pytest.raises(common.HostStatusError) as info:
        probe.evaluate_expected_system("path:/site", "web9", nix=str(nix), runner=runner)
    assert "nix eval of path:/site#nixosConfigurations.web9.config.system.build.toplevel.outPath failed" in info.value.msg
    assert "exit 1" in info.value.msg and "Check nixosConfigurations.web9 in the flake path:/site" in info.value.msg
    assert "does not provide attribute 'nixosConfigurations.web9'" in info.value.msg
    assert "\x1b" not in info.value.msg


def test_evaluate_expected_system_missing_nix():
    with pytest.raises(common.HostStatusError, match="cannot evaluate"):
        probe.evaluate_expected_system("path:/site", "web1", nix="/nonexistent/nix")


def test_evaluate_expected_system_timeout(tmp_path):
    nix = tmp_path / "nix"
    nix.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    nix.chmod(0o755)

    def runner(argv, cwd=None, env=None, timeout=None):
        raise nix_errors.NixTimeout("nix eval ran out of time after 5 seconds and was stopped", cmd=argv)

    with pytest.raises(common.HostStatusError, match="ran out of time"):
        probe.evaluate_expected_system("path:/site", "web1", nix=str(nix), runner=runner, timeout=5)
