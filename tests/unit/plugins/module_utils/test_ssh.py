# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ssh options every ssh call gives first (plugins/module_utils/_ssh.py): the version read, the list, and
the real OpenSSH client's own reading of them (``ssh -G``, which resolves the options without connecting)
against a configuration that sets the opposite of each."""

from __future__ import annotations

import subprocess

import pytest

from ansible_collections.nixie.metal.plugins.module_utils import _ssh

# What `ssh -V` printed on real systems.
DEBIAN_12 = "OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024\n"
UBUNTU_20_04 = "OpenSSH_8.2p1 Ubuntu-4ubuntu0.11, OpenSSL 1.1.1f  31 Mar 2020\n"
RHEL_8 = "OpenSSH_8.0p1, OpenSSL 1.1.1k  FIPS 25 Mar 2021\n"
FEDORA_34 = "OpenSSH_8.5p1, OpenSSL 1.1.1k  FIPS 25 Mar 2021\n"
DEBIAN_11 = "OpenSSH_8.4p1 Debian-5+deb11u3, OpenSSL 1.1.1w  11 Sep 2023\n"
MACOS_15 = "OpenSSH_9.8p1, LibreSSL 3.3.6\n"
WINDOWS = "OpenSSH_for_Windows_9.5p1, LibreSSL 3.8.2\n"
OPENSSH_10 = "OpenSSH_10.0p2 Debian-5, OpenSSL 3.5.0 8 Apr 2025\n"


@pytest.mark.parametrize("text, version", [
    (DEBIAN_12, (9, 2)),
    (UBUNTU_20_04, (8, 2)),
    (RHEL_8, (8, 0)),
    (DEBIAN_11, (8, 4)),
    (FEDORA_34, (8, 5)),
    (MACOS_15, (9, 8)),
    (WINDOWS, (9, 5)),
    (OPENSSH_10, (10, 0)),
    # A warning before the version line (a broken ~/.ssh/config is not read by -V, but a loader may talk).
    ("ld.so: object 'libfoo.so' cannot be preloaded: ignored.\nOpenSSH_9.6p1 Ubuntu-3ubuntu13.5, OpenSSL 3.0.13\n", (9, 6)),
])
def test_parse_ssh_version(text, version):
    assert _ssh.parse_ssh_version(text) == version


@pytest.mark.parametrize("text", [
    "",
    None,
    "Dropbear v2022.83\n",
    "ssh: illegal option -- V\nusage: ssh [-46AaCfGgKkMNnqsTtVvXxYy] ...\n",
    "OpenSSH_x.y\n",
    "OpenSSH 9.2\n",
    "NotOpenSSH_9.2p1\n",
])
def test_parse_ssh_version_junk(text):
    assert _ssh.parse_ssh_version(text) is None


def test_pinned_options_84_has_no_known_hosts_command():
    assert _ssh.pinned_options((8, 4)) == ["ControlMaster=no", "ControlPath=none", "VerifyHostKeyDNS=no"]


@pytest.mark.parametrize("version", [(8, 5), (8, 9), (9, 0), (9, 2), (10, 0)])
def test_pinned_options_85_and_newer_turn_off_known_hosts_command(version):
    assert _ssh.pinned_options(version) == ["ControlMaster=no", "ControlPath=none", "VerifyHostKeyDNS=no",
                                            "KnownHostsCommand=none"]


@pytest.mark.parametrize("version", [(7, 4), (8, 0), (8, 4), None])
def test_pinned_options_older_or_unknown_leave_known_hosts_command_out(version):
    # An older ssh stops on the option ("Bad configuration option"); an unknown one is treated as older.
    assert "KnownHostsCommand=none" not in _ssh.pinned_options(version)
    assert _ssh.pinned_options(version)[:2] == ["ControlMaster=no", "ControlPath=none"]


def test_pinned_options_is_a_new_list_each_time():
    _ssh.pinned_options((9, 2)).append("ControlMaster=auto")
    assert "ControlMaster=auto" not in _ssh.pinned_options((9, 2))


def test_known_hosts_options_strict_and_accept_new():
    assert _ssh.known_hosts_options("/run/x/known_hosts") == [
        "StrictHostKeyChecking=yes", "UserKnownHostsFile=/run/x/known_hosts", "GlobalKnownHostsFile=/dev/null",
        "CheckHostIP=no", "UpdateHostKeys=no"]
    assert _ssh.known_hosts_options("/run/x/kh", strict=False)[0] == "StrictHostKeyChecking=accept-new"


@pytest.mark.parametrize("path, says", [
    ("/tmp/my dir/known_hosts", "holds whitespace"),
    ("/tmp/dir\t/known_hosts", "holds whitespace"),
    ('/tmp/"q"/known_hosts', "a quote"),
    ("/tmp/100%d/known_hosts", "%"),
    ("/tmp/${HOME}/known_hosts", "$"),
    ("known_hosts", "not an absolute path"),
    ("~/known_hosts", "not an absolute path"),
])
def test_known_hosts_options_refuse_a_path_ssh_would_split_or_expand(path, says):
    with pytest.raises(ValueError, match="known hosts file") as info:
        _ssh.known_hosts_options(path)
    assert says in str(info.value) and repr(path) in str(info.value)


def test_option_args():
    assert _ssh.option_args(["A=1", "B=2"]) == ["-o", "A=1", "-o", "B=2"]
    assert _ssh.option_args([]) == []


def test_version_warning_only_when_unknown():
    assert _ssh.version_warning("/usr/bin/ssh", DEBIAN_12, (9, 2)) == ""
    warning = _ssh.version_warning("/usr/bin/ssh", "Dropbear v2022.83\n", None)
    assert "could not tell the OpenSSH version of /usr/bin/ssh" in warning
    assert "Dropbear v2022.83" in warning and "KnownHostsCommand=none is not given" in warning
    assert "(no output)" in _ssh.version_warning("ssh", "", None)


def test_client_options_for_the_role():
    got = _ssh.client_options("/usr/bin/ssh", DEBIAN_12, "/tmp/r/known_hosts")
    assert got["version"] == "9.2" and got["warning"] == "" and got["problem"] == ""
    assert got["options"] == _ssh.pinned_options((9, 2)) + _ssh.known_hosts_options("/tmp/r/known_hosts")
    assert got["args"] == _ssh.option_args(got["options"])
    unpinned = _ssh.client_options("/usr/bin/ssh", DEBIAN_11)
    assert unpinned["options"] == _ssh.pinned_options((8, 4)) and unpinned["version"] == "8.4"


def test_client_options_unknown_version_and_bad_path():
    got = _ssh.client_options("ssh", "junk", "/tmp/my dir/known_hosts")
    assert got["version"] is None and "could not tell" in got["warning"]
    assert "holds whitespace" in got["problem"]
    # Nothing of the pinning when the path is refused: the caller stops on the problem.
    assert got["options"] == _ssh.pinned_options(None)


def test_read_version_of_a_missing_client():
    assert _ssh.read_version("/nonexistent/ssh") == ""


# --- the real client: ssh -G against a configuration that says the opposite ---------------------------------

OPPOSITE = """\
Host *
    ControlMaster auto
    ControlPath {tmp}/cm-%r@%h:%p
    ControlPersist yes
    VerifyHostKeyDNS yes
    KnownHostsCommand /bin/echo "* ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDoZHtpvBvp3Kt0mQLz6sRa1lt45wIpMApw3u3Xn161H"
    StrictHostKeyChecking no
    UserKnownHostsFile {tmp}/operator_known_hosts
    GlobalKnownHostsFile {tmp}/global_known_hosts
    CheckHostIP yes
    UpdateHostKeys yes
"""


def resolved(tmp_path, args):
    """What ssh -G makes of the opposite configuration with ``args`` first: {option: value}."""
    config = tmp_path / "config"
    config.write_text(OPPOSITE.format(tmp=tmp_path), encoding="utf-8")
    proc = subprocess.run(["ssh", "-G", "-F", str(config)] + args + ["198.51.100.2"], check=True,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    values = {}
    for line in proc.stdout.splitlines():
        name, _sep, value = line.partition(" ")
        values[name] = value
    return values


def test_the_installed_client_names_its_version():
    # The collection's own calls read it the same way; scripts/setup installs openssh-client.
    assert _ssh.parse_ssh_version(_ssh.read_version("ssh")) is not None


def test_the_configuration_alone_says_the_opposite(tmp_path):
    # The control: without our options, the real client takes every value of the configuration.
    values = resolved(tmp_path, [])
    assert values["controlmaster"] == "auto"
    assert values["controlpath"] == "%s/cm-root@198.51.100.2:22" % tmp_path
    assert values["verifyhostkeydns"] == "true"
    assert values["knownhostscommand"].startswith("/bin/echo")
    assert values["stricthostkeychecking"] == "false"
    assert values["userknownhostsfile"] == "%s/operator_known_hosts" % tmp_path
    assert values["checkhostip"] == "yes"
    assert values["updatehostkeys"] == "true"


@pytest.mark.parametrize("strict, checking", [(True, "true"), (False, "accept-new")])
def test_our_options_win_over_the_configuration(tmp_path, strict, checking):
    version = _ssh.parse_ssh_version(_ssh.read_version("ssh"))
    known_hosts = str(tmp_path / "pinned_known_hosts")
    values = resolved(tmp_path, _ssh.option_args(_ssh.pinned_options(version)
                                                 + _ssh.known_hosts_options(known_hosts, strict=strict)))
    assert values["controlmaster"] == "false"
    # ControlPath=none: no path at all, so no master is looked for.
    assert "controlpath" not in values
    assert values["verifyhostkeydns"] == "false"
    # KnownHostsCommand=none (the client is 8.5 or newer: an older one stops on the configuration above).
    assert "knownhostscommand" not in values
    assert values["stricthostkeychecking"] == checking
    assert values["userknownhostsfile"] == known_hosts
    assert values["globalknownhostsfile"] == "/dev/null"
    assert values["checkhostip"] == "no"
    assert values["updatehostkeys"] == "false"
