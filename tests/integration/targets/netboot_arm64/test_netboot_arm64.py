# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""arm64 (aarch64-linux) machines boot through the collection's own server, on real firmware.

qemu-system-aarch64 -M virt under TCG with AAVMF (Debian's qemu-efi-aarch64),
two machines at once: one with the firmware's PXE client (DHCP option 93 =
11: TFTP ``ipxe-arm64.efi``), one with UEFI HTTP boot first (option 93 = 19:
``/ipxe/ipxe-arm64.efi`` over HTTP). iPXE for arm64 is Debian 13's (the
first release that ships it), fetched from Debian's registry by the lab
(nixielab.arm64); the installer is the arm64 lab installer (bookworm's arm64
kernel + busybox-static:arm64 + the real agent). hosts.json says
``arch: aarch64-linux``; the server also holds an x86_64 installer, and the
arm64 machines must be handed the arm64 one (they could not boot the other).
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

COLLECTION = Path(os.environ.get("NIXIE_COLLECTION", Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(COLLECTION / "tests" / "lab"))
sys.path.insert(0, os.environ.get("NIXIE_NETBOOT_PLAY", str(Path(__file__).resolve().parents[1] / "setup_netboot_play")))

from netboot_play import agent_result, event_names, events_named, finish_play, start_play  # noqa: E402  pylint: disable=wrong-import-position
from nixielab import arm64  # noqa: E402  pylint: disable=wrong-import-position
from nixielab import installer as lab_installer  # noqa: E402  pylint: disable=wrong-import-position
from nixielab.net import Lab  # noqa: E402  pylint: disable=wrong-import-position
from nixielab.vm import VM  # noqa: E402  pylint: disable=wrong-import-position

AGENT = COLLECTION / "nix" / "agent" / "nixie-agent"
NETWORK_UP = r"NIXIE-LAB: network up (\S+) dev \S+ mac (\S+)"
X86_IPXE = "/usr/lib/ipxe"


@pytest.fixture(scope="module")
def installers():
    return {"aarch64-linux": arm64.build(str(AGENT)), "x86_64-linux": lab_installer.build(str(AGENT))}


@pytest.fixture(scope="module")
def trixie_ipxe():
    return arm64.ipxe_dir()


def ipxe_directory(lab, trixie_ipxe):
    """Debian 12's x86 binaries plus Debian 13's ipxe-arm64.efi, side by side as pxe_server wants them."""
    directory = lab.workdir / "ipxe"
    directory.mkdir()
    for name in ("ipxe.efi", "snponly.efi", "undionly.kpxe"):
        os.symlink(os.path.join(X86_IPXE, name), directory / name)
    os.symlink(trixie_ipxe / "ipxe-arm64.efi", directory / "ipxe-arm64.efi")
    return directory


def test_aavmf_pxe_and_http_boot_get_the_arm64_installer(installers, trixie_ipxe):
    macs = {"arm-pxe": "52:54:00:12:34:a1", "arm-http": "52:54:00:12:34:a2"}
    hosts = {name: {"mac_address": mac, "arch": "aarch64-linux"} for name, mac in macs.items()}
    artifacts = {system: {"kernel": inst.kernel, "initrd": inst.initrd, "cmdline": "console=%s panic=-1" % inst.console}
                 for system, inst in installers.items()}
    with Lab() as lab:
        play, result_file = start_play(lab, hosts, artifacts, "http://%s:8080/api/v1" % lab.controller_ip,
                                       ipxe_dir=str(ipxe_directory(lab, trixie_ipxe)))
        started = time.monotonic()
        vms = {"arm-pxe": VM(lab, "aavmf-pxe", mac=macs["arm-pxe"]).start(),
               "arm-http": VM(lab, "aavmf-httpboot", mac=macs["arm-http"]).start()}
        result, log = finish_play(lab, play, result_file)
        print("both arm64 machines phoned home %.1f s after QEMU started" % (time.monotonic() - started))
        assert "failed=0" in log, log[-3000:]
        arm64_kernel = os.path.getsize(installers["aarch64-linux"].kernel)
        assert arm64_kernel != os.path.getsize(installers["x86_64-linux"].kernel)

        for name, vm in vms.items():
            agent = agent_result(result, macs[name])
            assert not agent.get("failed"), agent.get("msg")
            assert agent["state"] == "phoned_home"
            assert agent["ip"] == vm.wait_for(NETWORK_UP, timeout=10).group(1)
            names = event_names(agent)
            for expected in ("offered", "ipxe_served", "script_served", "kernel_served", "initrd_served", "phoned_home"):
                assert expected in names, (name, expected, names)
            assert names.index("ipxe_served") < names.index("script_served"), names
            # The arm64 installer, not the x86_64 one, went to the arm64 machine.
            assert [event["bytes"] for event in events_named(agent, "kernel_served")] == [arm64_kernel]
            assert "console=ttyAMA0" in vm.serial()
            # iPXE for arm64 announced itself as such again (option 93 = 11) and got its script.
            scripts = events_named(agent, "script_offered")
            assert scripts and all(event["arch"] == "efi-arm64" for event in scripts), scripts

        pxe = agent_result(result, macs["arm-pxe"])
        offered = events_named(pxe, "offered")[0]
        assert (offered["arch"], offered["firmware"], offered["boot_file"]) == ("efi-arm64", "pxe", "ipxe-arm64.efi")
        assert events_named(pxe, "boot_file_acked"), event_names(pxe)
        served = events_named(pxe, "ipxe_served")[0]
        assert served["file"] == "ipxe-arm64.efi" and served.get("via") != "http", served

        http = agent_result(result, macs["arm-http"])
        offered = events_named(http, "offered")[0]
        assert (offered["arch"], offered["firmware"]) == ("efi-arm64", "httpboot"), offered
        assert offered["boot_file"] == "http://%s:8080/ipxe/ipxe-arm64.efi" % lab.controller_ip
        served = events_named(http, "ipxe_served")[0]
        assert served["file"] == "ipxe-arm64.efi" and served["via"] == "http", served
        assert "boot_file_acked" not in event_names(http)
        assert re.search(r"HTTPClient:Arch:00019", (lab.workdir / "site-dnsmasq.log").read_text(errors="replace"))
