# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host's static network on the wire: pxe_server's kernel command line, applied by the real agent, no DHCP.

Topology (private namespaces, made and removed by the test; no DHCP server that gives addresses)::

    netns <id>-m* (nixie-agent)  --veth vm*--  br0 10.77.0.1/24 in netns <id>-lab (pxe_server from ansible-playbook)

Each machine plays its boot as it happens: with a passing address (the one firmware and iPXE
had) it fetches its iPXE script from the server, exactly as iPXE does; then, as the installer's
kernel, it starts with no address at all, its NIC under another name than the one ifname= asks,
and runs nixie-agent with the script's kernel line as its /proc/cmdline. A capture on the
bridge, whose frames are picked by the machine's MAC, shows what it sent from then on (not on
the machine's own port: libpcap stops capturing when the agent takes the NIC down to rename it).

The VLAN case needs a kernel with 802.1Q support (CONFIG_VLAN_8021Q). Where the kernel has it,
the server serves a tagged interface (br0.20) and the phone-home must arrive tagged; where it
has not (the CI machines' kernel), the agent must refuse clearly and leave the NIC as it found it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

COLLECTION = Path(os.environ.get("NIXIE_COLLECTION", Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(COLLECTION / "tests" / "lab"))

from nixielab.net import Lab  # noqa: E402  pylint: disable=wrong-import-position
from scapy.layers.inet import IP, TCP, UDP  # noqa: E402  pylint: disable=wrong-import-position
from scapy.layers.l2 import Dot1Q, Ether  # noqa: E402  pylint: disable=wrong-import-position
from scapy.utils import rdpcap  # noqa: E402  pylint: disable=wrong-import-position

HERE = Path(__file__).resolve().parent
AGENT = COLLECTION / "nix" / "agent" / "nixie-agent"
BUSYBOX = shutil.which("busybox")
NODE1 = "52:54:00:5a:00:01"   # busybox sh, ip and wget, as in a busybox initramfs
NODE2 = "52:54:00:5a:00:02"   # dash, iproute2 and curl, as on NixOS
NODE3 = "52:54:00:5a:00:03"   # on VLAN 20
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAwq+EfnD2DZmIrGP9ja8hP2GBrvXDwB95xkcbYRkgxX root@installer"
STATIC = {
    "node1": {"mac_address": NODE1, "network": {"address": "10.77.0.50/24", "gateway": "10.77.0.1", "nameservers": ["10.77.0.53"]}},
    "node2": {"mac_address": NODE2, "network": {"address": "10.77.0.51/24", "gateway": "10.77.0.1"}},
}
TAGGED = {"node3": {"mac_address": NODE3, "network": {"address": "10.78.0.50/24", "gateway": "10.78.0.1", "vlan": 20}}}


def start(lab, hosts, interface, server_ip, refused=False):
    """ansible-playbook serve.yml in the lab namespace; returns (process, result file) once /health answers
    (``refused``: once the play has ended, as it must)."""
    work = lab.workdir
    for name in ("kernel", "initrd"):
        (work / name).write_bytes(b"netboot_static stand-in %s\n" % name.encode())
    (work / "hosts.json").write_text(json.dumps(hosts), encoding="utf-8")
    variables = {"hosts_file": str(work / "hosts.json"), "kernel": str(work / "kernel"), "initrd": str(work / "initrd"),
                 "interface": interface, "run_dir": str(work / "run"), "result_file": str(work / "result.json"),
                 "ansible_python_interpreter": sys.executable}
    (work / "vars.json").write_text(json.dumps(variables), encoding="utf-8")
    log = open(work / "play.log", "wb")  # pylint: disable=consider-using-with
    play = lab.popen(["ansible-playbook", "-i", "localhost,", "-c", "local", "-e", "@%s" % (work / "vars.json"),
                      str(HERE / "serve.yml")], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if play.poll() is not None and refused:
            return play, work / "result.json"
        if play.poll() is not None:
            pytest.fail("the server ended before serving:\n" + (work / "play.log").read_text(errors="replace")[-3000:])
        health = ["curl", "-sf", "-o", "/dev/null", "http://%s:8080/api/v1/health" % server_ip]
        if lab.run(health, check=False).returncode == 0:
            return play, work / "result.json"
        time.sleep(0.3)
    pytest.fail("the server did not come up:\n" + (work / "play.log").read_text(errors="replace")[-3000:])


def stop(lab, play, result_file):
    lab.run(["ansible", "localhost", "-c", "local", "-i", "localhost,", "-e", "ansible_python_interpreter=%s" % sys.executable,
             "-m", "nixie.metal.pxe_server", "-a", "state=stopped run_dir=%s" % (lab.workdir / "run")])
    play.wait(timeout=60)
    return json.loads(result_file.read_text(encoding="utf-8"))


def kernel_line(script):
    """The arguments iPXE hands the kernel: the kernel line of the script, after its URL, up to ``||``."""
    (line,) = [line for line in script.splitlines() if line.startswith("kernel ")]
    return line.split(" || ")[0].split()[2:]


def boot(lab, mac, fetch_link, fetch_address, server_ip):
    """A machine that fetched its script as iPXE does, then became an installer with no address and its
    NIC named enp1s0. Returns (namespace, the kernel command line file)."""
    ns = lab.add_machine(mac, "10.77.0.250")
    lab.run(["ip", "addr", "flush", "dev", "eth0"], ns=ns)
    if fetch_link != "eth0":
        lab.run(["ip", "link", "add", "link", "eth0", "name", fetch_link, "type", "vlan", "id", fetch_link.rsplit(".", 1)[1]], ns=ns)
        lab.run(["ip", "link", "set", fetch_link, "up"], ns=ns)
    lab.run(["ip", "addr", "add", fetch_address, "dev", fetch_link], ns=ns)
    script = lab.run(["curl", "-sSf", "http://%s:8080/boot/%s/script.ipxe" % (server_ip, mac)], ns=ns).stdout
    # The installer's kernel starts afresh: no address, no VLAN, the NIC under the kernel's name.
    if fetch_link != "eth0":
        lab.run(["ip", "link", "del", fetch_link], ns=ns)
    lab.run(["ip", "addr", "flush", "dev", "eth0"], ns=ns)
    lab.run(["ip", "link", "set", "eth0", "down"], ns=ns)
    lab.run(["ip", "link", "set", "eth0", "name", "enp1s0"], ns=ns)
    cmdline = lab.workdir / ("cmdline-%s" % ns)
    cmdline.write_text("BOOT_IMAGE=/bzImage initrd=initrd %s\n" % " ".join(kernel_line(script)[1:]), encoding="utf-8")
    return ns, cmdline


@pytest.fixture(scope="module")
def busybox_path(tmp_path_factory):
    """A directory with every busybox applet and nothing else."""
    bindir = tmp_path_factory.mktemp("busybox-bin")
    for applet in subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout.split():
        os.symlink(BUSYBOX, str(bindir / applet))
    return str(bindir)


def run_agent(lab, ns, cmdline, shell, path, timeout=60):
    """nixie-agent in the machine's namespace with only ``path`` to find programs; (returncode, out, err, resolv.conf)."""
    home = lab.workdir / ("installer-%s" % ns)
    (home / "ssh").mkdir(parents=True)
    (home / "ssh" / "ssh_host_ed25519_key.pub").write_text(HOST_KEY + "\n")
    resolv = home / "resolv.conf"
    env = ["PATH=%s" % path, "NIXIE_CMDLINE=%s" % cmdline, "NIXIE_SSH_DIR=%s" % (home / "ssh"), "NIXIE_RESOLV_CONF=%s" % resolv,
           "NIXIE_NET_WAIT=5", "NIXIE_MAX_DELAY=2", "NIXIE_MAX_TRIES=5", "NIXIE_HTTP_TIMEOUT=5", "TMPDIR=%s" % home]
    done = lab.run(["env", "-i"] + env + list(shell) + [str(AGENT)], ns=ns, check=False, timeout=timeout)
    return done.returncode, done.stdout, done.stderr, resolv.read_text() if resolv.exists() else None


def stop_capture(capture):
    """dumpcap hands over its ring's last block only after a while: stopped at once, the newest frames are lost."""
    time.sleep(2)
    capture.stop()


def sent_by(pcap, mac):
    return [frame for frame in rdpcap(str(pcap)) if Ether in frame and frame[Ether].src == mac]


def assert_no_dhcp(frames):
    dhcp = [frame.summary() for frame in frames if UDP in frame and {frame[UDP].sport, frame[UDP].dport} & {67, 68}]
    assert dhcp == [], "the installer side sent DHCP: %s" % dhcp


def syns_to_the_api(frames, server_ip):
    return [frame for frame in frames if TCP in frame and frame[TCP].dport == 8080 and frame[TCP].flags.S and frame[IP].dst == server_ip]


def link_names(lab, ns):
    return [entry["ifname"] for entry in json.loads(lab.run(["ip", "-j", "link", "show"], ns=ns).stdout)]


def ipv4_of(lab, ns, link):
    shown = json.loads(lab.run(["ip", "-j", "-4", "addr", "show", "dev", link], ns=ns).stdout)
    return ["%s/%s" % (a["local"], a["prefixlen"]) for entry in shown for a in entry["addr_info"]]


def test_the_installer_comes_up_with_its_static_address_and_phones_home_over_it(busybox_path):
    with Lab(site_dhcp=False) as lab:
        play, result_file = start(lab, STATIC, lab.bridge, "10.77.0.1")
        outcomes = {}
        for mac, shell, path in ((NODE1, [BUSYBOX, "sh"], busybox_path), (NODE2, ["dash"], "/usr/sbin:/usr/bin:/sbin:/bin")):
            ns, cmdline = boot(lab, mac, "eth0", "10.77.0.2%s/24" % mac[-1], "10.77.0.1")
            pcap = lab.workdir / ("%s.pcap" % ns)
            capture = lab.capture(pcap).start()
            rc, out, err, resolv = run_agent(lab, ns, cmdline, shell, path)
            stop_capture(capture)
            assert rc == 0, err
            assert "phoned home to http://10.77.0.1:8080/api/v1/phone-home" in out
            outcomes[mac] = (ns, cmdline.read_text(), sent_by(pcap, mac), err, resolv)
        result = stop(lab, play, result_file)
        names = {mac: (link_names(lab, ns), ipv4_of(lab, ns, "nixie0")) for mac, (ns, *_rest) in outcomes.items()}
        routes = lab.run(["ip", "-4", "route", "show", "default"], ns=outcomes[NODE1][0]).stdout
    assert not result.get("failed"), result.get("msg")
    hosts = {host["mac"]: host for host in result["hosts"]}
    for mac, address in ((NODE1, "10.77.0.50"), (NODE2, "10.77.0.51")):
        ns, cmdline, frames, err, resolv = outcomes[mac]
        # the server put the network on the kernel line; the agent named the NIC by MAC and used it
        assert "ifname=nixie0:%s ip=%s::10.77.0.1:255.255.255.0:%s:nixie0:none" % (mac, address, hosts[mac]["name"]) in cmdline
        assert "static network: nixie0 %s/24 via 10.77.0.1" % address in err
        assert "enp1s0" not in names[mac][0] and "nixie0" in names[mac][0]
        assert names[mac][1] == ["%s/24" % address]
        # the phone-home is the agent's last word: with it in the capture, all that came before is there too
        syns = syns_to_the_api(frames, "10.77.0.1")
        assert syns and {frame[IP].src for frame in syns} == {address}, [f.summary() for f in frames]
        assert_no_dhcp(frames)
        assert {frame[IP].src for frame in frames if IP in frame} == {address}
        host = hosts[mac]
        assert host["state"] == "phoned_home" and host["address"] == address
        # the server's own count agrees: it heard nothing of the machine but its script and its phone-home
        assert [event["event"] for event in host["events"]] == ["script_served", "phoned_home"]
        assert [(a["ifname"], a["address"], a["prefix"], a["mac"]) for a in host["addresses"] if ":" not in a["address"]] == [
            ("nixie0", address, 24, mac)]
    assert outcomes[NODE1][4] == "nameserver 10.77.0.53\n"
    assert outcomes[NODE2][4] is None, "a network without nameservers must leave resolv.conf alone"
    assert routes.split()[:3] == ["default", "via", "10.77.0.1"]


def kernel_makes_vlans():
    """Whether this kernel makes 802.1Q interfaces (CONFIG_VLAN_8021Q), tried in a namespace of its own."""
    ns = "nxlvlanprobe%s" % secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1"], check=True)
        made = subprocess.run(["ip", "-n", ns, "link", "add", "link", "p0", "name", "p0.20", "type", "vlan", "id", "20"],
                              capture_output=True, check=False)
        return made.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_a_tagged_network_phones_home_tagged_or_is_refused_whole(busybox_path):
    """With 802.1Q in the kernel: the phone-home leaves the machine tagged with VLAN 20, from the static address,
    to a server that serves only the tagged interface. Without it: a clear refusal, and the NIC as it was."""
    with Lab(site_dhcp=False) as lab:
        if kernel_makes_vlans():
            lab.run(["ip", "link", "add", "link", lab.bridge, "name", "br0.20", "type", "vlan", "id", "20"])
            lab.run(["ip", "addr", "add", "10.78.0.1/24", "dev", "br0.20"])
            lab.run(["ip", "link", "set", "br0.20", "up"])
            play, result_file = start(lab, TAGGED, "br0.20", "10.78.0.1")
            ns, cmdline = boot(lab, NODE3, "eth0.20", "10.78.0.203/24", "10.78.0.1")
        else:
            play, result_file = start(lab, TAGGED, lab.bridge, "10.77.0.1")
            ns, cmdline = boot(lab, NODE3, "eth0", "10.77.0.203/24", "10.77.0.1")
        assert "ifname=nixie0:%s vlan=nixie0.20:nixie0 ip=10.78.0.50::10.78.0.1:255.255.255.0:node3:nixie0.20:none" % NODE3 \
            in cmdline.read_text()
        pcap = lab.workdir / "tagged.pcap"
        capture = lab.capture(pcap).start()
        rc, out, err, _resolv = run_agent(lab, ns, cmdline, [BUSYBOX, "sh"], busybox_path, timeout=60)
        stop_capture(capture)
        frames = sent_by(pcap, NODE3)
        links, addresses = link_names(lab, ns), {link: ipv4_of(lab, ns, link) for link in link_names(lab, ns)}
        result = stop(lab, play, result_file)
    assert_no_dhcp(frames)
    (host,) = result["hosts"]
    if "nixie0.20" in links:
        assert rc == 0 and "phoned home" in out, err
        assert addresses["nixie0.20"] == ["10.78.0.50/24"] and addresses["nixie0"] == []
        tagged = [frame for frame in syns_to_the_api(frames, "10.78.0.1") if Dot1Q in frame and frame[Dot1Q].vlan == 20]
        assert tagged and {frame[IP].src for frame in tagged} == {"10.78.0.50"}
        assert host["state"] == "phoned_home" and host["address"] == "10.78.0.50"
    else:
        assert rc == 2, (out, err)
        assert "could not create the VLAN interface nixie0.20 (ID 20 on nixie0)" in err
        assert "the kernel needs 802.1Q VLAN support (the 8021q module)" in err
        # nothing half-done: the NIC has its kernel name back and no address; nothing left the machine over IPv4
        assert "enp1s0" in links and "nixie0" not in links and addresses["enp1s0"] == []
        assert [frame.summary() for frame in frames if IP in frame] == []
        assert host["state"] != "phoned_home"


def test_a_bad_network_fails_the_run_before_anything_is_bound():
    hosts = {"node1": {"mac_address": NODE1, "network": {"address": "10.77.0.50/24", "gateway": "10.78.0.1"}},
             "node2": {"mac_address": NODE2, "network": {"address": "10.77.0.51", "vlan": 20}}}
    with Lab(site_dhcp=False) as lab:
        play, result_file = start(lab, hosts, lab.bridge, "10.77.0.1", refused=True)
        assert play.wait(timeout=60) == 0  # the play goes on (ignore_errors) to write what the module said
        listening = lab.run(["ss", "-Hlnut"]).stdout
        result = json.loads(result_file.read_text(encoding="utf-8"))
    assert result["failed"] is True
    where = lab.workdir / "hosts.json"
    assert result["msg"].splitlines() == [
        "%s: host 'node1', field 'network.gateway': 10.78.0.1 is outside 10.77.0.0/24, the subnet of the address; a gateway "
        "must be reachable on the link: fix the gateway or the address's prefix" % where,
        "%s: host 'node2', field 'network.address': '10.77.0.51' has no prefix length; write the address with its prefix, "
        "such as 192.0.2.10/24" % where,
    ]
    assert listening.strip() == "", "something was bound: %s" % listening


@pytest.mark.parametrize("arguments, complaint", [
    ("ifname=nixie0:52:54:00:5a:00:ee ip=10.77.0.50:::255.255.255.0::nixie0:none",
     "ifname=nixie0:52:54:00:5a:00:ee: no network interface has the MAC 52:54:00:5a:00:ee (after 5s)"),
    ("ifname=nixie0:%s ip=10.77.0.50:::255.255.0.255::nixie0:none" % NODE1, "255.255.0.255 is not a netmask"),
    ("ifname=nixie0:%s vlan=nixie0.5000:nixie0 ip=10.77.0.50:::24::nixie0.5000:none" % NODE1,
     "vlan=nixie0.5000:nixie0: the VLAN's name must end in .<id> or be vlan<id>, with an ID from 1 to 4094"),
    ("ifname=nixie0:%s ip=10.77.0.50:::255.255.255.0::nixie1:none" % NODE1, "there is no interface nixie1"),
])
def test_a_command_line_the_agent_cannot_apply_is_refused_and_undone(busybox_path, arguments, complaint):
    """No server is needed: the agent stops before it would phone home, says why, and leaves the NIC as it found it."""
    with Lab(site_dhcp=False) as lab:
        ns = lab.add_machine(NODE1, "10.77.0.250")
        lab.run(["ip", "addr", "flush", "dev", "eth0"], ns=ns)
        lab.run(["ip", "link", "set", "eth0", "name", "enp1s0"], ns=ns)
        cmdline = lab.workdir / "cmdline"
        cmdline.write_text("nixie.api=http://10.77.0.1:8080/api/v1 nixie.token=%s nixie.mac=%s %s\n" % ("t" * 32, NODE1, arguments))
        rc, out, err, resolv = run_agent(lab, ns, cmdline, [BUSYBOX, "sh"], busybox_path, timeout=30)
        links = link_names(lab, ns)
        addresses = ipv4_of(lab, ns, "enp1s0") if "enp1s0" in links else None
    assert rc == 2 and out == "", (out, err)
    assert "nixie-agent: static network (kernel command line ip=" in err and complaint in err, err
    assert "enp1s0" in links and "nixie0" not in links and addresses == [] and resolv is None
