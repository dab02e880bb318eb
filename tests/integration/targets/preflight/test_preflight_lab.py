# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ansible-playbook nixie.metal.preflight in a private namespace lab, each failing row provoked once.

Topology (tests/lab): the controller's side is the lab namespace (br0 10.77.0.1), the site's DHCP
server is dnsmasq in the site namespace across a veth (addresses only, unless a case adds a boot
file). Every run of the playbook happens inside the lab namespace, so its DISCOVER, its port binds
and the nftables rule of the firewall case stay there.

Stand-ins, for what cannot run here, labelled as such and only on the PATH of these runs:

* ``nix``: Debian's nix is 2.8, which passes with a warning (2.18 for nixpkgs 25.11), so a run
  without warnings needs a stand-in that reports a recent version and the features in its
  configuration; the old-Nix case uses one that reports 2.3.16. The real nix 2.8 is checked too.
* ``nixos-anywhere``: the role's test stand-in, copied into a directory named as a Nix store
  path of nixos-anywhere 1.13.0 (the preflight reads the version from the store path).

Everything else is real: ssh-keygen and ssh-agent keys, the sockets, nft, dnsmasq, the raw frames.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

COLLECTION = Path(os.environ.get("NIXIE_COLLECTION", Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(COLLECTION / "tests" / "lab"))

from nixielab.net import Lab  # noqa: E402  pylint: disable=wrong-import-position

BIN = Path(sys.executable).parent
IPXE_DIR = Path("/usr/lib/ipxe")
ARM64_BINARY = "ipxe-arm64.efi"  # Debian 12's ipxe package does not have it
STANDIN_NIXOS_ANYWHERE = COLLECTION / "tests" / "integration" / "targets" / "role_nixos_anywhere" / "files" / "nixos-anywhere"
STORE_NAME = "0c9zfb4gdqvgb3ym1ylbkw1v0fxhjhq2-nixos-anywhere-1.13.0"
ROWS = ("nix", "nixos-anywhere", "ssh-client", "ssh-key", "ipxe", "interface", "ports", "firewall", "site-dhcp")

# TEST STAND-IN for nix (the real Debian nix here is 2.8): answers `nix --version` with the version
# it is given and `nix show-config` with the features on; anything else fails, so a call the
# preflight does not make shows up as an error.
NIX_STANDIN = """#!/bin/sh
# TEST STAND-IN for nix, used only by tests/integration/targets/preflight.
case "$*" in
  --version) echo "nix (Nix) %s" ;;
  show-config) echo "experimental-features = flakes nix-command" ;;
  *) echo "nix stand-in: unexpected call: $*" >&2; exit 2 ;;
esac
"""


@pytest.fixture(scope="module")
def site():
    files = Path(tempfile.mkdtemp(prefix="nixie-preflight-"))
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, files)
        lab = cleanup.enter_context(Lab())
        hosts = {"node1": {"mac_address": "52:54:00:12:34:01"}, "node2": {"mac_address": "52:54:00:12:34:02"}}
        (files / "hosts.json").write_text(json.dumps(hosts), encoding="utf-8")
        (files / "hosts.nixie.yml").write_text("plugin: nixie.metal.hosts\npath: hosts.json\n", encoding="utf-8")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "preflight", "-f", str(files / "id_ed25519")], check=True)
        for version in ("2.24.10", "2.3.16"):
            directory = files / ("nix-%s" % version)
            directory.mkdir()
            (directory / "nix").write_text(NIX_STANDIN % version, encoding="ascii")
            (directory / "nix").chmod(0o755)
        package = files / "store" / STORE_NAME / "bin"
        package.mkdir(parents=True)
        shutil.copy(STANDIN_NIXOS_ANYWHERE, package / "nixos-anywhere")
        lab.files = files
        lab.vars = {"nixie_interface": lab.bridge, "nixie_ssh_key": str(files / "id_ed25519"),
                    "nixie_nixos_anywhere": str(package / "nixos-anywhere"),
                    # The lab's site DHCP servers answer at once; the default 4 s of listening is for real segments.
                    "nixie_preflight_dhcp_wait": 2}
        yield lab


def preflight(site, name, extra_vars=None, nix="2.24.10", env=None, options=()):
    """Run the playbook in the lab namespace; return (exit code, {row: (status, detail, hint)}, output)."""
    variables = {key: value for key, value in dict(site.vars, **(extra_vars or {})).items() if value is not None}
    vars_file = site.files / ("%s.vars.json" % name)
    vars_file.write_text(json.dumps(variables), encoding="utf-8")
    environment = {key: value for key, value in os.environ.items() if key not in ("SSH_AUTH_SOCK", "SUDO_USER", "ANSIBLE_CONFIG")}
    stand_in = [str(site.files / ("nix-%s" % nix))] if nix else []
    environment.update(PATH=":".join(stand_in + [str(BIN), os.environ.get("PATH", "/usr/bin:/bin")]),
                       ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0",
                       ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
                       ANSIBLE_INVENTORY_ENABLED="nixie.metal.hosts,host_list,auto,yaml,ini",
                       ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="1")
    environment.update(env or {})
    result = site.run([str(BIN / "ansible-playbook"), "nixie.metal.preflight", "-i", str(site.files / "hosts.nixie.yml"),
                       "-e", "@%s" % vars_file, *options], check=False, env=environment, cwd=str(site.files))
    output = result.stdout + result.stderr
    (site.files / ("%s.log" % name)).write_text(output, encoding="utf-8")
    return result.returncode, table(output), output


def table(output):
    """The rows of the table the playbook printed: name -> (status, detail, hint)."""
    rows, last = {}, None
    section = output.split("TASK [Show what was found]", 1)[-1].split("TASK [Stop when a check failed]", 1)[0]
    for line in re.findall(r'^\s+"(.*)",?$', section, re.MULTILINE):
        line = json.loads('"%s"' % line)
        match = re.match(r"^(\S+)\s+(ok|warn|FAIL|ignored)\s+(.*)$", line)
        if match:
            last = match.group(1)
            rows[last] = [match.group(2), match.group(3), ""]
        elif last and line.strip().startswith("-> "):
            rows[last][2] = line.strip()[3:]
    return {name: tuple(value) for name, value in rows.items()}


def assert_only_failing(rows, output, failing):
    assert set(rows) == set(ROWS), output
    assert {name for name, (status, dummy, dummy2) in rows.items() if status == "FAIL"} == set(failing), rows
    for name in failing:
        assert rows[name][2], "the failing row %s says nothing about what to do" % name


def test_all_green(site):
    """A real key, free ports, no firewall rule, a site dnsmasq giving addresses only, a recent (stand-in) Nix."""
    code, rows, output = preflight(site, "green")
    assert code == 0, output
    assert_only_failing(rows, output, [])
    assert rows["nix"] == ("ok", "Nix 2.24.10 at %s" % (site.files / "nix-2.24.10" / "nix"), ""), rows["nix"]
    assert rows["nixos-anywhere"] == ("ok", "1.13.0 at %s" % (site.files / "store" / STORE_NAME / "bin" / "nixos-anywhere"), "")
    assert rows["ssh-key"][1] == "%s loads without a passphrase" % (site.files / "id_ed25519")
    assert rows["ipxe"][1] == "x86_64-linux: ipxe.efi, undionly.kpxe in /usr/lib/ipxe"
    assert rows["interface"][1].startswith("br0 10.77.0.1")
    assert rows["ports"][1] == "free: UDP 67, UDP 4011, UDP 69, TCP 8080"
    assert re.match(r"10\.77\.0\.2 offered 10\.77\.0\.1\d\d; no boot options$", rows["site-dhcp"][1]), rows["site-dhcp"]
    # Check mode: the same checks (the preflight changes nothing), the same verdict.
    code, rows, output = preflight(site, "green-check", options=["--check"])
    assert code == 0, output
    assert_only_failing(rows, output, [])


def test_a_port_taken(site):
    """UDP 67 held by another process in the lab namespace: the row names it by name and PID."""
    holder = site.popen([sys.executable, "-c", "import socket, sys, time\n"
                         "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 67))\n"
                         "print('bound', flush=True); time.sleep(300)"], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"bound"
        code, rows, output = preflight(site, "port")
    finally:
        holder.terminate()
        holder.wait(5)
    assert code != 0
    assert_only_failing(rows, output, ["ports"])
    # The holder runs as `ip netns exec ... python`: its own PID is the one holding the socket.
    assert re.search(r"UDP 67 \(proxyDHCP\) is taken by python[\d.]* \(pid %d\)" % holder.pid, rows["ports"][1]), rows["ports"]
    assert "stop python" in rows["ports"][2]
    assert "The run cannot start here: ports failed" in output


def test_a_firewall_rule_dropping_udp_67(site):
    """nft add rule ip nixie input udp dport 67 drop, in the lab namespace only."""
    site.run(["nft", "add table ip nixie; add chain ip nixie input { type filter hook input priority 0; policy accept; }; "
              "add rule ip nixie input udp dport 67 drop"])
    try:
        code, rows, output = preflight(site, "firewall")
    finally:
        site.run(["nft", "delete table ip nixie"])
    assert code != 0
    assert_only_failing(rows, output, ["firewall"])
    assert rows["firewall"][1].startswith("drops UDP 67 by ip nixie input (handle "), rows["firewall"]
    assert "udp dport { 67, 69, 4011 } accept" in rows["firewall"][2]
    # The same rule judged by hand: shown, not failing.
    site.run(["nft", "add table ip nixie; add chain ip nixie input { type filter hook input priority 0; policy accept; }; "
              "add rule ip nixie input udp dport 67 drop"])
    try:
        code, rows, output = preflight(site, "firewall-ignored", extra_vars={"nixie_preflight_ignore": ["firewall"]})
    finally:
        site.run(["nft", "delete table ip nixie"])
    assert code == 0, output
    assert rows["firewall"][0] == "ignored"


def test_the_site_dhcp_server_hands_out_a_boot_file(site):
    """dnsmasq with dhcp-boot: its offer to a PXE client names a boot file (option 67, as the DISCOVER asked for
    options 66 and 67), which UEFI firmware would take instead of the proxy's."""
    site.start_site_dhcp(["dhcp-boot=pxelinux.0,bootserver,10.77.0.9"])
    try:
        code, rows, output = preflight(site, "boot-file")
    finally:
        site.start_site_dhcp()
    assert code != 0
    assert_only_failing(rows, output, ["site-dhcp"])
    detail = rows["site-dhcp"][1]
    assert re.match(r"10\.77\.0\.2 offered 10\.77\.0\.1\d\d with boot options ", detail), detail
    assert "66 'bootserver', 67 'pxelinux.0'" in detail, detail
    assert "dhcp-boot" in rows["site-dhcp"][2] and "10.77.0.2" in rows["site-dhcp"][2]


def test_no_site_dhcp_server(site):
    """Nobody answers: the proxy needs the site's server for the addresses."""
    site.site_dnsmasq.terminate()
    site.site_dnsmasq.wait(5)
    try:
        code, rows, output = preflight(site, "no-dhcp")
    finally:
        site.start_site_dhcp()
    assert code != 0
    assert_only_failing(rows, output, ["site-dhcp"])
    assert rows["site-dhcp"][1] == "no DHCP server offered an address on br0 within 2 s"  # nixie_preflight_dhcp_wait of the lab
    assert "the netboot server is a proxy" in rows["site-dhcp"][2]


def test_an_old_nix(site):
    """A (stand-in) Nix 2.3.16 on PATH. With a prebuilt installer the machines' systems are still built here
    (nixie_build controller, the default), so Nix is checked; with nixie_build flake too, it is not checked at all."""
    code, rows, output = preflight(site, "old-nix", nix="2.3.16")
    assert code != 0
    assert_only_failing(rows, output, ["nix"])
    assert rows["nix"][1].startswith("Nix 2.3.16 at %s: Nix 2.3.16 is older than 2.8, " % (site.files / "nix-2.3.16" / "nix"))
    assert "https://nixos.org/nix/install" in rows["nix"][2], rows["nix"]
    prebuilt = {"nixie_installer": {"kernel": "/k", "initrd": "/i"}}
    code, rows, output = preflight(site, "old-nix-prebuilt", nix="2.3.16", extra_vars=prebuilt)
    assert code != 0
    assert_only_failing(rows, output, ["nix"])
    code, rows, output = preflight(site, "old-nix-prebuilt-flake", nix="2.3.16", extra_vars=dict(prebuilt, nixie_build="flake"))
    assert code == 0, output
    assert "nix" not in rows


def test_the_nix_of_this_machine(site):
    """The real nix from nix-bin (2.8 on Debian 12): enough for the collection's calls, so the run may go on;
    older than 2.18, the row warns that nixpkgs 25.11 and nixos-anywhere's flake need 2.18, and says how to get it."""
    real = shutil.which("nix", path=os.environ.get("PATH"))
    assert real, "nix is not installed; scripts/setup installs nix-bin"
    version = subprocess.run([real, "--version"], capture_output=True, text=True, check=True).stdout.split()[-1]
    code, rows, output = preflight(site, "real-nix", nix=None)
    assert code == 0, output
    assert_only_failing(rows, output, [])
    status, detail, hint = rows["nix"]
    assert detail.startswith("Nix %s at " % version), rows["nix"]
    old = tuple(int(part) for part in version.split(".")[:2]) < (2, 18)
    assert ("older than 2.18" in detail) == old, rows["nix"]
    if old:
        assert status == "warn" and "official installer" in hint, rows["nix"]


def test_no_key_under_sudo(site):
    """No nixie_ssh_key, run through sudo, which dropped SSH_AUTH_SOCK: the row says so and how to keep it."""
    code, rows, output = preflight(site, "no-key", extra_vars={"nixie_ssh_key": None}, env={"SUDO_USER": "alice"})
    assert code != 0
    assert_only_failing(rows, output, ["ssh-key"])
    assert rows["ssh-key"][1] == "no nixie_ssh_key, and no SSH_AUTH_SOCK: running under sudo (for alice)"
    assert "sudo --preserve-env=SSH_AUTH_SOCK" in rows["ssh-key"][2]


def test_an_agent_key(site):
    """No nixie_ssh_key, a real ssh-agent holding the key, SSH_AUTH_SOCK kept."""
    sock = site.files / "agent.sock"
    agent = subprocess.run(["ssh-agent", "-s", "-a", str(sock)], capture_output=True, text=True, check=True)
    pid = int(re.search(r"SSH_AGENT_PID=(\d+)", agent.stdout).group(1))
    try:
        subprocess.run(["ssh-add", "-q", str(site.files / "id_ed25519")], env=dict(os.environ, SSH_AUTH_SOCK=str(sock)),
                       check=True, capture_output=True)
        code, rows, output = preflight(site, "agent", extra_vars={"nixie_ssh_key": None},
                                       env={"SSH_AUTH_SOCK": str(sock), "SUDO_USER": "alice"})
    finally:
        os.kill(pid, 15)
    assert code == 0, output
    assert rows["ssh-key"][1] == "ssh-agent at %s holds 1 key(s): preflight" % sock


def test_an_encrypted_key(site):
    key = site.files / "encrypted"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(key)], check=True)
    code, rows, output = preflight(site, "encrypted", extra_vars={"nixie_ssh_key": str(key)})
    assert code != 0
    assert_only_failing(rows, output, ["ssh-key"])
    assert rows["ssh-key"][1] == "%s is encrypted with a passphrase" % key


def test_an_arm64_machine_without_its_ipxe_binary(site):
    """hosts.json gives node3 aarch64-linux; Debian 12's ipxe has no ipxe-arm64.efi."""
    if (IPXE_DIR / ARM64_BINARY).exists():
        pytest.fail("%s exists here: this case needs a directory without it" % (IPXE_DIR / ARM64_BINARY))
    hosts = json.loads((site.files / "hosts.json").read_text(encoding="utf-8"))
    arm = dict(hosts, node3={"mac_address": "52:54:00:12:34:03", "arch": "aarch64-linux"})
    (site.files / "hosts.json").write_text(json.dumps(arm), encoding="utf-8")
    try:
        code, rows, output = preflight(site, "arm64")
    finally:
        (site.files / "hosts.json").write_text(json.dumps(hosts), encoding="utf-8")
    assert code != 0
    assert_only_failing(rows, output, ["ipxe"])
    assert rows["ipxe"][1] == "aarch64-linux (hosts node3): no ipxe-arm64.efi (UEFI) in /usr/lib/ipxe"


def test_no_version_for_nixos_anywhere(site):
    """The same stand-in outside a store path: its version cannot be told, a warning (as the role warns). The run
    builds the machines' systems here and passes --build-on local (1.7.0); with nixie_build flake, 1.6.0 will do."""
    code, rows, output = preflight(site, "no-version", extra_vars={"nixie_nixos_anywhere": str(STANDIN_NIXOS_ANYWHERE)})
    assert code == 0, output
    assert rows["nixos-anywhere"][:2] == ("warn", "%s: version unknown" % STANDIN_NIXOS_ANYWHERE), rows["nixos-anywhere"]
    assert "this command line needs 1.7.0 or later" in rows["nixos-anywhere"][2], rows["nixos-anywhere"]
    code, rows, output = preflight(site, "no-version-flake", extra_vars={"nixie_nixos_anywhere": str(STANDIN_NIXOS_ANYWHERE),
                                                                         "nixie_build": "flake"})
    assert code == 0, output
    assert "this command line needs 1.6.0 or later" in rows["nixos-anywhere"][2], rows["nixos-anywhere"]
    code, rows, output = preflight(site, "missing-na", extra_vars={"nixie_nixos_anywhere": "/nonexistent/nixos-anywhere"})
    assert code != 0
    assert_only_failing(rows, output, ["nixos-anywhere"])
