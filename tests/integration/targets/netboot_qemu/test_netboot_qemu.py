# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real firmware boots through the collection's own server, driven by Ansible.

Each test makes a private lab (network namespaces, a bridge, dnsmasq as the
site's DHCP server handing out addresses only), runs serve_and_wait.yml in the
lab namespace (pxe_server as an async job, wait_for_agent per expected MAC),
boots QEMU machines (TCG) and checks that wait_for_agent returned the address
each machine's installer actually got. The lab installer (Debian kernel +
busybox initramfs carrying the real agent) stands in for the NixOS netboot
image, which cannot be built offline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

COLLECTION = Path(os.environ.get("NIXIE_COLLECTION", Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(COLLECTION / "tests" / "lab"))

from nixielab import installer as lab_installer  # noqa: E402  pylint: disable=wrong-import-position
from nixielab.net import SITE_VETH, Lab, wait_for_file_text  # noqa: E402  pylint: disable=wrong-import-position
from nixielab.vm import VM  # noqa: E402  pylint: disable=wrong-import-position
from scapy.layers.inet import IP, TCP, UDP  # noqa: E402  pylint: disable=wrong-import-position
from scapy.utils import rdpcap  # noqa: E402  pylint: disable=wrong-import-position

HERE = Path(__file__).resolve().parent
AGENT_TIMEOUT = 180
NETWORK_UP = re.compile(r"NIXIE-LAB: network up (\S+) dev \S+ mac (\S+)")
# DHCPv4 (67, 68), the PXE boot server port (4011) and DHCPv6 (546, 547): every way a machine asks for an address.
DHCP_PORTS = {67, 68, 546, 547, 4011}


@pytest.fixture(scope="module")
def installer():
    return lab_installer.build(str(COLLECTION / "nix" / "agent" / "nixie-agent"))


def start_play(lab, installer, hosts, expect_macs, **options):
    """Run serve_and_wait.yml in the lab namespace; return (process, result path).

    ``hosts``: name -> MAC, or name -> hosts.json entry; ``options``: more pxe_server options (dhcp...).
    """
    hosts_file = lab.workdir / "hosts.json"
    entries = {name: entry if isinstance(entry, dict) else {"mac_address": entry} for name, entry in hosts.items()}
    hosts_file.write_text(json.dumps(entries), encoding="utf-8")
    result_file = lab.workdir / "result.json"
    variables = {
        "hosts_file": str(hosts_file),
        "kernel": str(installer.kernel),
        "initrd": str(installer.initrd),
        "cmdline": installer.cmdline(),
        "interface": lab.bridge,
        "run_dir": str(lab.workdir / "run"),
        "api_url": "http://%s:8080/api/v1" % lab.controller_ip,
        "expect_macs": expect_macs,
        "agent_timeout": AGENT_TIMEOUT,
        "result_file": str(result_file),
        "ansible_python_interpreter": sys.executable,
    }
    variables.update(options)
    (lab.workdir / "vars.json").write_text(json.dumps(variables), encoding="utf-8")
    log = open(lab.workdir / "play.log", "wb")  # pylint: disable=consider-using-with
    play = lab.popen(["ansible-playbook", "-i", "localhost,", "-c", "local", "-e", "@%s" % (lab.workdir / "vars.json"),
                      str(HERE / "serve_and_wait.yml")], stdout=log, stderr=subprocess.STDOUT)
    wait_for_api(lab, play)
    return play, result_file


def wait_for_api(lab, play, timeout=60):
    """Return once the server answers its health endpoint (from inside the lab namespace)."""
    deadline = time.monotonic() + timeout
    url = "http://%s:8080/api/v1/health" % lab.controller_ip
    while time.monotonic() < deadline:
        if play.poll() is not None:
            pytest.fail("the play ended before the server came up:\n" + (lab.workdir / "play.log").read_text(errors="replace")[-3000:])
        if lab.run(["curl", "-sf", "-o", "/dev/null", url], check=False).returncode == 0:
            return
        time.sleep(0.3)
    pytest.fail("the server did not come up in %ds" % timeout)


def finish_play(lab, play, result_file, timeout=AGENT_TIMEOUT + 120):
    play.wait(timeout=timeout)
    log = (lab.workdir / "play.log").read_text(errors="replace")
    assert result_file.exists(), "the play wrote no result:\n" + log[-4000:]
    return json.loads(result_file.read_text(encoding="utf-8")), log


def installer_address(vm, timeout=AGENT_TIMEOUT):
    """The address the lab installer's DHCP client got, read from the serial console."""
    match = vm.wait_for(NETWORK_UP.pattern, timeout=timeout)
    return match.group(1)


def agent_result(result, mac):
    for item in result["agents"]:
        if item["item"] == mac:
            return item
    raise AssertionError("no wait_for_agent result for %s" % mac)


def assert_served(result, mac, vm, expected_events):
    agent = agent_result(result, mac)
    assert not agent.get("failed"), agent.get("msg")
    assert agent["ip"] == installer_address(vm)
    assert agent["state"] == "phoned_home"
    events = [event["event"] for event in agent["events"]]
    for name in expected_events:
        assert name in events, (name, events)
    # No token in anything Ansible returned.
    assert "nixie.token" not in json.dumps(result)
    return events


def test_ovmf_firmware_pxe_then_ipxe(installer):
    """Path (1): OVMF's own PXE stack (virtio-net, ROM disabled) -> TFTP ipxe.efi -> iPXE -> HTTP."""
    with Lab() as lab:
        mac = "52:54:00:12:34:01"
        play, result_file = start_play(lab, installer, {"ovmf1": mac}, [mac])
        vm = VM(lab, "ovmf-pxe", mac=mac).start()
        result, log = finish_play(lab, play, result_file)
        events = assert_served(result, mac, vm, ["offered", "boot_file_acked", "ipxe_served", "script_served",
                                                 "kernel_served", "initrd_served", "phoned_home"])
        assert events.index("ipxe_served") < events.index("script_served"), events
        server = result["server"]
        assert server["stop_reason"] in ("every host is done", "state=stopped"), server["stop_reason"]
        assert "failed=0" in log


def test_ovmf_uefi_http_boot(installer):
    """Path (3): OVMF UEFI HTTP boot (PXE switched off) takes our proxy offer beside the site's address offer.

    OVMF HEADs and GETs ipxe.efi from the URL in the proxy offer, iPXE runs the
    script; the HTTP fetch of the binary is tied to the MAC by the address the
    firmware took from the site's server.
    """
    with Lab() as lab:
        mac = "52:54:00:12:34:31"
        play, result_file = start_play(lab, installer, {"httpboot1": mac}, [mac])
        vm = VM(lab, "ovmf-httpboot", mac=mac).start()
        result, log = finish_play(lab, play, result_file)
        events = assert_served(result, mac, vm, ["offered", "ipxe_served", "script_offered", "script_served",
                                                 "kernel_served", "initrd_served", "phoned_home"])
        details = agent_result(result, mac)["events"]
        offered = [event for event in details if event["event"] == "offered"]
        assert offered and all(event.get("firmware") == "httpboot" for event in offered), offered
        assert offered[0]["boot_file"] == "http://%s:8080/ipxe/ipxe.efi" % lab.controller_ip, offered
        served = [event for event in details if event["event"] == "ipxe_served"]
        assert served and served[0].get("via") == "http" and served[0].get("file") == "ipxe.efi", served
        # No TFTP, no 4011 round: HTTP boot takes the binary from the offer itself.
        assert "boot_file_acked" not in events, events
        assert events.index("ipxe_served") < events.index("script_served"), events
        assert "failed=0" in log


def test_seabios_ipxe_rom_and_a_stranger_gets_nothing(installer):
    """Path (2) and (5): SeaBIOS with the iPXE ROM is served; a MAC outside the inventory is not."""
    with Lab() as lab:
        known, stranger = "52:54:00:12:34:11", "52:54:00:12:34:66"
        play, result_file = start_play(lab, installer, {"bios1": known}, [known])
        stranger_vm = VM(lab, "seabios-ipxe", mac=stranger).start()
        vm = VM(lab, "seabios-ipxe", mac=known).start()
        result, dummy = finish_play(lab, play, result_file)
        assert_served(result, known, vm, ["script_offered", "script_served", "kernel_served", "initrd_served"])
        ignored = result["server"]["ignored"]["macs"]
        assert stranger in ignored, ignored
        serial = stranger_vm.serial()
        assert "nixie.metal" not in serial and "script.ipxe" not in serial, serial[-2000:]


def test_two_machines_at_once(installer):
    """Path (4): two machines boot at the same time, each gets its own installer and address."""
    with Lab() as lab:
        macs = {"pair1": "52:54:00:12:34:21", "pair2": "52:54:00:12:34:22"}
        play, result_file = start_play(lab, installer, macs, list(macs.values()))
        vms = {mac: VM(lab, kind, mac=mac).start() for kind, mac in zip(("seabios-ipxe", "ovmf-ipxe"), macs.values())}
        result, dummy = finish_play(lab, play, result_file)
        addresses = set()
        for mac, vm in vms.items():
            assert_served(result, mac, vm, ["script_served", "kernel_served", "initrd_served"])
            addresses.add(agent_result(result, mac)["ip"])
        assert len(addresses) == 2


def test_addresses_mode_on_a_segment_without_dhcp(installer):
    """dhcp=addresses, no site DHCP server: OVMF's PXE and SeaBIOS's iPXE take their address and boot file from us,
    the installer's own DHCP client gets the host's address, and a stranger gets nothing."""
    with Lab(site_dhcp=False) as lab:
        ovmf, bios, stranger = "52:54:00:12:34:41", "52:54:00:12:34:42", "52:54:00:12:34:77"
        hosts = {"ovmf1": {"mac_address": ovmf, "ip": "%s.60" % lab.subnet}, "bios1": bios}
        play, result_file = start_play(lab, installer, hosts, [ovmf, bios], dhcp="addresses",
                                       dhcp_ranges=["%s.100-%s.109" % (lab.subnet, lab.subnet)])
        stranger_vm = VM(lab, "seabios-ipxe", mac=stranger).start()
        vms = {ovmf: VM(lab, "ovmf-pxe", mac=ovmf).start(), bios: VM(lab, "seabios-ipxe", mac=bios).start()}
        result, log = finish_play(lab, play, result_file)
        assert_served(result, ovmf, vms[ovmf], ["lease_offered", "offered", "lease_acked", "ipxe_served", "script_served",
                                                "initrd_served", "phoned_home"])
        assert_served(result, bios, vms[bios], ["lease_offered", "script_offered", "script_served", "phoned_home"])
        assert agent_result(result, ovmf)["ip"] == "%s.60" % lab.subnet
        assert agent_result(result, bios)["ip"] == "%s.100" % lab.subnet
        assert stranger in result["server"]["ignored"]["macs"]
        serial = stranger_vm.serial()
        assert "nixie.metal" not in serial and "script.ipxe" not in serial, serial[-2000:]
        assert "failed=0" in log


def payload(frame):
    """A TCP segment's bytes, however scapy dissected them (an HTTP layer, when one is loaded, takes the Raw's place)."""
    return bytes(frame[TCP].payload) if TCP in frame else b""


def first_request(frames, method, path_end):
    """Index of the first frame that opens an HTTP request ``method`` for a path ending in ``path_end``."""
    pattern = re.compile(rb"^%s /\S*%s(?:\?\S*)? HTTP/" % (method, re.escape(path_end)))
    return next((index for index, frame in enumerate(frames) if pattern.match(payload(frame))), None)


def start_ipv6_router(lab):
    """A router in the site namespace that advertises an IPv6 prefix and gives no address by DHCP of either family.

    iPXE (2019) waits about 16 s for a router advertisement on a segment with none; with one it goes on at once.
    Were this dnsmasq to answer DHCPv4, the addresses mode's own probe would refuse to start.
    """
    log = lab.workdir / "router.log"
    conf = lab.workdir / "router.conf"
    conf.write_text("\n".join(["port=0", "interface=%s" % SITE_VETH, "bind-interfaces", "enable-ra", "dhcp-range=fd77::,ra-only",
                               "log-facility=%s" % log, "user=root", "group=root", "pid-file="]) + "\n", encoding="utf-8")
    router = lab.popen(["dnsmasq", "-k", "--conf-file=%s" % conf], ns=lab.site_ns, stdout=subprocess.DEVNULL,
                       stderr=subprocess.STDOUT)
    wait_for_file_text(log, "router advertisement on", 10, router)
    return router


def test_a_static_network_boots_with_no_dhcp_after_the_kernel_starts(installer):
    """A host whose hosts.json has a ``network``, on a segment with no site DHCP server (dhcp=addresses).

    The segment's only other machine is an IPv6 router (router advertisements, no DHCP). SeaBIOS's iPXE
    takes an address of dhcp_ranges to load the installer (firmware needs one); the lab installer's own
    init does what a NixOS initrd given ``ip=...:none`` does (no DHCP client), and the agent brings up the
    static address, a different one, and phones home from it. The capture keeps only the frames the
    machine sent: DHCP comes before its request for the initrd and never after it.

    The ``vlan`` half of a static network is not booted here: the CI machines' kernel has no 802.1Q
    (see docs/dhcp.md, "Static network per host", for what a VLAN lab needs).
    """
    with Lab(site_dhcp=False) as lab:
        start_ipv6_router(lab)
        mac = "52:54:00:12:34:51"
        static, gateway, nameserver = "%s.50" % lab.subnet, lab.controller_ip, "%s.53" % lab.subnet
        hosts = {"static1": {"mac_address": mac, "network": {"address": static + "/24", "gateway": gateway,
                                                             "nameservers": [nameserver]}}}
        play, result_file = start_play(lab, installer, hosts, [mac], dhcp="addresses",
                                       dhcp_ranges=["%s.100-%s.109" % (lab.subnet, lab.subnet)])
        pcap = lab.workdir / "static.pcap"
        capture = lab.capture(pcap, "ether src %s" % mac).start()
        vm = VM(lab, "seabios-ipxe", mac=mac).start()
        result, log = finish_play(lab, play, result_file)
        agent_line = vm.wait_for(r"nixie-agent: phoned home to ", timeout=10)
        # dumpcap hands over its last block only after a while: stopped at once, the newest frames are lost.
        time.sleep(2)
        capture.stop()
        frames = list(rdpcap(str(pcap)))
        serial = vm.serial()
    assert agent_line
    agent = agent_result(result, mac)
    assert not agent.get("failed"), agent.get("msg")
    assert agent["state"] == "phoned_home" and agent["ip"] == static, agent
    assert "failed=0" in log

    # The firmware's lease (iPXE's) came from the range; the installer asked for none.
    events = agent["events"]
    names = [event["event"] for event in events]
    for name in ("lease_offered", "lease_acked", "script_served", "kernel_served", "initrd_served", "phoned_home"):
        assert name in names, (name, names)
    leased = {event.get("address") for event in events if event["event"] == "lease_acked"}
    assert leased == {"%s.100" % lab.subnet}, events
    after_initrd = names[names.index("initrd_served"):]
    assert not [name for name in after_initrd if name.startswith("lease_")], names

    # On the wire: DHCP only before the installer's initrd was asked for; the phone-home from the static address.
    summaries = [frame.summary() for frame in frames]
    dhcp = [index for index, frame in enumerate(frames) if UDP in frame and {frame[UDP].sport, frame[UDP].dport} & DHCP_PORTS]
    initrd_get = first_request(frames, b"GET", b"/initrd")
    phone_home = first_request(frames, b"POST", b"/phone-home")
    assert dhcp, "the capture holds no DHCP from the firmware: it missed the boot\n%s" % "\n".join(summaries[:40])
    assert initrd_get is not None and phone_home is not None, "\n".join(summaries[-60:])
    assert max(dhcp) < initrd_get < phone_home, [summaries[index] for index in dhcp if index > initrd_get]
    assert frames[initrd_get][IP].src == "%s.100" % lab.subnet
    assert frames[phone_home][IP].src == static
    assert {frame[IP].src for frame in frames[phone_home:] if IP in frame} == {static}

    # The serial console: the init left the network to the agent, which applied the kernel line's static network.
    expected_ip = "ip=%s::%s:255.255.255.0:static1:nixie0:none" % (static, gateway)
    assert "ifname=nixie0:%s %s nameserver=%s" % (mac, expected_ip, nameserver) in serial, serial[-3000:]
    assert "NIXIE-LAB: network static %s dev " % expected_ip[len("ip="):] in serial, serial[-3000:]
    assert "nixie-agent: static network: nixie0 %s/24 via %s, name servers %s (from the kernel command line; no DHCP)" % (
        static, gateway, nameserver) in serial, serial[-3000:]
    assert "NIXIE-LAB: dhcp " not in serial and "NIXIE-LAB: network up" not in serial, serial[-3000:]
