# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pxe_server with dhcp=addresses, on the wire, against the Linux clients an installer runs.

Topology (private namespaces, made and removed by the test; no site DHCP server)::

    netns <id>-m0 .. -m3 (udhcpc, dhcpcd, systemd-networkd)  --veth--  br0 10.77.0.1/24 in netns <id>-lab (pxe_server)

The module runs from ansible-playbook in the lab namespace, as a user's play would
start it; it is stopped with state=stopped, and what it returned (the leases) is
read from the play's result. Each machine namespace has its host's MAC and no address
until its DHCP client gets one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

COLLECTION = Path(os.environ.get("NIXIE_COLLECTION", Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(COLLECTION / "tests" / "lab"))

from nixielab import networkd  # noqa: E402  pylint: disable=wrong-import-position
from nixielab.net import Lab, stop_process  # noqa: E402  pylint: disable=wrong-import-position
from scapy.layers.dhcp import BOOTP, DHCP  # noqa: E402  pylint: disable=wrong-import-position
from scapy.layers.inet import IP  # noqa: E402  pylint: disable=wrong-import-position
from scapy.utils import rdpcap  # noqa: E402  pylint: disable=wrong-import-position

HERE = Path(__file__).resolve().parent
NODE1 = "52:54:00:ad:00:01"   # hosts.json ip 10.77.0.60
NODE2 = "52:54:00:ad:00:02"   # no ip: the first address of the range
NODE3 = "52:54:00:ad:00:03"   # hosts.json ip 10.77.0.70: systemd-networkd
STRANGER = "52:54:00:ad:00:ff"
HOSTS = {"node1": {"mac_address": NODE1, "ip": "10.77.0.60"}, "node2": {"mac_address": NODE2},
         "node3": {"mac_address": NODE3, "ip": "10.77.0.70"}}
RANGE = "10.77.0.100-10.77.0.109"
UDHCPC_SCRIPT = "#!/bin/sh\n[ \"$1\" = bound ] || [ \"$1\" = renew ] || exit 0\necho \"$1 $ip $mask $router $dns\" >> \"$0.log\"\n"


def start(lab, hosts=None, **options):
    """ansible-playbook serve.yml in the lab namespace; returns (process, result file) once /health answers,
    or once the play ended (a refusal)."""
    work = lab.workdir
    for name in ("kernel", "initrd"):
        (work / name).write_bytes(b"netboot_addresses stand-in %s\n" % name.encode())
    (work / "hosts.json").write_text(json.dumps(HOSTS if hosts is None else hosts), encoding="utf-8")
    variables = {"hosts_file": str(work / "hosts.json"), "kernel": str(work / "kernel"), "initrd": str(work / "initrd"),
                 "interface": lab.bridge, "run_dir": str(work / "run"), "result_file": str(work / "result.json"),
                 "ansible_python_interpreter": sys.executable, "dhcp_ranges": [RANGE], "dhcp_routers": ["10.77.0.1"]}
    variables.update(options)
    (work / "vars.json").write_text(json.dumps(variables), encoding="utf-8")
    log = open(work / "play.log", "wb")  # pylint: disable=consider-using-with
    play = lab.popen(["ansible-playbook", "-i", "localhost,", "-c", "local", "-e", "@%s" % (work / "vars.json"),
                      str(HERE / "serve.yml")], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if play.poll() is not None:
            return play, work / "result.json"
        if lab.run(["curl", "-sf", "-o", "/dev/null", "http://10.77.0.1:8080/api/v1/health"], check=False).returncode == 0:
            return play, work / "result.json"
        time.sleep(0.3)
    pytest.fail("the server did not come up:\n" + (work / "play.log").read_text(errors="replace")[-3000:])


def stop(lab, play, result_file):
    lab.run(["ansible", "localhost", "-c", "local", "-i", "localhost,", "-e", "ansible_python_interpreter=%s" % sys.executable,
             "-m", "nixie.metal.pxe_server",
             "-a", "state=stopped run_dir=%s" % (lab.workdir / "run")])
    play.wait(timeout=60)
    return json.loads(result_file.read_text(encoding="utf-8"))


def machine(lab, mac):
    """A machine namespace with ``mac`` and, like a machine that just booted, no address."""
    ns = lab.add_machine(mac, "10.77.0.250")
    lab.run(["ip", "addr", "flush", "dev", "eth0"], ns=ns)
    return ns


def udhcpc(lab, ns, *extra, check=True):
    script = lab.workdir / ("udhcpc-%s.sh" % ns)
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    done = lab.run(["busybox", "udhcpc", "-f", "-q", "-n", "-t", "3", "-T", "1", "-i", "eth0", "-s", str(script), *extra],
                   ns=ns, check=check)
    log = Path(str(script) + ".log")
    return done, log.read_text().split() if log.exists() else []


def dhcpcd(lab, ns):
    """dhcpcd in a private mount namespace (its lease database and control socket), one lease, then exit."""
    state, run = lab.workdir / ("dhcpcd-%s" % ns), lab.workdir / ("dhcpcd-run-%s" % ns)
    state.mkdir()
    run.mkdir()
    conf = lab.workdir / "dhcpcd.conf"
    conf.write_text("option domain_name_servers, routers, subnet_mask\n")
    steps = ("mount --bind %s /var/lib/dhcpcd && mount --bind %s /run && dhcpcd -4 -1 -B --noarp -t 15 -f %s -c /bin/true eth0"
             % (state, run, conf))
    lab.run(["unshare", "-m", "sh", "-c", steps], ns=ns)
    return lab.run(["ip", "-4", "-j", "addr", "show", "dev", "eth0"], ns=ns).stdout


def networkd_twice(lab, ns, address):
    """systemd-networkd as the installer, then as the installed system (another machine id, so another
    DUID client identifier): each time until eth0 holds ``address``, then stopped, which sends a RELEASE."""
    for name, machine_id in (("installer", networkd.INSTALLER_MACHINE_ID), ("installed", networkd.INSTALLED_MACHINE_ID)):
        log = lab.workdir / ("networkd-%s.log" % name)
        with open(log, "wb") as stderr:
            client = lab.popen(networkd.command(lab.workdir / ("networkd-" + name), machine_id), ns=ns,
                               stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 20
        while "%s/24" % address not in lab.run(["ip", "-4", "addr", "show", "dev", "eth0"], ns=ns).stdout:
            assert client.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
        stop_process(client)
        assert client.returncode == 0, log.read_text(errors="replace")[-3000:]
        # networkd leaves the address on eth0 when it stops; the installed system starts without it.
        lab.run(["ip", "addr", "flush", "dev", "eth0"], ns=ns)


def test_the_installers_clients_get_their_hosts_addresses_and_a_stranger_nothing():
    with Lab(site_dhcp=False) as lab:
        play, result_file = start(lab)
        assert play.poll() is None, (lab.workdir / "play.log").read_text(errors="replace")[-3000:]
        capture = lab.capture(lab.workdir / "dhcp.pcap", "udp port 67 or udp port 68").start()
        node1, node2, node3, stranger = machine(lab, NODE1), machine(lab, NODE2), machine(lab, NODE3), machine(lab, STRANGER)
        done, bound = udhcpc(lab, node1)
        assert bound[:3] == ["bound", "10.77.0.60", "24"] and bound[3] == "10.77.0.1", (done.stderr, bound)
        addresses = json.loads(dhcpcd(lab, node2))
        assert addresses[0]["addr_info"][0]["local"] == "10.77.0.100"
        networkd_twice(lab, node3, "10.77.0.70")
        refused, nothing = udhcpc(lab, stranger, check=False)
        assert refused.returncode != 0 and nothing == []
        time.sleep(0.3)
        capture.stop()
        frames = [frame for frame in rdpcap(str(lab.workdir / "dhcp.pcap")) if BOOTP in frame]
        replies = [frame for frame in frames if frame[BOOTP].op == 2]
        result = stop(lab, play, result_file)
    assert not result.get("failed"), result.get("msg")
    leases = {row["mac"]: row for row in result["leases"]}
    assert (leases[NODE1]["address"], leases[NODE1]["state"]) == ("10.77.0.60", "lease_acked")
    assert (leases[NODE2]["address"], leases[NODE2]["state"]) == ("10.77.0.100", "lease_acked")
    # networkd: one lease for both of its DUID client identifiers (RFC 4361: type 255, IAID, DUID), given back twice.
    assert (leases[NODE3]["address"], leases[NODE3]["state"]) == ("10.77.0.70", "lease_released")
    node3_mac = bytes.fromhex(NODE3.replace(":", ""))
    client_ids = {dict(o for o in frame[DHCP].options if isinstance(o, tuple)).get("client_id")
                  for frame in frames if frame[BOOTP].op == 1 and frame[BOOTP].chaddr[:6] == node3_mac}
    assert len(client_ids) == 2 and all(cid and cid[0] == 0xFF for cid in client_ids), client_ids
    timeline = [event["event"] for host in result["hosts"] if host["mac"] == NODE3 for event in host["events"]]
    assert timeline == ["lease_offered", "lease_acked", "lease_released"] * 2, timeline
    assert result["server"]["dhcp"] == "addresses"
    stranger_mac = bytes.fromhex(STRANGER.replace(":", ""))
    assert replies, "no DHCP answer was captured at all"
    assert not [frame for frame in replies if frame[BOOTP].chaddr[:6] == stranger_mac], "the stranger was answered"
    assert {frame[IP].src for frame in replies} == {"10.77.0.1"}
    asked = [event["event"] for host in result["hosts"] for event in host["events"]]
    assert asked.count("lease_acked") >= 2
    assert STRANGER in result["ignored"]["macs"]


def test_a_renewal_keeps_the_address_and_a_release_gives_it_back():
    with Lab(site_dhcp=False) as lab:
        play, result_file = start(lab)
        node1 = machine(lab, NODE1)
        script = lab.workdir / "renew.sh"
        script.write_text(UDHCPC_SCRIPT.replace('exit 0\n', 'exit 0\nip addr flush dev $interface; ip addr add $ip/$mask dev $interface\n'))
        script.chmod(0o755)
        client = lab.popen(["busybox", "udhcpc", "-f", "-R", "-i", "eth0", "-s", str(script)], ns=node1)
        deadline = time.monotonic() + 20
        while "10.77.0.60/" not in lab.run(["ip", "-4", "addr", "show", "dev", "eth0"], ns=node1).stdout:
            assert time.monotonic() < deadline, "udhcpc got no lease"
            time.sleep(0.2)
        client.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while Path(str(script) + ".log").read_text().split().count("renew") < 1:
            assert time.monotonic() < deadline, "the renewal was not answered"
            time.sleep(0.2)
        client.terminate()   # -R: RELEASE on the way out
        client.wait(timeout=10)
        time.sleep(0.5)
        result = stop(lab, play, result_file)
    events = [(event["event"], event.get("detail")) for host in result["hosts"] for event in host["events"]]
    assert ("lease_acked", "RENEWING") in events, events
    assert {row["mac"]: row["state"] for row in result["leases"]}[NODE1] == "lease_released"


def test_beside_another_dhcp_server_the_mode_is_refused_and_nothing_is_bound():
    with Lab() as lab:  # the lab's site dnsmasq gives addresses on the segment
        play, result_file = start(lab)
        play.wait(timeout=60)
        result = json.loads(result_file.read_text(encoding="utf-8"))
        listening = lab.run(["ss", "-Hlun", "sport = :67"]).stdout
    assert result["failed"]
    assert "another DHCP server gives addresses on %s (10.77.0.2" % lab.bridge in result["msg"]
    assert "dhcp_probe" in result["msg"]
    assert listening.strip() == ""


def test_bad_input_is_named_and_nothing_is_bound():
    """Each refusal of the plan has its unit test (test_pxe_dhcp.py); here one goes through the module."""
    hosts = {"node1": {"mac_address": NODE1, "ip": "10.77.0.60"}, "node2": {"mac_address": NODE2, "ip": "10.77.0.60"}}
    words = "hosts node1 and node2: both have ip 10.77.0.60"
    with Lab(site_dhcp=False) as lab:
        play, result_file = start(lab, hosts)
        play.wait(timeout=60)
        result = json.loads(result_file.read_text(encoding="utf-8"))
        listening = lab.run(["ss", "-Hlun", "sport = :67"]).stdout
        left = list((lab.workdir / "run").glob("*")) if (lab.workdir / "run").exists() else []
    assert result["failed"] and words in result["msg"], result.get("msg")
    assert listening.strip() == "" and left == []
