# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The preflight's verdicts (plugins/module_utils/_preflight), fed with what the real tools print.

The firewall rulesets under fixtures/firewall were written by the real nft, iptables-nft and
iptables-legacy in a scratch network namespace (their rules are in each test's docstring).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import boot_client
from ansible_collections.nixie.metal.plugins.module_utils._preflight import (
    checks, firewall, ipxe, keys, ports, report, site_dhcp, tools)

FIXTURES = Path(__file__).parent / "fixtures" / "firewall"


# -- report ---------------------------------------------------------------------------

def test_table_shows_a_hint_under_a_failing_row_and_marks_ignored_rows():
    rows = [report.passed("nix", "Nix 2.24"), report.failed("ports", "UDP 67 taken", "stop dnsmasq"),
            report.failed("firewall", "may drop UDP 67", "open it")]
    lines = report.table(rows, ignore=["firewall"])
    assert lines[0].split() == ["nix", "ok", "Nix", "2.24"]
    assert lines[1].split()[:2] == ["ports", "FAIL"] and lines[2].strip() == "-> stop dnsmasq"
    assert lines[3].split()[:2] == ["firewall", "ignored"]
    assert [row.name for row in report.failing(rows, ignore=["firewall"])] == ["ports"]


# -- Nix (the verdict is _nix.version.nix_problems, tested on its own) ------------------------------

NIX_28_CONFIG = "experimental-features = \nallow-import-from-derivation = true\n"


def test_nix_row_verdicts():
    good = tools.nix_row("/usr/bin/nix", "nix (Nix) 2.24.10\n", "experimental-features = nix-command flakes\n")
    assert good.ok and not good.hint and good.detail == "Nix 2.24.10 at /usr/bin/nix"
    # Debian 12's nix-bin: enough for the collection's own calls, too old for nixpkgs 25.11 and for
    # installing nixos-anywhere from its flake: a warning, not a failure.
    debian = tools.nix_row("/usr/bin/nix", "nix (Nix) 2.8.0\n", NIX_28_CONFIG)
    assert debian.ok and "older than 2.18" in debian.detail and "official installer" in debian.hint
    assert report.table([debian])[0].split()[:2] == ["nix", "warn"]
    ancient = tools.nix_row("/usr/bin/nix", "nix (Nix) 2.3.16\n", "")
    assert not ancient.ok and ancient.detail.startswith("Nix 2.3.16 at /usr/bin/nix: Nix 2.3.16 is older than 2.8")
    missing = tools.nix_row(None, None, None, "nix not found on PATH")
    assert not missing.ok and "not found" in missing.detail and "nixie_installer" in missing.hint
    broken = tools.nix_row("/usr/bin/nix", "", "", "exit code 1")
    assert not broken.ok and "--version failed" in broken.detail


def test_the_nix_here_gets_the_verdict_of_its_version():
    """Debian's nix 2.8 as the module reads it: a warning (2.18 for nixpkgs 25.11 and nixos-anywhere's flake)."""
    nix = tools.shutil.which("nix")
    if nix is None:
        pytest.fail("nix is not installed; scripts/setup installs nix-bin")
    row = tools.read_nix()
    version = subprocess.run([nix, "--version"], capture_output=True, text=True, check=True).stdout
    assert row.detail.startswith("Nix %s at " % version.split()[-1]), row
    assert row.ok and (bool(row.hint) == (tools.nix_version.parse_nix_version(version)[:2] < (2, 18))), row


# -- nixos-anywhere (the verdict is _nixos_anywhere.check_version) ----------------------------

STORE = "/nix/store/0c9zfb4gdqvgb3ym1ylbkw1v0fxhjhq2-nixos-anywhere-1.13.0/bin/nixos-anywhere"


def test_nixos_anywhere_row_verdicts():
    row = tools.nixos_anywhere_row("nixos-anywhere", STORE, STORE + "\n#!/bin/sh\n")
    assert row.ok and not row.hint and row.detail == "1.13.0 at %s" % STORE
    old_path = STORE.replace("1.13.0", "1.6.2")
    assert tools.nixos_anywhere_row("nixos-anywhere", old_path, old_path).ok
    old = tools.nixos_anywhere_row("nixos-anywhere", old_path, old_path, build_on=True)
    assert not old.ok and old.detail == "1.6.2 at %s is too old" % old_path and "--build-on needs 1.7.0" in old.hint
    older = STORE.replace("1.13.0", "1.5.0")
    assert not tools.nixos_anywhere_row("nixos-anywhere", older, older).ok
    unknown = tools.nixos_anywhere_row("x", "/opt/x", "/opt/x\n#!/bin/sh\n# nixos-anywhere 1.13.0 in a comment\n")
    assert unknown.ok and "version unknown" in unknown.detail and "1.6.0 or later" in unknown.hint
    missing = tools.nixos_anywhere_row("/nonexistent/nixos-anywhere", None, "")
    assert not missing.ok and missing.detail == "/nonexistent/nixos-anywhere not found"


def test_read_nixos_anywhere_follows_a_profile_to_the_store_path(tmp_path):
    """profile/bin/nixos-anywhere -> user-environment -> package: the version is the package's."""
    package = tmp_path / "store" / "0c9zfb4gdqvgb3ym1ylbkw1v0fxhjhq2-nixos-anywhere-1.7.2" / "bin"
    package.mkdir(parents=True)
    (package / "nixos-anywhere").write_text("#!/bin/sh\n", encoding="ascii")
    (package / "nixos-anywhere").chmod(0o755)
    environment = tmp_path / "store" / "1mbp3s7zqkn6dr4grqq3hg3fi0bc5n4i-user-environment" / "bin"
    environment.mkdir(parents=True)
    (environment / "nixos-anywhere").symlink_to(package / "nixos-anywhere")
    (tmp_path / "profile").symlink_to(environment.parent)
    row = tools.read_nixos_anywhere(str(tmp_path / "profile" / "bin" / "nixos-anywhere"), build_on=True)
    assert row.ok and row.detail == "1.7.2 at %s" % (package / "nixos-anywhere"), row


# -- SSH keys (the real ssh-keygen) ---------------------------------------------------------

def _key(tmp_path, name, passphrase=""):
    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", str(path)], check=True)
    return path


def test_key_file_rows_from_the_real_ssh_keygen(tmp_path):
    good = _key(tmp_path, "good")
    assert keys.read_key(str(good)).ok
    encrypted = keys.read_key(str(_key(tmp_path, "encrypted", "secret")))
    assert not encrypted.ok and "passphrase" in encrypted.detail and "ssh-agent" in encrypted.hint
    loose = _key(tmp_path, "loose")
    loose.chmod(0o644)
    row = keys.read_key(str(loose))
    assert not row.ok and "readable by others" in row.detail and row.hint == "chmod 600 %s" % loose
    missing = keys.read_key(str(tmp_path / "absent"))
    assert not missing.ok and "does not exist" in missing.detail
    public = keys.read_key(str(good) + ".pub")
    assert not public.ok


def test_agent_rows():
    sudo = keys.agent_row(None, "alice")
    assert not sudo.ok and "sudo" in sudo.detail and "--preserve-env=SSH_AUTH_SOCK" in sudo.hint
    none = keys.agent_row(None, None)
    assert not none.ok and "SSH_AUTH_SOCK is unset" in none.detail
    empty = keys.agent_row("/tmp/agent.sock", None, 1, "", "The agent has no identities.")
    assert not empty.ok and "holds no key" in empty.detail
    dead = keys.agent_row("/tmp/agent.sock", None, 2, "", "Error connecting to agent: No such file or directory")
    assert not dead.ok and "does not answer" in dead.detail
    held = keys.agent_row("/tmp/agent.sock", None, 0, "ssh-ed25519 AAAAC3Nz alice@laptop\n")
    assert held.ok and "alice@laptop" in held.detail


def test_a_real_agent_key(tmp_path):
    key = _key(tmp_path, "agent-key")
    agent = subprocess.run(["ssh-agent", "-s", "-a", str(tmp_path / "agent.sock")], capture_output=True, text=True, check=True)
    pid = int(agent.stdout.split("SSH_AGENT_PID=")[1].split(";")[0])
    try:
        environ = {"SSH_AUTH_SOCK": str(tmp_path / "agent.sock"), "PATH": os.environ["PATH"]}
        assert not keys.read_key(None, environ).ok  # empty agent
        subprocess.run(["ssh-add", "-q", str(key)], env=environ, check=True, capture_output=True)
        row = keys.read_key(None, environ)
        assert row.ok and "agent-key" in row.detail
    finally:
        os.kill(pid, 15)


def test_ssh_client_row():
    assert keys.ssh_client_row({"ssh": "/usr/bin/ssh", "ssh-keyscan": "/usr/bin/ssh-keyscan"}).ok
    row = keys.ssh_client_row({"ssh": None, "ssh-keyscan": None})
    assert not row.ok and row.detail == "ssh, ssh-keyscan not installed"


# -- iPXE ------------------------------------------------------------------------------------

def test_ipxe_rows():
    present = {"ipxe.efi", "undionly.kpxe", "snponly.efi"}
    assert ipxe.ipxe_row({"x86_64-linux": ["a"]}, present, "/usr/lib/ipxe").ok
    arm = ipxe.ipxe_row({"x86_64-linux": ["a"], "aarch64-linux": ["b", "c"]}, present, "/usr/lib/ipxe")
    assert not arm.ok and "aarch64-linux (hosts b, c): no ipxe-arm64.efi" in arm.detail
    assert "Debian 13" in arm.hint
    bios = ipxe.ipxe_row({"x86_64-linux": ["a"]}, {"ipxe.efi"}, "/srv/ipxe")
    assert not bios.ok and "undionly.kpxe (BIOS)" in bios.detail and "/srv/ipxe" in bios.hint
    nodir = ipxe.ipxe_row({"x86_64-linux": ["a"]}, None, "/nonexistent")
    assert not nodir.ok and "apt-get install ipxe" in nodir.hint
    assert not ipxe.ipxe_row({"riscv64-linux": ["r"]}, present, "/usr/lib/ipxe").ok


def test_ipxe_read_from_a_directory(tmp_path):
    """The directory as listed: files count, a directory of the same name does not."""
    for name in ("ipxe.efi", "undionly.kpxe"):
        (tmp_path / name).write_bytes(b"MZ")
    (tmp_path / "ipxe-arm64.efi").mkdir()
    assert ipxe.read_ipxe({"x86_64-linux": ["a"]}, str(tmp_path)).ok
    assert not ipxe.read_ipxe({"aarch64-linux": ["b"]}, str(tmp_path)).ok
    assert ipxe.read_ipxe({"x86_64-linux": ["a"]}).ok  # Debian's ipxe package, which scripts/setup installs


# -- ports --------------------------------------------------------------------------------------

PROC_NET_UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  337: 00000000:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 31337 2 0000000000000000 0
  500: 0100007F:0FAB 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0
"""
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 778 1 0000000000000000 20 4 30 10 -1
"""


def test_socket_inodes():
    assert ports.socket_inodes(PROC_NET_UDP, 67) == {"31337"}
    assert ports.socket_inodes(PROC_NET_UDP, 4011) == {"4242"}
    assert ports.socket_inodes(PROC_NET_TCP, 8080, listening_only=True) == {"777"}


def test_the_process_holding_a_socket_is_found():
    """A real socket of this process, found through /proc."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        found = ports.holders("udp", port)
        assert (os.getpid(), Path("/proc/self/comm").read_text(encoding="utf-8").strip()) in found
    finally:
        sock.close()


def test_ports_row():
    free = [("udp", 67, "proxyDHCP", None, []), ("tcp", 8080, "HTTP", None, [])]
    assert ports.ports_row(free).ok
    taken = ports.ports_row([("udp", 67, "proxyDHCP", OSError(errno.EADDRINUSE, "Address already in use"), [(812, "dnsmasq")]),
                             ("tcp", 8080, "HTTP", OSError(errno.EADDRINUSE, "Address already in use"), [])])
    assert not taken.ok
    assert "UDP 67 (proxyDHCP) is taken by dnsmasq (pid 812)" in taken.detail
    assert "TCP 8080 (HTTP) is taken (Address already in use)" in taken.detail
    assert "nixie_http_port" in taken.hint and "dnsmasq (pid 812)" in taken.hint
    denied = ports.ports_row([("udp", 67, "proxyDHCP", OSError(errno.EACCES, "Permission denied"), [])])
    assert not denied.ok and "root" in denied.hint


# -- firewall (real rulesets) ----------------------------------------------------------------------

def nft(name, interface="lab0", port=8080):
    chains = firewall.chains_from_nft(json.loads((FIXTURES / name).read_text(encoding="utf-8")), interface)
    return firewall.firewall_row(chains, interface, port, ["nftables"])


def test_policy_drop_with_only_ssh_open():
    """inet filter input, policy drop: ct state established,related accept; iifname lo accept; tcp dport 22 accept."""
    row = nft("policy-drop.json")
    assert not row.ok
    for probe in ("UDP 67", "UDP 4011", "UDP 69", "TCP 8080"):
        assert "drops %s by inet filter input: policy drop" % probe in row.detail
    assert "may drop" not in row.detail
    assert "nft insert rule inet filter input iifname lab0" in row.hint


def test_policy_drop_with_the_ports_opened_on_the_interface():
    """As above, plus iifname lab0 udp dport { 67, 69, 4011 } accept and iifname lab0 tcp dport 8080 accept."""
    assert nft("policy-drop-open.json").ok
    other_interface = nft("policy-drop-open.json", interface="eth1")
    assert not other_interface.ok and "drops UDP 67" in other_interface.detail
    other_port = nft("policy-drop-open.json", port=8081)
    assert not other_port.ok and "TCP 8081" in other_port.detail and "UDP" not in other_port.detail


def test_a_rule_dropping_udp_67():
    """table ip nixielab, input chain, policy accept: udp dport 67 drop."""
    row = nft("udp67-drop.json")
    assert not row.ok
    assert row.detail == "drops UDP 67 by ip nixielab input (handle 2): l4proto udp dport 67 drop"


def test_jumps_sets_and_ranges():
    """ip saddr @blocked drop; iifname "lab*" jump zone_lab (udp dport 4011 reject; return);
    ip saddr 10.0.0.0/8 accept; tcp dport 8000-8100 reject."""
    row = nft("jumps-sets.json", port=8080)
    assert not row.ok
    assert "drops UDP 4011 by inet fw zone_lab" in row.detail
    # The set and the source address are undecidable: the drop at the end is a "may".
    assert "may drop TCP 8080 by inet fw input" in row.detail
    # Outside the zone's interface pattern UDP 4011 gets through the jump.
    elsewhere = nft("jumps-sets.json", interface="eth0", port=9000).detail
    assert "drops UDP 4011" not in elsewhere and "may drop UDP 4011 by inet fw input (handle 6): set @blocked drop" in elsewhere


def test_iptables_nft_rules_seen_through_nft():
    """iptables-nft: policy DROP; -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT; -i lo -j ACCEPT;
    -p udp -m multiport --dports 67,69 -j ACCEPT. The xt matches are opaque to nft -j: every drop is a "may"."""
    row = nft("iptables-nft.json")
    assert not row.ok
    assert "may drop UDP 67 by ip filter INPUT: policy drop" in row.detail
    assert "may drop TCP 8080" in row.detail


def test_iptables_legacy_save():
    """-A INPUT -i lab+ -j NIXIE; NIXIE: udp 69 LOG, udp 69 REJECT, -s 192.168.0.0/16 tcp 8080 DROP."""
    chains = firewall.chains_from_iptables_save((FIXTURES / "iptables-legacy.txt").read_text(encoding="utf-8"))
    row = firewall.firewall_row(chains, "lab0", 8080, ["iptables-legacy"])
    assert not row.ok
    assert "drops UDP 69 by iptables-legacy filter NIXIE rule 2" in row.detail
    assert "may drop TCP 8080 by iptables-legacy filter NIXIE rule 3" in row.detail
    assert "UDP 67" not in row.detail
    assert firewall.firewall_row(chains, "eth0", 8080, ["iptables-legacy"]).ok


def test_an_empty_ruleset_and_an_unreadable_one():
    assert firewall.firewall_row({}, "lab0", 8080, ["nftables: 0 chain(s)"]).ok
    row = firewall.firewall_row({}, "lab0", 8080, [], errors=["nft is not installed"])
    assert not row.ok and "apt-get install nftables" in row.hint


# -- site DHCP ----------------------------------------------------------------------------------------

MAC = bytes.fromhex("0a1b2c3d4e5f")
XID = 0x1234ABCD


def test_made_up_mac_is_locally_administered_unicast():
    for first in (0x00, 0x01, 0xFF, 0x52):
        mac = site_dhcp.made_up_mac(bytes((first, 1, 2, 3, 4, 5)))
        assert mac[0] & 0x02 and not mac[0] & 0x01 and mac[1:] == bytes((1, 2, 3, 4, 5))


def test_discover_looks_like_uefi_pxe_firmware():
    frame = site_dhcp.frame(bytes.fromhex("525400000001"), site_dhcp.discover(MAC, XID, bytes(16)))
    assert frame[:6] == b"\xff" * 6 and frame[12:14] == b"\x08\x00"
    ip = frame[14:34]
    assert ip[12:16] == b"\0\0\0\0" and ip[16:20] == b"\xff\xff\xff\xff"
    assert site_dhcp._checksum(ip) == 0  # pylint: disable=protected-access
    assert struct.unpack("!HH", frame[34:38]) == (68, 67)
    packet = dhcp.decode(frame[42:])
    assert packet.message_type == dhcp.DHCPDISCOVER and packet.xid == XID and packet.chaddr == MAC and packet.broadcast
    assert packet.vendor_class == b"PXEClient:Arch:00007:UNDI:003000" and packet.client_arches == (7,)
    client = boot_client.classify(packet)
    assert client is not None and client.arch == boot_client.ARCH_EFI_X86_64


def reply_frame(source, offered, options=None, file=b"", xid=XID, mac=MAC, sport=67):
    opts = {dhcp.OPT_MESSAGE_TYPE: bytes((dhcp.DHCPOFFER,)), dhcp.OPT_SERVER_ID: socket.inet_aton(source)}
    opts.update(options or {})
    payload = dhcp.encode(dhcp.DhcpPacket(op=dhcp.BOOTREPLY, xid=xid, chaddr=mac, yiaddr=offered, file=file, options=opts))
    udp = struct.pack("!HHHH", sport, 68, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, socket.inet_aton(source), b"\xff" * 4)
    return b"\xff" * 6 + bytes.fromhex("525400000002") + b"\x08\x00" + ip + udp


def test_answers_are_read_from_frames():
    plain = site_dhcp.parse_answer(reply_frame("10.0.0.2", "10.0.0.150"), XID, MAC)
    assert plain == site_dhcp.Answer("10.0.0.2", "10.0.0.2", "10.0.0.150", ())
    booting = site_dhcp.parse_answer(reply_frame("10.0.0.2", "10.0.0.150", {67: b"pxelinux.0", 66: b"10.0.0.9"},
                                                 file=b"pxelinux.0"), XID, MAC)
    assert dict(booting.boot) == {"67": "pxelinux.0", "66": "10.0.0.9", "file": "pxelinux.0"}
    proxy = site_dhcp.parse_answer(reply_frame("10.0.0.3", "0.0.0.0", {60: b"PXEClient", 43: b"\x06\x01\x08\xff"}), XID, MAC)
    assert not proxy.gives_address and dict(proxy.boot) == {"60": "PXEClient", "43": "060108ff"}
    # Someone else's transaction, our own DISCOVER, and a truncated frame are not answers.
    assert site_dhcp.parse_answer(reply_frame("10.0.0.2", "10.0.0.150", xid=XID + 1), XID, MAC) is None
    assert site_dhcp.parse_answer(reply_frame("10.0.0.2", "10.0.0.150", mac=bytes(6)), XID, MAC) is None
    assert site_dhcp.parse_answer(site_dhcp.frame(MAC, site_dhcp.discover(MAC, XID, bytes(16))), XID, MAC) is None
    assert site_dhcp.parse_answer(reply_frame("10.0.0.2", "10.0.0.150")[:60], XID, MAC) is None


def test_site_dhcp_rows():
    plain = site_dhcp.Answer("10.0.0.2", "10.0.0.2", "10.0.0.150", ())
    row = site_dhcp.site_dhcp_row([plain], "lab0", 4)
    assert row.ok and row.detail == "10.0.0.2 offered 10.0.0.150; no boot options"
    none = site_dhcp.site_dhcp_row([], "lab0", 4)
    assert not none.ok and "no DHCP server offered an address on lab0 within 4 s" in none.detail and "proxy" in none.hint
    booting = site_dhcp.Answer("10.0.0.2", "10.0.0.2", "10.0.0.150", (("file", "pxelinux.0"),))
    row = site_dhcp.site_dhcp_row([booting], "lab0", 4)
    assert not row.ok and "with boot options file 'pxelinux.0'" in row.detail and "dhcp-boot" in row.hint
    proxy_only = site_dhcp.Answer("10.0.0.3", "10.0.0.3", "0.0.0.0", ())
    row = site_dhcp.site_dhcp_row([proxy_only], "lab0", 4)
    assert not row.ok and "heard: 10.0.0.3 offered no address" in row.detail


def test_site_dhcp_rows_in_the_addresses_and_off_modes():
    plain = site_dhcp.Answer("10.0.0.2", "10.0.0.2", "10.0.0.150", ())
    proxy_only = site_dhcp.Answer("10.0.0.3", "10.0.0.3", "0.0.0.0", ())
    alone = site_dhcp.site_dhcp_row([], "lab0", 4, "addresses")
    assert alone.ok and alone.detail == "dhcp=addresses: no other DHCP server gives addresses on lab0 within 4 s"
    beside_proxy = site_dhcp.site_dhcp_row([proxy_only], "lab0", 4, "addresses")
    assert beside_proxy.ok and "(heard: 10.0.0.3 offered no address" in beside_proxy.detail
    fight = site_dhcp.site_dhcp_row([plain, proxy_only], "lab0", 4, "addresses")
    assert not fight.ok and fight.detail == "dhcp=addresses, but another DHCP server gives addresses on lab0: 10.0.0.2 offered 10.0.0.150"
    assert "dhcp=proxy" in fight.hint
    off = site_dhcp.site_dhcp_row([], "lab0", 4, "off")
    assert off.ok and off.detail == "dhcp=off: the netboot server answers no DHCPv4; heard on lab0: nothing within 4 s"


# -- choosing the interface ----------------------------------------------------------------------------

LINKS = [
    {"ifname": "lo", "flags": ["LOOPBACK", "UP"], "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifname": "lab0", "flags": ["UP"], "addr_info": [{"family": "inet", "local": "10.0.0.1", "prefixlen": 24}]},
    {"ifname": "wlan0", "flags": ["UP"], "addr_info": [{"family": "inet", "local": "192.168.1.5", "prefixlen": 24}]},
]


def test_interface_row_is_pxe_servers_choice():
    row, interface, address = checks.interface_row(LINKS, {"interface": "lab0"})
    assert row.ok and (interface, address) == ("lab0", "10.0.0.1") and row.detail == "lab0 10.0.0.1"
    row, interface, address = checks.interface_row(LINKS, {})
    assert not row.ok and interface is None and "several interfaces could serve" in row.detail
    assert "nixie_interface" in row.hint


def test_arches_of():
    assert checks.arches_of([{"name": "a", "arch": "x86_64-linux"}, {"name": "b", "arch": None}, {"name": "c", "arch": "aarch64-linux"}]) == {
        "x86_64-linux": ["a", "b"], "aarch64-linux": ["c"]}
