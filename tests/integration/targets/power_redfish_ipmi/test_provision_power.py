# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Machines installed end to end through their BMCs: ansible-playbook nixie.metal.provision in the lab.

The lab (conftest.py, bmclab.py): libvirt domains shut off on the lab bridge, sushy-emulator (Redfish)
for rf1, virtualbmc (IPMI) for ip1, a Redfish emulator that ignores boot overrides for nonetboot.
After test_power_module.py, rf1 and ip1 are set to boot from their empty disks, so they reach the
installer only through the one-time network boot the run sets. hosts.json names seven machines:

  rf1        redfish, password from an environment variable            -> installed
  ip1        ipmi, password from an Ansible Vault encrypted group_vars   -> installed
  rf-unreachable, ipmi-unreachable  a BMC address where nothing answers    -> each fails, naming host and BMC
  rf-wrongpw, ipmi-wrongpw          rf1's and ip1's BMCs, a wrong password -> each fails, naming host and BMC
  nonetboot  redfish, a BMC that ignores one-time boot overrides            -> fails, naming host and BMC

Run 1 proves that rf1 and ip1 are powered on by their BMCs, netboot through the collection's
server, phone home and are installed (the offline stand-ins: the lab installer with dropbear and
the stand-in nixos-anywhere, which makes the installer pose as the host's system), that each BMC is
left booting from the disk, and that the bad machines fail alone, each with a message naming the
machine and its BMC, while the others are installed in the same run (the report names the machine).

Run 2 records rf1's and ip1's addresses and changes their systems (host_status then says other_system),
and names rf1 in nixie_reinstall: rf1 is restarted by its BMC into the installer and installed again;
ip1, running NixOS and not named, is refused before its BMC is touched.

Each run has its own /run/nixie-metal (a tmpfs in the run's mount namespace), so it never meets a
netboot server of another run on this machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bmclab  # the target's directory and tests/lab are on sys.path (conftest.py, bmclab.py)
from nixielab import installer

BIN = Path(sys.executable).parent
VAULT_PASSWORD = "lab-vault-Rt2mX5"
STANDIN = bmclab.COLLECTION / "tests" / "integration" / "targets" / "role_nixos_anywhere" / "files" / "nixos-anywhere"
SYSTEM = "/nix/store/00000000000000000000000000000000-nixos-system-{attribute}-%s"
BAD_MACS = {"rf-unreachable": "52:54:00:12:34:34", "ipmi-unreachable": "52:54:00:12:34:35",
            "rf-wrongpw": "52:54:00:12:34:36", "ipmi-wrongpw": "52:54:00:12:34:37"}
BAD = ["rf-unreachable", "ipmi-unreachable", "rf-wrongpw", "ipmi-wrongpw", "nonetboot"]

# The run inside the lab namespace's own mount namespace, with a private /run/nixie-metal.
WRAPPER = 'mkdir -p "$0" && mount -t tmpfs -o mode=0755,size=4m nixie-run "$0" && exec "$@" </dev/null'


@pytest.fixture(scope="module")
def site(bmc_site):
    return Site(bmc_site)


class Site:
    """The site directory (hosts.json, inventory, vault, stand-ins) and how to run the playbook in the lab."""

    def __init__(self, bmc_site):
        self.lab = lab = bmc_site.lab
        self.bmcs = bmc_site.bmcs
        self.password = bmc_site.password
        self.macs = dict(bmc_site.macs, **BAD_MACS)
        workdir = bmc_site.workdir
        self.dir = workdir / "site"
        self.dir.mkdir()
        key, public = installer.lab_client_key()
        built = installer.build(installer.default_agent(), with_sshd=True, authorized_keys=(public,))
        (self.dir / "hosts.nixie.yml").write_text("plugin: nixie.metal.hosts\npath: hosts.json\n", encoding="utf-8")
        (self.dir / "ansible.cfg").write_text(
            "[defaults]\nhost_key_checking = false\nretry_files_enabled = false\nforks = 10\nvault_password_file = %s\n"
            "[inventory]\nenable_plugins = nixie.metal.hosts\nany_unparsed_is_failed = true\n" % (self.dir / "vault-pass"),
            encoding="utf-8")
        self._write_vault()
        self.vars = {
            "nixie_interface": "br0",
            "nixie_address": lab.controller_ip,
            "nixie_installer": {"kernel": str(built.kernel), "initrd": str(built.initrd), "cmdline": "console=ttyS0 panic=-1"},
            "nixie_ssh_key": str(key),
            "nixie_nixos_anywhere": str(STANDIN),
            "nixie_build": "flake",  # no site flake to build the systems from: the stand-in is given --flake
            "nixie_disks": ["/dev/vda"],  # the lab machines' virtio disk; the stand-in flake has no disko
            "nixie_agent_timeout": 240,
            "nixie_install_timeout": 300,
            "nixie_power_timeout": 5,
            "nixie_preflight_dhcp_wait": 2,  # the site dnsmasq answers at once
        }
        self.standin_log = workdir / "nixos-anywhere.jsonl"

    def _write_vault(self):
        group_vars = self.dir / "group_vars" / "nixie"
        group_vars.mkdir(parents=True)
        (self.dir / "vault-pass").write_text(VAULT_PASSWORD + "\n", encoding="utf-8")
        vault = group_vars / "vault.yml"
        vault.write_text("lab_ipmi_password: %s\n" % self.password, encoding="utf-8")
        subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(self.dir / "vault-pass"),
                        str(vault)], check=True, capture_output=True)
        assert self.password not in vault.read_text(encoding="utf-8")

    def leases(self):
        """{mac: ip} from the site DHCP server's lease file."""
        lines = (self.lab.workdir / "site.leases").read_text(encoding="utf-8").splitlines()
        return {line.split()[1]: line.split()[2] for line in lines if len(line.split()) > 2}

    def write_hosts(self, names, version, addresses=None):
        bmc = self.bmcs
        power = {
            "rf1": {"driver": "redfish", "address": bmc.redfish_url(), "user": bmclab.USER,
                    "password_env": "LAB_REDFISH_PASSWORD", "system": "rf1"},
            "ip1": {"driver": "ipmi", "address": bmc.address, "port": bmc.ipmi_ports["ip1"], "user": bmclab.USER,
                    "password_var": "lab_ipmi_password"},
            "rf-unreachable": {"driver": "redfish", "address": "http://%s.9:8000" % self.lab.subnet, "user": bmclab.USER,
                               "password_env": "LAB_REDFISH_PASSWORD"},
            "ipmi-unreachable": {"driver": "ipmi", "address": "%s.9" % self.lab.subnet, "user": bmclab.USER,
                                 "password_var": "lab_ipmi_password"},
            "rf-wrongpw": {"driver": "redfish", "address": bmc.redfish_url(), "user": bmclab.USER,
                           "password_env": "LAB_WRONG_PASSWORD", "system": "rf1"},
            "ipmi-wrongpw": {"driver": "ipmi", "address": bmc.address, "port": bmc.ipmi_ports["ip1"], "user": bmclab.USER,
                             "password_env": "LAB_WRONG_PASSWORD"},
            "nonetboot": {"driver": "redfish", "address": bmc.redfish_url(bmclab.REDFISH_NO_OVERRIDE_PORT),
                          "user": bmclab.USER, "password_env": "LAB_REDFISH_PASSWORD", "system": "nonetboot"},
        }
        hosts = {name: {"mac_address": self.macs[name], "system": (SYSTEM % version).replace("{attribute}", name),
                        "power": power[name]} for name in names}
        for name, address in (addresses or {}).items():
            hosts[name]["ip"] = address
        (self.dir / "hosts.json").write_text(json.dumps(hosts, indent=2), encoding="utf-8")

    def provision(self, name, version, extra_vars=None):
        variables = dict(self.vars, **(extra_vars or {}))
        vars_file = self.dir / ("%s.vars.json" % name)
        vars_file.write_text(json.dumps(variables), encoding="utf-8")
        command = [str(BIN / "ansible-playbook"), "-v", "nixie.metal.provision", "-i", str(self.dir / "hosts.nixie.yml"),
                   "-e", "@%s" % vars_file]
        env = dict(os.environ, ANSIBLE_CONFIG=str(self.dir / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_INVENTORY_ENABLED="nixie.metal.hosts", PATH="%s:%s" % (BIN, os.environ["PATH"]),
                   LAB_REDFISH_PASSWORD=self.password, LAB_WRONG_PASSWORD="not-the-bmc-password",
                   NIXOS_ANYWHERE_STANDIN_LOG=str(self.standin_log),
                   NIXOS_ANYWHERE_STANDIN_SYSTEM=SYSTEM % version)
        run = subprocess.run(self.lab.wrap(["sh", "-c", WRAPPER, "/run/nixie-metal", *command]), capture_output=True,
                             text=True, env=env, check=False, cwd=self.dir)
        output = run.stdout + run.stderr
        (self.dir / ("%s.log" % name)).write_text(output, encoding="utf-8")
        return run.returncode, output

    def installs(self):
        """{host: number of stand-in nixos-anywhere runs}"""
        counts = {}
        if self.standin_log.exists():
            for line in self.standin_log.read_text(encoding="utf-8").splitlines():
                argv = json.loads(line)["argv"]
                attribute = argv[argv.index("--flake") + 1].rsplit("#", 1)[1]
                counts[attribute] = counts.get(attribute, 0) + 1
        return counts


def report(output):
    """{host: report line} from the playbook's "Report every machine" task."""
    lines = {}
    for match in re.finditer(r'"msg": "([A-Za-z0-9_-]+): (.*)"\n', output):
        lines[match.group(1)] = match.group(2)
    return lines


def test_install_through_bmcs_and_reinstall(site):
    bmcs = site.bmcs
    site.write_hosts(["rf1", "ip1"] + BAD, "lab")
    code, output = site.provision("run1", "lab")
    lines = report(output)
    tail = output[-8000:]
    # The bad machines fail the run, alone.
    assert code == 2, tail
    assert lines["rf1"].startswith("installed"), tail
    assert lines["ip1"].startswith("installed"), tail
    power_step = r"^failed in [0-9.]+s - Boot the machine from the network once through its BMC, powering it on or restarting it: "
    expected = {
        "rf-unreachable": r"Redfish BMC http://[0-9.]+\.9:8000 did not answer \(no route to the host, 2 attempts\)",
        "ipmi-unreachable": r"IPMI BMC [0-9.]+\.9:623 did not answer within about 5 s",
        "rf-wrongpw": r"Redfish BMC http://[0-9.]+\.4:8000 \(system rf1\) refused user 'admin' \(HTTP 401\)",
        "ipmi-wrongpw": r"IPMI BMC [0-9.]+\.4:%d refused user 'admin' \(Incorrect password provided\)" % bmcs.ipmi_ports["ip1"],
        "nonetboot": r"Redfish BMC http://[0-9.]+\.4:8001 \(system nonetboot\) accepted a one-time boot from the network "
                     r"but reports disk afterwards: it does not support one-time boot overrides",
    }
    for name, message in expected.items():
        assert re.search(power_step + message, lines[name]), lines[name]
    assert site.installs() == {"rf1": 1, "ip1": 1}
    # The BMCs powered the machines on and were left booting them from the disk.
    assert bmcs.domstate("rf1") == "running" and bmcs.domstate("ip1") == "running"
    assert bmcs.first_boot_device("rf1") == "hd" and bmcs.first_boot_device("ip1") == "hd"
    # Nothing reached the machine behind the BMC that ignores boot overrides.
    assert bmcs.domstate("nonetboot") == "shut off"
    assert site.password not in output

    # Run 2: new systems; rf1 is to be reinstalled, ip1 is not.
    domids = {name: bmcs.domid(name) for name in ("rf1", "ip1")}
    # Installed machines with known addresses (hosts.json "ip"), as a site records them.
    leases = site.leases()
    site.write_hosts(["rf1", "ip1"], "v2", {name: leases[site.macs[name]] for name in ("rf1", "ip1")})
    code, output = site.provision("run2", "v2", {"nixie_reinstall": "rf1"})
    lines = report(output)
    tail = output[-8000:]
    assert code == 2, tail
    assert lines["rf1"].startswith("installed"), tail
    assert re.search(r"^failed in [0-9.]+s - Refuse to restart a machine that runs an operating system.*: it runs NixOS "
                     r"/nix/store/0+-nixos-system-ip1-lab at [0-9.]+; .*-e nixie_reinstall=ip1", lines["ip1"]), lines["ip1"]
    assert site.installs() == {"rf1": 2, "ip1": 1}
    # rf1 was restarted (a new libvirt domain id); ip1 was not touched.
    assert bmcs.domid("rf1") != domids["rf1"]
    assert bmcs.domid("ip1") == domids["ip1"]
    assert bmcs.first_boot_device("rf1") == "hd"
