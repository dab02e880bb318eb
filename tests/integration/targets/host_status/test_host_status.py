# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""nixie.metal.host_status against a real SSH server on a QEMU machine.

One lab (network namespaces, dnsmasq as the site DHCP server and as proxyDHCP/TFTP,
the HTTP stand-in) boots one SeaBIOS + iPXE machine into the lab installer built with
its SSH server (dropbear). The kernel command line makes the installer pose as an
installed NixOS (``nixie.lab.system=``: /etc/os-release ID=nixos and
/run/current-system -> SYSTEM); ``nixie-lab-pose --off`` over SSH makes it the
plain installer again. ``ansible localhost -m nixie.metal.host_status`` runs inside
the lab namespace, as a controller on that segment would.

The stand-in pose is a test device only: nothing in plugins/ knows about it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

COLLECTION = Path(os.environ.get("NIXIE_COLLECTION", Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(COLLECTION / "tests" / "lab"))

from nixielab import installer as lab_installer  # noqa: E402  pylint: disable=wrong-import-position
from nixielab.net import Lab  # noqa: E402  pylint: disable=wrong-import-position
from nixielab.services import HttpStub, start_proxy_dnsmasq  # noqa: E402  pylint: disable=wrong-import-position
from nixielab.vm import VM  # noqa: E402  pylint: disable=wrong-import-position

SYSTEM = "/nix/store/0c2l4jxqn1g4q3z6jdd6yzkmzy8jzd0w-nixos-system-lab-24.05"
OTHER = "/nix/store/9v3l4jxqn1g4q3z6jdd6yzkmzy8jzd1x-nixos-system-lab-24.05"
NOBODY_MAC = "52:54:00:77:77:77"
# A well-formed key nobody has (never a host key of the lab installer).
FOREIGN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBfQh5Sx0qkqfW8Xb2v0dkQ0y3cXG4F1R5tHn6m0c3Vv"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(b) for b in ("qemu-system-x86_64", "dnsmasq", "ssh", "ssh-keygen")),
    reason="needs root, qemu-system-x86_64, dnsmasq and the OpenSSH client",
)


class Env:
    """The booted lab: lab, vm, its address and host keys, the client key."""

    def __init__(self, lab, vm, stub, key):
        self.lab = lab
        self.vm = vm
        self.stub = stub
        self.key = str(key)
        self.ip = None
        self.host_keys = []
        self._booted = False

    def wait_booted(self):
        if not self._booted:
            self.ip = self.vm.wait_for(r"NIXIE-LAB: network up (\S+) ", timeout=180).group(1)
            self.vm.wait_for(r"NIXIE-LAB: sshd listening", timeout=60)
            self.vm.wait_for(r"NIXIE-LAB: agent exit 0", timeout=60)
            body = json.loads(self.stub.phone_homes()[-1]["body"])
            self.host_keys = body["ssh_host_keys"]
            self._booted = True
        return self

    def ssh(self, command):
        """Plain ssh to the machine (test plumbing, not the module)."""
        argv = ["ssh", "-i", self.key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "root@%s" % self.ip, command]
        return self.lab.run(argv, timeout=60)

    def flush_neighbours(self):
        """Forget the machine's neighbour entries, so the next run must find it by ARP.

        A late packet of the last SSH connection can bring an entry back: flush until it stays gone.
        """
        deadline = time.monotonic() + 10
        while True:
            self.lab.run(["ip", "neigh", "flush", "dev", self.lab.bridge, "nud", "all"])
            time.sleep(0.3)
            table = self.lab.run(["ip", "-j", "neigh", "show", "dev", self.lab.bridge]).stdout
            if not any(entry.get("lladdr") == self.vm.mac for entry in json.loads(table or "[]")):
                return
            assert time.monotonic() < deadline, "the neighbour entry of %s keeps coming back: %s" % (self.vm.mac, table)


@pytest.fixture(scope="module")
def env():
    key, public = lab_installer.lab_client_key()
    inst = lab_installer.build(str(COLLECTION / "nix" / "agent" / "nixie-agent"), with_sshd=True,
                               authorized_keys=[public])
    assert len(inst.ssh_host_keys) == 2
    with Lab() as lab:
        stub = HttpStub(lab, inst, token="host-status-token", append="nixie.lab.system=%s" % SYSTEM)
        start_proxy_dnsmasq(lab)
        vm = VM(lab, "seabios-ipxe").start()
        yield Env(lab, vm, stub, key)


def host_status(env, **args):
    """``ansible localhost -m nixie.metal.host_status -a JSON`` in the lab namespace: (rc, result, seconds)."""
    argv = ["ansible", "localhost", "-i", "localhost,", "-c", "local", "-m", "nixie.metal.host_status",
            "-a", json.dumps(args), "-e", "ansible_python_interpreter=%s" % sys.executable]
    environ = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                   ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="0")
    start = time.monotonic()
    proc = env.lab.run(argv, check=False, env=environ, timeout=120)
    seconds = time.monotonic() - start
    try:
        output = json.loads(proc.stdout)
        result = output["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        pytest.fail("cannot read ansible's output (rc %s):\n%s\n%s" % (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
    print("host_status %s -> rc %s in %.1fs: %s" % (args, proc.returncode, seconds, json.dumps(result, indent=1)))
    return proc.returncode, result, seconds


def test_absent_mac_without_machine(env):
    """Runs while the machine boots: nothing answers ARP for this MAC."""
    rc, result, seconds = host_status(env, mac=NOBODY_MAC, expected_system=SYSTEM, arp_timeout=1.5)
    assert rc == 0, result
    assert result["state"] == "absent"
    assert result["ip"] is None and result["address_source"] is None
    assert result["changed"] is False
    assert seconds < 30


def test_installed_address_from_arp(env):
    env.wait_booted()
    env.flush_neighbours()
    rc, result, dummy = host_status(env, mac=env.vm.mac.upper().replace(":", "-"), expected_system=SYSTEM,
                                    ssh_key=env.key, interface=env.lab.bridge)
    assert rc == 0, result
    assert result["state"] == "installed", result
    assert result["ip"] == env.ip
    assert result["address_source"] == "arp"
    assert result["mac"] == env.vm.mac
    assert result["os_id"] == "nixos"
    assert result["current_system"] == SYSTEM
    assert result["expected_system"] == SYSTEM
    assert result["changed"] is False


def test_other_system(env):
    env.wait_booted()
    rc, result, dummy = host_status(env, mac=env.vm.mac, expected_system=OTHER, ssh_key=env.key)
    assert rc == 0, result
    assert result["state"] == "other_system"
    assert result["current_system"] == SYSTEM and result["expected_system"] == OTHER
    # The SSH connection of the run before left a confirmed neighbour entry.
    assert result["address_source"] == "neighbour"


@pytest.fixture()
def flake(tmp_path):
    if not shutil.which("nix"):
        pytest.skip("nix is not installed")
    (tmp_path / "flake.nix").write_text(
        '{ outputs = { self }: { nixosConfigurations.lab.config.system.build.toplevel.outPath = "%s"; }; }\n' % OTHER,
        encoding="utf-8")
    return "path:%s" % tmp_path


def test_flake_is_evaluated(env, flake):
    env.wait_booted()
    rc, result, dummy = host_status(env, mac=env.vm.mac, address=env.ip, flake=flake, attribute="lab", ssh_key=env.key)
    assert rc == 0, result
    assert result["state"] == "other_system"
    assert result["expected_system"] == OTHER
    assert result["address_source"] == "address"


def test_failing_evaluation_is_an_error(env, flake):
    env.wait_booted()
    rc, result, dummy = host_status(env, mac=env.vm.mac, address=env.ip, flake=flake, attribute="nosuchhost",
                                    ssh_key=env.key)
    assert rc != 0
    assert result.get("failed") is True
    assert "nix eval" in result["msg"] and "nosuchhost" in result["msg"]


def test_known_host_keys_match(env):
    env.wait_booted()
    rc, result, dummy = host_status(env, mac=env.vm.mac, address=env.ip, expected_system=SYSTEM, ssh_key=env.key,
                                    known_host_keys=env.host_keys)
    assert rc == 0, result
    assert result["state"] == "installed"


def test_known_host_keys_mismatch_fails(env):
    """Decided: a host key that is none of known_host_keys fails the task (it is not the machine expected)."""
    env.wait_booted()
    rc, result, dummy = host_status(env, mac=env.vm.mac, address=env.ip, expected_system=SYSTEM, ssh_key=env.key,
                                    known_host_keys=[FOREIGN_KEY])
    assert rc != 0
    assert result.get("failed") is True
    assert "none of known_host_keys" in result["msg"]
    assert result["ip"] == env.ip
    assert "state" not in result or result["state"] is None


def test_closed_port_is_absent(env):
    env.wait_booted()
    rc, result, dummy = host_status(env, mac=env.vm.mac, address=env.ip, expected_system=SYSTEM, ssh_key=env.key,
                                    ssh_port=2222)
    assert rc == 0, result
    assert result["state"] == "absent"
    assert "closed" in result["reason"]


def test_refused_key_is_unknown_os(env, tmp_path):
    env.wait_booted()
    other_key = tmp_path / "id_other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    rc, result, dummy = host_status(env, mac=env.vm.mac, address=env.ip, expected_system=SYSTEM, ssh_key=str(other_key))
    assert rc == 0, result
    assert result["state"] == "unknown_os"
    assert "refused" in result["reason"]


def test_plain_installer_is_unknown_os_found_by_arp(env):
    env.wait_booted()
    env.ssh("nixie-lab-pose --off")
    env.flush_neighbours()
    rc, result, dummy = host_status(env, mac=env.vm.mac, expected_system=SYSTEM, ssh_key=env.key)
    assert rc == 0, result
    assert result["state"] == "unknown_os"
    assert result["os_id"] == "nixie-lab-installer"
    assert result["current_system"] is None
    assert result["ip"] == env.ip and result["address_source"] == "arp"
    # No flake evaluation for a machine that does not run NixOS.
    assert result["expected_system"] == SYSTEM
