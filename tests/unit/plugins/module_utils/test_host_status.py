# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_status logic (plugins/module_utils/_host_status.py) without network, SSH or nix: the
processes are fakes here. The real thing runs in tests/integration/targets/host_status."""

from __future__ import annotations

import ipaddress
import json
import os
import sys

import pytest

from ansible_collections.nixie.metal.plugins.module_utils import _host_status as hs
from ansible_collections.nixie.metal.plugins.module_utils import _ssh
from ansible_collections.nixie.metal.plugins.module_utils._nix import errors as nix_errors

MAC = "52:54:00:12:34:01"
SYSTEM = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-web1"
OTHER = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-web1"
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDoZHtpvBvp3Kt0mQLz6sRa1lt45wIpMApw3u3Xn161H root@nixie-lab"
ECDSA = ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBF7rt0G4uDG0ZTIqEHfKO/7V/YjpktI/uao9QW8H3XIIA"
         "GzAGmx2GNwVD8j3RL76UeOZkyTcA5ENV9Hm02HcOkA=")

# What `ip -j neigh show` printed in a lab namespace (iproute2 6.1), plus made-up neighbours.
NEIGH_JSON = json.dumps([
    {"dst": "10.77.0.173", "dev": "br0", "lladdr": "52:54:00:12:34:01", "state": ["STALE"]},
    {"dst": "10.77.0.2", "dev": "br0", "lladdr": "aa:bb:cc:00:00:02", "state": ["REACHABLE"]},
    {"dst": "fd77::5054:ff:fe12:3401", "dev": "br0", "lladdr": "52:54:00:12:34:01", "router": None, "state": ["REACHABLE"]},
    {"dst": "fe80::5054:ff:fe12:3401", "dev": "br0", "lladdr": "52:54:00:12:34:01", "state": ["REACHABLE"]},
    {"dst": "10.77.0.150", "dev": "br0", "state": ["FAILED"]},
    {"dst": "10.77.0.151", "dev": "br0", "lladdr": "52:54:00:12:34:01", "state": ["INCOMPLETE"]},
])

ADDR_JSON = json.dumps([
    {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"],
     "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifindex": 4, "ifname": "br0", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
     "addr_info": [{"family": "inet", "local": "10.77.0.1", "prefixlen": 24}]},
    {"ifindex": 5, "ifname": "wlan0", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
     "addr_info": [{"family": "inet", "local": "172.16.3.4", "prefixlen": 16}]},
    {"ifindex": 6, "ifname": "eth9", "flags": ["BROADCAST", "MULTICAST"],
     "addr_info": [{"family": "inet", "local": "192.168.9.1", "prefixlen": 24}]},
])


def probe_output(os_release, current=""):
    return "motd line\n%s\nos-release:\n%s\n\ncurrent-system:\n%s\n%s\n" % (hs.BEGIN, os_release, current, hs.END)


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
    values = hs.parse_os_release(text)
    assert values["ID"] == "nixos"
    assert values["PRETTY_NAME"] == "NixOS 24.05 (Uakari)"
    assert values["VERSION"] == "24.05 (Uakari)"
    assert values["QUOTED"] == 'a "b" $c'
    assert "9BAD" not in values


def test_parse_os_release_empty_and_debian():
    assert hs.parse_os_release("") == {}
    assert hs.parse_os_release(None) == {}
    assert hs.parse_os_release('ID=debian\nID_LIKE=""\n')["ID"] == "debian"


def test_parse_probe_output():
    os_release, current = hs.parse_probe_output(probe_output("ID=nixos\nNAME=NixOS", SYSTEM + "/"))
    assert os_release["ID"] == "nixos"
    assert current == SYSTEM


def test_parse_probe_output_without_current_system():
    os_release, current = hs.parse_probe_output(probe_output('ID="nixie-lab-installer"'))
    assert os_release == {"ID": "nixie-lab-installer"}
    assert current is None


def test_parse_probe_output_garbled():
    assert hs.parse_probe_output("This account is restricted\n") is None
    assert hs.parse_probe_output(hs.BEGIN + "\nsomething\n") is None
    assert hs.parse_probe_output(hs.BEGIN + "\nno sections\n" + hs.END) is None


def test_remote_command_runs_under_sh(tmp_path):
    """The remote command, run by a POSIX sh on a fake root, prints what the parser reads."""
    sh = "/bin/sh"
    if not os.path.exists(sh):
        pytest.skip("no /bin/sh")
    command = hs.REMOTE_COMMAND.replace("/etc/os-release", str(tmp_path / "os-release")) \
        .replace("/usr/lib/os-release", str(tmp_path / "none")).replace("/run/current-system", str(tmp_path / "current"))
    (tmp_path / "os-release").write_text("ID=nixos\n", encoding="utf-8")
    target = tmp_path / "store" / "x-nixos-system"
    target.mkdir(parents=True)
    rc, out, dummy = hs.run([sh, "-c", command])
    assert rc == 0
    assert hs.parse_probe_output(out) == ({"ID": "nixos"}, None)
    (tmp_path / "current").symlink_to(target)
    rc, out, dummy = hs.run([sh, "-c", command])
    assert hs.parse_probe_output(out) == ({"ID": "nixos"}, str(target))


# --- neighbours, addresses, sweep targets -----------------------------------------------


def test_parse_neighbours():
    entries = hs.parse_neighbours(NEIGH_JSON)
    assert entries[0] == {"ip": "10.77.0.173", "dev": "br0", "mac": MAC, "states": ["STALE"]}
    assert entries[4]["mac"] is None
    assert hs.parse_neighbours("") == []
    assert hs.parse_neighbours('[{"dst": "1.2.3.4", "state": "reachable", "lladdr": "52-54-00-12-34-01"}]')[0] == {
        "ip": "1.2.3.4", "dev": None, "mac": MAC, "states": ["REACHABLE"]}
    with pytest.raises(hs.HostStatusError, match="ip -j neigh"):
        hs.parse_neighbours("not json")


def test_neighbour_candidates_trusted_and_stale():
    entries = hs.parse_neighbours(NEIGH_JSON)
    trusted, stale = hs.neighbour_candidates(entries, MAC)
    # Link-local IPv6 is never used; FAILED/INCOMPLETE entries are ignored.
    assert trusted == ["fd77::5054:ff:fe12:3401"]
    assert stale == ["10.77.0.173"]
    assert hs.neighbour_candidates(entries, MAC, interface="eth0") == ([], [])
    assert hs.neighbour_candidates(entries, "52:54:00:99:99:99") == ([], [])


def test_neighbour_candidates_prefers_ipv4():
    entries = [{"ip": "fd77::10", "dev": "br0", "mac": MAC, "states": ["REACHABLE"]},
               {"ip": "10.0.0.9", "dev": "br0", "mac": MAC, "states": ["REACHABLE"]},
               {"ip": "10.0.0.3", "dev": "br0", "mac": MAC, "states": ["PERMANENT"]}]
    assert hs.neighbour_candidates(entries, MAC)[0] == ["10.0.0.3", "10.0.0.9", "fd77::10"]


def test_serving_ipv4_skips_loopback_and_down():
    assert hs.serving_ipv4(json.loads(ADDR_JSON)) == [("br0", ipaddress.ip_interface("10.77.0.1/24")),
                                                      ("wlan0", ipaddress.ip_interface("172.16.3.4/16"))]


def test_sweep_targets_default_skips_big_subnets():
    warnings = []
    targets = hs.sweep_targets(hs.serving_ipv4(json.loads(ADDR_JSON)), warnings=warnings)
    assert targets == [("br0", ipaddress.ip_network("10.77.0.0/24"))]
    assert "172.16.0.0/16" in warnings[0]


def test_sweep_targets_interface_and_subnet():
    addresses = hs.serving_ipv4(json.loads(ADDR_JSON))
    assert hs.sweep_targets(addresses, interface="br0") == [("br0", ipaddress.ip_network("10.77.0.0/24"))]
    assert hs.sweep_targets(addresses, subnet="10.77.0.128/25") == [("br0", ipaddress.ip_network("10.77.0.128/25"))]
    assert hs.sweep_targets(addresses, subnet="172.16.8.7/22") == [("wlan0", ipaddress.ip_network("172.16.8.0/22"))]
    assert hs.sweep_targets(addresses, interface="eth5", subnet="10.9.0.0/24") == [("eth5", ipaddress.ip_network("10.9.0.0/24"))]


@pytest.mark.parametrize("kwargs, message", [
    ({"interface": "eth9"}, "interface eth9 has no IPv4 address"),
    ({"subnet": "10.99.0.0/24"}, "no interface of this machine has an address in 10.99.0.0/24"),
    ({"subnet": "10.0.0.0/8"}, "too slow"),
    ({"subnet": "fd77::/64"}, "IPv4"),
    ({"subnet": "banana"}, "not an IP network"),
])
def test_sweep_targets_errors(kwargs, message):
    with pytest.raises(hs.HostStatusError, match=message):
        hs.sweep_targets(hs.serving_ipv4(json.loads(ADDR_JSON)), **kwargs)


def test_sweep_targets_nothing_to_sweep():
    with pytest.raises(hs.HostStatusError, match="no directly connected IPv4 subnet"):
        hs.sweep_targets([("wlan0", ipaddress.ip_interface("172.16.3.4/16"))])


# --- command lines ------------------------------------------------------------------------


def test_ssh_command_accept_new():
    argv = hs.ssh_command("/usr/bin/ssh", "10.77.0.173", "/tmp/kh", timeout=7)
    assert argv[0] == "/usr/bin/ssh"
    assert argv[-3:] == ["--", "10.77.0.173", hs.REMOTE_COMMAND]
    options = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    assert "BatchMode=yes" in options
    assert "ConnectTimeout=7" in options
    assert "StrictHostKeyChecking=accept-new" in options
    assert "UserKnownHostsFile=/tmp/kh" in options
    assert "GlobalKnownHostsFile=/dev/null" in options
    assert "HostKeyAlias=%s" % hs.HOST_KEY_ALIAS in options
    assert argv[argv.index("-l") + 1] == "root"
    assert argv[argv.index("-p") + 1] == "22"
    assert "-i" not in argv


def test_ssh_command_gives_the_pinned_options_first():
    argv = hs.ssh_command("/usr/bin/ssh", "10.77.0.173", "/tmp/kh", strict=True, ssh_version=(9, 2))
    pinned = _ssh.option_args(_ssh.pinned_options((9, 2)) + _ssh.known_hosts_options("/tmp/kh"))
    assert argv[4:4 + len(pinned)] == pinned
    assert "ControlMaster=no" in pinned and "ControlPath=none" in pinned and "KnownHostsCommand=none" in pinned


@pytest.mark.parametrize("version", [(8, 4), None])
def test_ssh_command_accept_new_is_isolated_too(version):
    # No known keys yet, but still a connection of its own: a shared master would answer for whoever it reached.
    argv = hs.ssh_command("ssh", "10.77.0.173", "/tmp/kh", ssh_version=version)
    options = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    assert options[:3] == ["ControlMaster=no", "ControlPath=none", "VerifyHostKeyDNS=no"]
    assert "StrictHostKeyChecking=accept-new" in options
    # An 8.4 client stops on KnownHostsCommand; an unknown one is treated as older.
    assert not any(option.startswith("KnownHostsCommand") for option in options)


def test_ssh_command_strict_with_key_and_port():
    argv = hs.ssh_command("ssh", "fd77::10", "/tmp/kh", user="admin", port=2222, key="/k/id", strict=True)
    assert "StrictHostKeyChecking=yes" in argv
    assert argv[argv.index("-i") + 1] == "/k/id"
    assert "IdentitiesOnly=yes" in argv
    assert argv[argv.index("-p") + 1] == "2222"
    assert argv[argv.index("-l") + 1] == "admin"


def test_known_hosts_lines():
    assert hs.known_hosts_lines([ED25519, ECDSA]) == [
        "%s %s" % (hs.HOST_KEY_ALIAS, " ".join(ED25519.split()[:2])),
        "%s %s" % (hs.HOST_KEY_ALIAS, ECDSA),
    ]
    for bad in ("ssh-ed25519", "AAAAC3Nz", "ssh-foo AAAA", "ssh-ed25519 not*base64"):
        with pytest.raises(hs.HostStatusError, match="not an SSH public key"):
            hs.known_hosts_lines([bad])


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
    assert hs.classify_ssh_failure(stderr) == kind


def probe(outcome="ok", os_id=None, current=None, stderr=""):
    return {"outcome": outcome, "os_id": os_id, "current_system": current, "stderr": stderr}


@pytest.mark.parametrize("ip, found, expected, state", [
    (None, None, SYSTEM, "absent"),
    ("10.0.0.5", probe("closed"), SYSTEM, "absent"),
    ("10.0.0.5", probe("unreachable"), SYSTEM, "absent"),
    ("10.0.0.5", probe("auth", stderr="Permission denied (publickey)."), SYSTEM, "unknown_os"),
    ("10.0.0.5", probe("other"), SYSTEM, "unknown_os"),
    ("10.0.0.5", probe("timeout"), SYSTEM, "unknown_os"),
    ("10.0.0.5", probe("garbled"), SYSTEM, "unknown_os"),
    ("10.0.0.5", probe(os_id="nixie-lab-installer"), SYSTEM, "unknown_os"),
    ("10.0.0.5", probe(os_id=None), SYSTEM, "unknown_os"),
    ("10.0.0.5", probe(os_id="debian", current=SYSTEM), SYSTEM, "unknown_os"),
    ("10.0.0.5", probe(os_id="nixos"), SYSTEM, "other_system"),
    ("10.0.0.5", probe(os_id="nixos", current=OTHER), SYSTEM, "other_system"),
    ("10.0.0.5", probe(os_id="nixos", current=SYSTEM), None, "other_system"),
    ("10.0.0.5", probe(os_id="nixos", current=SYSTEM), SYSTEM, "installed"),
    ("10.0.0.5", probe(os_id="nixos", current=SYSTEM), SYSTEM + "/", "installed"),
])
def test_classify(ip, found, expected, state):
    got, reason = hs.classify(ip, found, expected)
    assert got == state
    assert reason


def test_classify_reasons_name_the_cause():
    assert "Permission denied" in hs.classify("10.0.0.5", probe("auth", stderr="x\nroot@h: Permission denied (publickey).\n"), SYSTEM)[1]
    assert "ID=debian" in hs.classify("10.0.0.5", probe(os_id="debian"), SYSTEM)[1]
    assert OTHER in hs.classify("10.0.0.5", probe(os_id="nixos", current=OTHER), SYSTEM)[1]


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
    found = hs.ssh_probe("ssh", "10.0.0.5", runner=runner, timeout=5)
    assert found["outcome"] == "ok" and found["os_id"] == "nixos" and found["current_system"] == SYSTEM
    assert runner.known_hosts == ""
    assert "StrictHostKeyChecking=accept-new" in runner.calls[0][0]
    assert runner.calls[0][1] == 20


def test_ssh_probe_strict_known_hosts():
    runner = FakeRunner(0, probe_output("ID=nixos", SYSTEM))
    hs.ssh_probe("ssh", "10.0.0.5", known_host_keys=[ED25519], runner=runner)
    assert runner.known_hosts == "%s %s\n" % (hs.HOST_KEY_ALIAS, " ".join(ED25519.split()[:2]))
    assert "StrictHostKeyChecking=yes" in runner.calls[0][0]


def test_ssh_probe_host_key_mismatch_fails():
    runner = FakeRunner(255, "", "No ED25519 host key is known for x and you have requested strict checking.\n"
                                 "Host key verification failed.\n")
    with pytest.raises(hs.HostStatusError, match="none of known_host_keys") as info:
        hs.ssh_probe("ssh", "10.0.0.5", known_host_keys=[ED25519], runner=runner)
    assert info.value.result["ip"] == "10.0.0.5"


def test_ssh_probe_failures():
    assert hs.ssh_probe("ssh", "h", runner=FakeRunner(255, "", "ssh: connect to host h port 22: Connection refused"))["outcome"] == "closed"
    assert hs.ssh_probe("ssh", "h", runner=FakeRunner(None, "", ""))["outcome"] == "timeout"
    assert hs.ssh_probe("ssh", "h", runner=FakeRunner(1, "Only sftp allowed\n", ""))["outcome"] == "garbled"


def test_ssh_probe_missing_ssh():
    def runner(argv, timeout=None):
        raise FileNotFoundError(argv[0])
    with pytest.raises(hs.HostStatusError, match="openssh-client"):
        hs.ssh_probe("/nonexistent/ssh", "h", runner=runner)


def test_ssh_probe_passes_the_version_on():
    runner = FakeRunner(0, probe_output("ID=nixos", SYSTEM))
    hs.ssh_probe("ssh", "10.0.0.5", runner=runner, ssh_version=(9, 2))
    assert "KnownHostsCommand=none" in runner.calls[0][0]
    runner = FakeRunner(0, probe_output("ID=nixos", SYSTEM))
    hs.ssh_probe("ssh", "10.0.0.5", runner=runner, ssh_version=(8, 4))
    assert "KnownHostsCommand=none" not in runner.calls[0][0] and "ControlPath=none" in runner.calls[0][0]


def test_ssh_probe_refuses_a_temporary_directory_ssh_would_split(tmp_path, monkeypatch):
    spaced = tmp_path / "my tmp"
    spaced.mkdir()
    monkeypatch.setattr(hs.tempfile, "tempdir", str(spaced))
    runner = FakeRunner(0, probe_output("ID=nixos", SYSTEM))
    with pytest.raises(hs.HostStatusError, match="cannot check 10.0.0.5: the known hosts file .* holds whitespace.*TMPDIR"):
        hs.ssh_probe("ssh", "10.0.0.5", runner=runner)
    assert runner.calls == []


def test_find_ssh_missing():
    with pytest.raises(hs.HostStatusError, match="openssh-client"):
        hs.find_ssh("no-such-ssh-client-here")


# --- nix eval -----------------------------------------------------------------------------------


def test_evaluate_expected_system(tmp_path):
    nix = tmp_path / "nix"
    nix.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    nix.chmod(0o755)
    calls = []

    def runner(argv, cwd=None, env=None, timeout=None):
        calls.append(argv)
        return 0, '"%s"\n' % SYSTEM, ""

    assert hs.evaluate_expected_system("path:/site", "web1", nix=str(nix), runner=runner) == SYSTEM
    assert calls[0][0] == str(nix) and calls[0][-1] == "path:/site#nixosConfigurations.web1.config.system.build.toplevel.outPath"
    assert "--no-write-lock-file" in calls[0] and "--override-input" not in calls[0]
    hs.evaluate_expected_system(".", "web.1", nix=str(nix), runner=runner)
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
    assert hs.evaluate_expected_system("path:/site", "web1", nix=str(nix), runner=runner, agent_flake=str(root),
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

    with pytest.raises(hs.HostStatusError) as info:
        hs.evaluate_expected_system("path:/site", "web9", nix=str(nix), runner=runner)
    assert "nix eval of path:/site#nixosConfigurations.web9.config.system.build.toplevel.outPath failed" in info.value.msg
    assert "exit 1" in info.value.msg and "Check nixosConfigurations.web9 in the flake path:/site" in info.value.msg
    assert "does not provide attribute 'nixosConfigurations.web9'" in info.value.msg
    assert "\x1b" not in info.value.msg


def test_evaluate_expected_system_missing_nix():
    with pytest.raises(hs.HostStatusError, match="cannot evaluate"):
        hs.evaluate_expected_system("path:/site", "web1", nix="/nonexistent/nix")


def test_evaluate_expected_system_timeout(tmp_path):
    nix = tmp_path / "nix"
    nix.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    nix.chmod(0o755)

    def runner(argv, cwd=None, env=None, timeout=None):
        raise nix_errors.NixTimeout("nix eval ran out of time after 5 seconds and was stopped", cmd=argv)

    with pytest.raises(hs.HostStatusError, match="ran out of time"):
        hs.evaluate_expected_system("path:/site", "web1", nix=str(nix), runner=runner, timeout=5)


# --- address discovery and one run ----------------------------------------------------------


def test_discover_uses_trusted_neighbour_without_sweep():
    def sweep(*args):
        raise AssertionError("no sweep expected")
    neighbours = [{"ip": "10.0.0.5", "dev": "br0", "mac": MAC, "states": ["REACHABLE"]}]
    assert hs.discover_address(MAC, neighbours=lambda i: neighbours, addresses=lambda: [], sweep=sweep) == ("10.0.0.5", "neighbour")


def test_discover_sweeps_when_neighbour_is_stale():
    neighbours = [{"ip": "10.77.0.5", "dev": "br0", "mac": MAC, "states": ["STALE"]}]
    seen = []

    def sweep(targets, mac, timeout):
        seen.append((targets, mac, timeout))
        return ["10.77.0.9"]

    got = hs.discover_address(MAC, arp_timeout=1.5, neighbours=lambda i: neighbours,
                              addresses=lambda: hs.serving_ipv4(json.loads(ADDR_JSON)), sweep=sweep)
    assert got == ("10.77.0.9", "arp")
    assert seen == [([("br0", ipaddress.ip_network("10.77.0.0/24"))], MAC, 1.5)]


def test_discover_prefers_ipv4_over_confirmed_ipv6():
    neighbours = [{"ip": "fd77::10", "dev": "br0", "mac": MAC, "states": ["REACHABLE"]}]

    def addresses():
        return hs.serving_ipv4(json.loads(ADDR_JSON))

    assert hs.discover_address(MAC, neighbours=lambda i: neighbours, addresses=addresses,
                               sweep=lambda *a: ["10.77.0.9"]) == ("10.77.0.9", "arp")
    assert hs.discover_address(MAC, neighbours=lambda i: neighbours, addresses=addresses,
                               sweep=lambda *a: []) == ("fd77::10", "neighbour")


def test_discover_nothing_answers():
    assert hs.discover_address(MAC, neighbours=lambda i: [], addresses=lambda: hs.serving_ipv4(json.loads(ADDR_JSON)),
                               sweep=lambda *a: []) == (None, None)


def test_discover_falls_back_to_stale_when_sweep_impossible():
    neighbours = [{"ip": "10.77.0.5", "dev": "br0", "mac": MAC, "states": ["STALE"]}]

    def sweep(*args):
        raise hs.HostStatusError("the ARP sweep needs root")

    warnings = []
    got = hs.discover_address(MAC, warnings=warnings, neighbours=lambda i: neighbours,
                              addresses=lambda: hs.serving_ipv4(json.loads(ADDR_JSON)), sweep=sweep)
    assert got == ("10.77.0.5", "stale_neighbour")
    assert "needs root" in warnings[-1]
    with pytest.raises(hs.HostStatusError, match="needs root"):
        hs.discover_address(MAC, neighbours=lambda i: [], addresses=lambda: hs.serving_ipv4(json.loads(ADDR_JSON)), sweep=sweep)


def params(**overrides):
    values = dict(mac="52-54-00-12-34-01", address=None, interface=None, subnet=None, arp_timeout=2.0, ssh_user="root",
                  ssh_key=None, ssh_port=22, known_host_keys=[], expected_system=None, flake="path:/site",
                  attribute="web1", nix_executable=None, timeout=10, eval_timeout=600, override_inputs={},
                  agent_flake=None)
    values.update(overrides)
    return values


def fake_probe(found):
    def probe_fn(ssh, ip, **kwargs):
        probe_fn.calls.append((ip, kwargs))
        return found
    probe_fn.calls = []
    return probe_fn


def test_host_status_installed_evaluates_flake():
    evaluated = []

    def evaluate(flake, attribute, nix=None, timeout=None, override_inputs=None, agent_flake=None, warnings=None):
        evaluated.append((flake, attribute, timeout, override_inputs, agent_flake))
        return SYSTEM

    result = hs.host_status(params(override_inputs={"nixpkgs": "path:/m"}, agent_flake="/c"),
                            discover=lambda mac, **kw: ("10.0.0.5", "arp"),
                            probe=fake_probe(probe(os_id="nixos", current=SYSTEM)), evaluate=evaluate)
    assert result["state"] == "installed"
    assert result["mac"] == MAC
    assert result["ip"] == "10.0.0.5" and result["address_source"] == "arp"
    assert result["expected_system"] == SYSTEM and result["current_system"] == SYSTEM
    assert evaluated == [("path:/site", "web1", 600, {"nixpkgs": "path:/m"}, "/c")]


def test_host_status_no_evaluation_when_not_nixos():
    def evaluate(*args, **kwargs):
        raise AssertionError("no evaluation expected")

    result = hs.host_status(params(address="10.0.0.7"), discover=None,
                            probe=fake_probe(probe(os_id="debian")), evaluate=evaluate)
    assert result["state"] == "unknown_os"
    assert result["address_source"] == "address"
    assert result["expected_system"] is None
    assert result["os_id"] == "debian"


def test_host_status_absent():
    probe_fn = fake_probe(None)
    result = hs.host_status(params(expected_system=SYSTEM, flake=None), discover=lambda mac, **kw: (None, None), probe=probe_fn)
    assert result["state"] == "absent" and result["ip"] is None
    assert MAC in result["reason"]
    assert probe_fn.calls == []


def test_host_status_expected_system_given():
    result = hs.host_status(params(address="10.0.0.7", expected_system=SYSTEM + "/", flake=None),
                            probe=fake_probe(probe(os_id="nixos", current=OTHER)))
    assert result["state"] == "other_system"
    assert result["expected_system"] == SYSTEM


def test_host_status_passes_ssh_options(tmp_path):
    key = tmp_path / "id"
    key.write_text("k", encoding="utf-8")
    probe_fn = fake_probe(probe(os_id="nixos", current=SYSTEM))
    hs.host_status(params(address="h", expected_system=SYSTEM, flake=None, ssh_user="admin", ssh_port=2222,
                          ssh_key=str(key), known_host_keys=[ED25519], timeout=3), probe=probe_fn,
                   read_ssh_version=lambda ssh: "OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15\n")
    assert probe_fn.calls == [("h", {"user": "admin", "port": 2222, "key": str(key), "known_host_keys": [ED25519], "timeout": 3,
                                     "ssh_version": (9, 2)})]


def test_host_status_unknown_ssh_version_is_said():
    probe_fn = fake_probe(probe(os_id="nixos", current=SYSTEM))
    warnings = []
    result = hs.host_status(params(address="h", expected_system=SYSTEM, flake=None), warnings=warnings, probe=probe_fn,
                            read_ssh_version=lambda ssh: "Dropbear v2022.83\n")
    assert result["state"] == "installed"
    assert probe_fn.calls[0][1]["ssh_version"] is None
    assert len(warnings) == 1 and "could not tell the OpenSSH version" in warnings[0] and "Dropbear" in warnings[0]


def test_host_status_reads_no_version_without_an_address():
    def read_ssh_version(ssh):
        raise AssertionError("no ssh without an address")

    result = hs.host_status(params(expected_system=SYSTEM, flake=None), discover=lambda mac, **kw: (None, None),
                            probe=fake_probe(None), read_ssh_version=read_ssh_version)
    assert result["state"] == "absent"


@pytest.mark.parametrize("overrides, message", [
    ({"mac": "52:54:00:12:34"}, "not a MAC address"),
    ({"expected_system": "nix/store/x", "flake": None}, "absolute store path"),
    ({"ssh_key": "/nonexistent/key"}, "does not exist"),
    ({"known_host_keys": ["ssh-ed25519"]}, "not an SSH public key"),
    ({"override_inputs": {"nix pkgs": "path:/m"}}, "override_inputs: 'nix pkgs' is not an input name"),
])
def test_host_status_bad_options(overrides, message):
    with pytest.raises(hs.HostStatusError, match=message):
        hs.host_status(params(**overrides), discover=None, probe=None, evaluate=None)


def test_host_status_error_carries_partial_result():
    def probe_fn(ssh, ip, **kwargs):
        raise hs.HostStatusError("key mismatch", ip=ip)

    with pytest.raises(hs.HostStatusError) as info:
        hs.host_status(params(), discover=lambda mac, **kw: ("10.0.0.5", "neighbour"), probe=probe_fn)
    assert info.value.result["ip"] == "10.0.0.5"
    assert info.value.result["address_source"] == "neighbour"
    assert info.value.result["mac"] == MAC


def test_scapy_is_not_imported_at_module_load():
    """Importing the module_utils must not pull in scapy (0.2-0.4 s, tens of MiB)."""
    code = ("import sys; from ansible_collections.nixie.metal.plugins.module_utils import _host_status; "
            "print(any(m == 'scapy' or m.startswith('scapy.') for m in sys.modules))")
    # <root>/ansible_collections/nixie/metal/plugins/module_utils/_host_status.py, not resolved: the
    # collection may be a symlink, and ansible-test loads collections without PYTHONPATH.
    root = os.path.abspath(hs.__file__)
    for dummy in range(6):
        root = os.path.dirname(root)
    rc, out, err = hs.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=root))
    assert rc == 0, err
    assert out.strip() == "False"
