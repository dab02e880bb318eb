# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""IPv6 single-stack: real firmware boots through the collection's own server with no IPv4 anywhere.

UEFI firmware (virtio-net, its own network stack; its IPv4 PXE attempt
switched off with fw_cfg, as a firmware setup would) runs PXE over IPv6:
DHCPv6, the boot server request on UDP 4011, TFTP of the iPXE binary over
IPv6; that iPXE does DHCPv6, fetches the script, kernel and initrd over
HTTP on IPv6; the lab installer takes an address by SLAAC and its agent
phones home over IPv6. pxe_server and wait_for_agent run through Ansible
(setup_netboot_play).

* beside the site: dnsmasq in the site namespace is the router (RA with the
  M and A flags) and the stateful DHCPv6 server; pxe_server answers in its
  default ``dhcp6: proxy`` mode, without addresses. iPXE takes its boot
  file only from the server that gives its address, so the site names the
  script, with iPXE's ``${net0/mac}`` (what docs/ipv6.md asks of a site).
  OVMF (x86_64, Debian 12's iPXE) and AAVMF (arm64, Debian 13's iPXE for
  arm64) boot at the same time, each into the installer of its architecture;
* an isolated segment: no router, no DHCPv6 server; ``dhcp6: addresses``
  makes pxe_server advertise the prefix and hand out addresses itself.
"""


from __future__ import annotations

import ipaddress
import os
import sys
import time
from pathlib import Path

import pytest

COLLECTION = Path(os.environ.get("NIXIE_COLLECTION", Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(COLLECTION / "tests" / "lab"))
sys.path.insert(0, os.environ.get("NIXIE_NETBOOT_PLAY", str(Path(__file__).resolve().parents[1] / "setup_netboot_play")))

from netboot_play import agent_result, event_names, events_named, finish_play, start_play  # noqa: E402  pylint: disable=wrong-import-position
from nixielab import arm64, fixtures6  # noqa: E402  pylint: disable=wrong-import-position
from nixielab import installer as lab_installer  # noqa: E402  pylint: disable=wrong-import-position
from nixielab import ipv6  # noqa: E402  pylint: disable=wrong-import-position
from nixielab.net import Lab  # noqa: E402  pylint: disable=wrong-import-position
from nixielab.vm import VM  # noqa: E402  pylint: disable=wrong-import-position

NETWORK_UP = r"NIXIE-LAB: network up (\S+) dev \S+ mac (\S+)"
API = "http://[%s]:8080/api/v1" % ipv6.CONTROLLER_IP6


X86_IPXE = "/usr/lib/ipxe/ipxe.efi"


@pytest.fixture(scope="module")
def installers():
    agent = str(COLLECTION / "nix" / "agent" / "nixie-agent")
    return {"x86_64-linux": lab_installer.build(agent), "aarch64-linux": arm64.build(agent)}


@pytest.fixture(scope="module")
def arm64_ipxe():
    return arm64.ipxe_dir() / "ipxe-arm64.efi"


def wire(lab):
    """The DHCPv6, RA and TFTP requests of the boot, one line each (for failure messages)."""
    trimmed = lab.workdir / "boot-dhcp6.pcap"
    fixtures6.trim(lab.workdir / "boot.pcap", trimmed)
    return "\n".join(line[:220] for line in fixtures6.describe(trimmed))


def boot(lab, installers, arm64_ipxe, machines, **server_vars):
    """Serve machines over IPv6 through the play, all at once; return (play result, {mac: VM}).

    ``machines``: ``{mac: (VM kind, Nix system)}``.
    """
    ipxe_dir = lab.workdir / "ipxe"
    ipxe_dir.mkdir()
    os.symlink(X86_IPXE, ipxe_dir / "ipxe.efi")
    os.symlink(arm64_ipxe, ipxe_dir / "ipxe-arm64.efi")
    artifacts = {system: {"kernel": inst.kernel, "initrd": inst.initrd, "cmdline": "console=%s panic=-1" % inst.console}
                 for system, inst in installers.items()}
    hosts = {"v6-%d" % number: {"mac_address": mac, "arch": system} for number, (mac, (dummy, system)) in enumerate(machines.items())}
    play, result_file = start_play(lab, hosts, artifacts, API, ipxe_dir=str(ipxe_dir), **server_vars)
    capture = lab.capture(lab.workdir / "boot.pcap", "ip6").start()
    started = time.monotonic()
    vms = {mac: VM(lab, kind, mac=mac, extra=ipv6.OVMF_NO_PXE4).start() for mac, (kind, dummy) in machines.items()}
    result, log = finish_play(lab, play, result_file)
    print("phoned home over IPv6 %.1f s after QEMU started" % (time.monotonic() - started))
    capture.stop()
    assert "failed=0" in log, log[-3000:]
    for mac, vm in vms.items():
        agent = agent_result(result, mac)
        # How the server ended says why an agent's wait found no API (it stopped, or it crashed and why).
        server_end = {key: result["server"].get(key) for key in ("stop_reason", "msg", "failed", "finished", "exception")}
        assert not agent.get("failed"), "%s\n--- the server's end ---\n%s\n--- DHCPv6 on the wire ---\n%s\n--- console ---\n%s" % (
            agent.get("msg"), server_end, wire(lab), vm.serial()[-3000:])
    server = result["server"]
    assert server["server"]["address"] is None and server["server"]["address6"] == ipv6.CONTROLLER_IP6
    return result, vms


def check_ipv6_boot(result, mac, vm, binary, arch):
    """Every stage of one machine's boot went over IPv6, through firmware PXE, to the installer's phone-home."""
    agent = agent_result(result, mac)
    assert agent["state"] == "phoned_home"
    # wait_for_agent returns the installer's IPv6 address: the one it took, not the link-local one.
    address = ipaddress.ip_address(agent["ip"])
    assert address.version == 6 and not address.is_link_local
    assert agent["ip"] == vm.wait_for(NETWORK_UP, timeout=10).group(1)
    names = event_names(agent)
    for expected in ("offered", "boot_file_acked", "ipxe_served", "script_served", "kernel_served", "initrd_served",
                     "phoned_home"):
        assert expected in names, (expected, names)
    offered = events_named(agent, "offered")[0]
    assert (offered["family"], offered["port"], offered["firmware"], offered["arch"]) == ("ipv6", 547, "pxe", arch)
    assert offered["boot_file"] == "tftp://[%s]/%s" % (ipv6.CONTROLLER_IP6, binary)
    acked = events_named(agent, "boot_file_acked")
    assert any(event["port"] == 4011 for event in acked), acked
    served = events_named(agent, "ipxe_served")[0]
    assert ipaddress.ip_address(served["client"]).version == 6 and served["file"] == binary
    for kind in ("script_served", "kernel_served", "initrd_served"):
        assert ipaddress.ip_address(events_named(agent, kind)[0]["peer"]).version == 6, kind
    serial = vm.serial()
    assert "nixie.api=%s" % API in serial and "nixie.metal: no IP address yet" not in serial
    return agent


def test_uefi_pxe_over_ipv6_beside_the_site_router(installers, arm64_ipxe):
    """OVMF (x86_64) and AAVMF (arm64) at once, each given the iPXE and the installer of its architecture."""
    machines = {"52:54:00:12:34:61": ("ovmf-pxe", "x86_64-linux"), "52:54:00:12:34:b1": ("aavmf-pxe", "aarch64-linux")}
    with Lab(site_dhcp=False) as lab:
        ipv6.remove_ipv4(lab)
        ipv6.start_site_dhcp6(lab, ipxe_script=ipv6.ipxe_script_template())
        result, vms = boot(lab, installers, arm64_ipxe, machines)
        assert result["server"]["server"]["dhcp6"] == "proxy"
        for mac, binary, arch in (("52:54:00:12:34:61", "ipxe.efi", "efi-x86_64"), ("52:54:00:12:34:b1", "ipxe-arm64.efi", "efi-arm64")):
            agent = check_ipv6_boot(result, mac, vms[mac], binary, arch)
            # The address came from the site (its range), the boot file from us.
            assert "address" not in events_named(agent, "offered")[0]
            assert ipaddress.ip_address(events_named(agent, "ipxe_served")[0]["client"]) in ipaddress.ip_network(ipv6.SITE_NETWORK6)
            assert "Station IP address is FD77" in vms[mac].serial(), "PXE over IPv6 did not get its boot file:\n%s\n%s" % (
                wire(lab), [(e["event"], e.get("port"), e.get("boot_file")) for e in agent["events"]])
        kernels = [events_named(agent_result(result, mac), "kernel_served")[0]["bytes"] for mac in machines]
        assert kernels == [os.path.getsize(installers[system].kernel) for dummy, system in machines.values()]


def test_ovmf_pxe_over_ipv6_on_an_isolated_segment(installers, arm64_ipxe):
    mac = "52:54:00:12:34:62"
    with Lab(site_dhcp=False) as lab:
        ipv6.remove_ipv4(lab)
        result, vms = boot(lab, {"x86_64-linux": installers["x86_64-linux"]}, arm64_ipxe, {mac: ("ovmf-pxe", "x86_64-linux")},
                           dhcp6="addresses")
        assert result["server"]["server"]["dhcp6"] == "addresses"
        agent = check_ipv6_boot(result, mac, vms[mac], "ipxe.efi", "efi-x86_64")
        # The firmware's and iPXE's address: the prefix plus the MAC's 48 bits.
        offered = events_named(agent, "offered")[0]
        assert offered["address"] == "fd77::5254:12:3462"
        assert events_named(agent, "ipxe_served")[0]["client"] == "fd77::5254:12:3462"
        assert events_named(agent, "script_offered"), event_names(agent)
