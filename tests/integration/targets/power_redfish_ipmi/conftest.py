# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One lab for the target's tests: BMC emulators driving libvirt domains (bmclab.py).

Domains, shut off, SeaBIOS + QEMU's iPXE ROM: rf1 and ip1 (booted and installed by the tests),
nonetboot (never booted). sushy-emulator manages rf1 and ip1 (Redfish, two systems), virtualbmc
is ip1's IPMI BMC, and a second sushy-emulator that ignores boot overrides manages nonetboot.
test_power_module.py runs first and leaves rf1 and ip1 off, set to boot from their (empty) disks,
so that the provision run after it depends on the one-time network boot it sets.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bmclab  # noqa: E402  pylint: disable=wrong-import-position
from nixielab.net import Lab  # noqa: E402  pylint: disable=wrong-import-position

PASSWORD = "lab-bmc-Zq7sV2"
MACS = {"rf1": "52:54:00:12:34:31", "ip1": "52:54:00:12:34:32", "nonetboot": "52:54:00:12:34:33"}


class BmcSite:
    """The lab, its BMCs and a work directory."""

    password = PASSWORD
    macs = MACS

    def __init__(self, lab, bmcs, workdir):
        self.lab = lab
        self.bmcs = bmcs
        self.workdir = workdir


@pytest.fixture(scope="session")
def bmc_site(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("power")
    with Lab(workdir=workdir / "net") as lab:
        with bmclab.BmcLab(lab, workdir / "bmc", list(MACS.items()), PASSWORD, redfish=["rf1", "ip1"], ipmi=["ip1"],
                           no_override=["nonetboot"]) as bmcs:
            yield BmcSite(lab, bmcs, workdir)
