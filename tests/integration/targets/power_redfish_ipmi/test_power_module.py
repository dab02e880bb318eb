# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""nixie.metal.power against real BMC emulators that drive libvirt domains in the lab (conftest.py).

The module runs as Ansible runs it (a process reading its arguments as JSON on stdin) inside the lab
namespace, where the BMCs' network is, once per step; for each driver: reading only, a one-time boot
from the disk, check mode (predicts, changes nothing), one-time network boot + power on (the domain
runs and boots from the network first), idempotence, diff, reset (the machine boots again: a new
DHCP discovery), power off (once), reset of a machine that is off (powers it on), boot from the disk
and power off; for Redfish also a BMC with two systems and none named. Steps are processes rather
than playbook tasks because each playbook task costs seconds on a loaded CI machine; the module in
a playbook, with the inventory's variables and per-host failures (unreachable BMC, wrong password,
a BMC without one-time boot), is test_provision_power.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

import bmclab  # the target's directory is on sys.path (conftest.py)

# Where ansible_collections/nixie/metal is, as for Ansible itself.
COLLECTIONS_ROOT = os.environ["ANSIBLE_COLLECTIONS_PATH"].split(":")[0]


class Bmc:
    """Runs nixie.metal.power for one machine's BMC, as Ansible would, inside the lab namespace."""

    def __init__(self, site, args):
        self.lab = site.lab
        self.password = site.password
        self.args = dict(args, user=bmclab.USER, password=site.password)

    def __call__(self, check_mode=False, diff=False, **options):
        arguments = dict(self.args, **options, _ansible_check_mode=check_mode, _ansible_diff=diff)
        env = dict(os.environ, PYTHONPATH=COLLECTIONS_ROOT)
        run = subprocess.run(self.lab.wrap([sys.executable, "-m", "ansible_collections.nixie.metal.plugins.modules.power"]),
                             input=json.dumps({"ANSIBLE_MODULE_ARGS": arguments}), capture_output=True, text=True,
                             env=env, check=False)
        assert self.password not in run.stdout + run.stderr
        result = json.loads(run.stdout)
        assert run.returncode == (1 if result.get("failed") else 0), run.stderr
        return result


def discovers(lab, mac):
    log = (lab.workdir / "site-dnsmasq.log").read_text(encoding="utf-8", errors="replace")
    return len(re.findall(r"DHCPDISCOVER\(eth0\) %s" % re.escape(mac), log))


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def domain(lab_bmcs, name):
    return lab_bmcs.domstate(name), lab_bmcs.first_boot_device(name)


@pytest.mark.parametrize("driver", ["redfish", "ipmi"])
def test_every_state(bmc_site, driver):
    lab, lab_bmcs = bmc_site.lab, bmc_site.bmcs
    if driver == "redfish":
        name = "rf1"
        power = Bmc(bmc_site, {"driver": "redfish", "address": lab_bmcs.redfish_url(), "system": name})
        label = "Redfish BMC %s (system rf1)" % lab_bmcs.redfish_url()
    else:
        name = "ip1"
        power = Bmc(bmc_site, {"driver": "ipmi", "address": lab_bmcs.address, "port": lab_bmcs.ipmi_ports[name]})
        label = "IPMI BMC %s:%d" % (lab_bmcs.address, lab_bmcs.ipmi_ports[name])
    mac = bmc_site.macs[name]

    read = power()
    assert not read["changed"] and read["power_before"] == read["power_after"] == "off" and read["actions"] == []
    assert read["bmc"] == label

    # The lab's domains boot from the network first (sushy-emulator reports that as a Pxe override):
    # start from the disk, so that the network boot below is a change for both BMCs.
    from_disk = power(boot="disk")
    assert from_disk["boot_after"]["device"] == "disk" and from_disk["power_after"] == "off"
    assert domain(lab_bmcs, name) == ("shut off", "hd")

    checked = power(boot="network", state="on", check_mode=True)
    assert checked["changed"] and checked["actions"] == ["boot once from network", "power on"]
    assert checked["power_after"] == "on" and checked["boot_after"]["device"] == "network"
    assert domain(lab_bmcs, name) == ("shut off", "hd")

    powered = power(boot="network", state="on", diff=True)
    assert powered["changed"] and powered["actions"] == ["boot once from network", "power on"]
    assert powered["power_before"] == "off" and powered["power_after"] == "on"
    assert powered["diff"]["before"] == {"power": "off", "boot": from_disk["boot_after"]}
    assert powered["diff"]["after"]["power"] == "on" and powered["diff"]["after"]["boot"]["device"] == "network"
    assert domain(lab_bmcs, name) == ("running", "network")

    again = power(boot="network", state="on")
    assert not again["changed"] and again["actions"] == []

    # Reset: once the first boot has done its DHCP, a new DHCP discovery means the machine booted again.
    wait_until(lambda: re.search(r"DHCPACK\(eth0\) \S+ %s" % mac, (lab.workdir / "site-dnsmasq.log").read_text(
        encoding="utf-8", errors="replace")), 60, "%s never got its address" % name)
    before = discovers(lab, mac)
    reset = power(state="reset")
    assert reset["changed"] and reset["actions"] == ["reset"] and reset["power_after"] == "on"
    wait_until(lambda: discovers(lab, mac) > before, 30, "%s did not boot again after the reset" % name)

    powered_off = power(state="off")
    assert powered_off["changed"] and powered_off["actions"] == ["power off"] and powered_off["power_after"] == "off"
    assert not power(state="off")["changed"]
    assert lab_bmcs.domstate(name) == "shut off"

    reset_off = power(state="reset")
    assert reset_off["changed"] and reset_off["actions"] == ["power on"] and reset_off["power_after"] == "on"

    # While the domain runs, virtualbmc reports the boot device it started with: the module warns then
    # (a disk boot that reads back otherwise is a warning), and once the domain is off it reports the disk.
    disk = power(boot="disk", state="off")
    assert disk["changed"] and disk["boot_after"]["device"] == "disk" and disk["power_after"] == "off"
    assert not power(boot="disk")["changed"]
    assert domain(lab_bmcs, name) == ("shut off", "hd")


def test_a_redfish_bmc_with_two_systems_wants_one_named(bmc_site):
    lab_bmcs = bmc_site.bmcs
    result = Bmc(bmc_site, {"driver": "redfish", "address": lab_bmcs.redfish_url()})(state="on")
    assert result["failed"]
    assert result["msg"].startswith("Redfish BMC %s manages 2 systems (" % lab_bmcs.redfish_url())
    assert "power.system" in result["msg"]
    assert lab_bmcs.domstate("rf1") == lab_bmcs.domstate("ip1") == "shut off"
