# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Smoke test: the lab itself works.

Builds the lab installer, makes the namespace topology, boots one
SeaBIOS + iPXE VM through dnsmasq (proxyDHCP) and the HTTP stand-in, and
waits for the installer's markers and the agent's phone-home.  Needs root,
QEMU, dnsmasq and dumpcap (scripts/setup installs them); runs in CI with
the netboot_qemu target, since bench/e2e.py's anchor is this very setup.  ≈15 s warm.

    python3 -m pytest tests/lab/test_lab_smoke.py -v
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nixielab import installer  # noqa: E402
from nixielab.net import Lab  # noqa: E402
from nixielab.services import HttpStub, start_proxy_dnsmasq  # noqa: E402
from nixielab.vm import VM  # noqa: E402


@pytest.fixture(scope="module")
def lab_installer() -> installer.Installer:
    return installer.build(installer.default_agent())


def test_seabios_ipxe_boots_lab_installer(lab_installer, tmp_path):
    with Lab() as lab:
        stub = HttpStub(lab, lab_installer, token="smoke-token")
        start_proxy_dnsmasq(lab)
        capture = lab.capture(tmp_path / "smoke.pcap").start()
        vm = VM(lab, "seabios-ipxe").start()

        ip = vm.wait_for(r"NIXIE-LAB: network up (\d+\.\d+\.\d+\.\d+)", timeout=180).group(1)
        assert ip.startswith(lab.subnet + ".")
        vm.wait_for(r"NIXIE-LAB: agent exit 0", timeout=120)
        capture.stop()

        homes = stub.phone_homes()
        assert len(homes) == 1
        assert homes[0]["authorization"] == "Bearer smoke-token"
        body = json.loads(homes[0]["body"])
        assert body["mac"] == vm.mac
        paths = [r.get("path") for r in stub.requests()]
        assert "/boot.ipxe" in paths
        assert (tmp_path / "smoke.pcap").stat().st_size > 0
        namespaces = (lab.lab_ns, lab.site_ns)
    # The topology is gone once the block is left.
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not any(ns in listed for ns in namespaces)
