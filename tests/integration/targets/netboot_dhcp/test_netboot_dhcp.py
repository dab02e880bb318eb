# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The proxyDHCP server on the wire, against scapy-built clients of every class.

Topology (all private namespaces, made and removed by the test)::

    netns <id>-cli                netns <id>-lab                          netns <id>-site
    eth0 10.77.0.50-53 --veth-- cli0 -- br0 10.77.0.1 (server) -- site0 --veth-- eth0 10.77.0.2
    rawclient.py (AF_PACKET)            serve.py: _pxe_server.plan/run           dnsmasq: addresses only

scapy builds whole Ethernet frames (each client with its own MAC, as in
hosts.json); rawclient.py sends them on the client namespace's veth and
returns every BOOTP reply (from port 67 or 4011) that comes back, from our
server and from the site's dnsmasq alike. Real clients then fetch what was
offered: tftp-hpa and curl over TFTP, curl over HTTP, and the real agent
script phones home; after that the host gets no answer any more (one-shot).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scapy.layers.dhcp import BOOTP, DHCP, DHCPRevOptions
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

COLLECTION = Path(os.environ.get("NIXIE_COLLECTION", Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(COLLECTION / "tests" / "lab"))

from nixielab.net import Lab  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.policy import OFFER_REPEATS  # noqa: E402  pylint: disable=wrong-import-position

HERE = Path(__file__).resolve().parent
IPXE_DIR = Path("/usr/lib/ipxe")
AGENT = COLLECTION / "nix" / "agent" / "nixie-agent"
SERVER = "10.77.0.1"
SITE = "10.77.0.2"
HTTP_BASE = "http://%s:8080" % SERVER
CLIENT_IPS = ("10.77.0.50", "10.77.0.51", "10.77.0.52", "10.77.0.53")
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
GUID = b"\x00" + bytes(range(1, 17))
LISTEN = 1.5  # seconds to collect answers after a batch of requests
DISCOVER_LISTEN = max(OFFER_REPEATS) + 1.0  # long enough for every copy of an offer

# name -> (mac, arch in hosts.json); the client classes below use them.
HOSTS = {
    "bios": ("52:54:00:aa:00:01", "x86_64-linux"),
    "ia32": ("52:54:00:aa:00:02", "x86_64-linux"),
    "efi7": ("52:54:00:aa:00:03", "x86_64-linux"),
    "efi9": ("52:54:00:aa:00:04", "x86_64-linux"),
    "arm64": ("52:54:00:aa:00:05", "aarch64-linux"),
    "http16": ("52:54:00:aa:00:06", "x86_64-linux"),
    "http19": ("52:54:00:aa:00:07", "aarch64-linux"),
    "ipxe": ("52:54:00:aa:00:08", "x86_64-linux"),
    "ipxebios": ("52:54:00:aa:00:09", "x86_64-linux"),
    "no97": ("52:54:00:aa:00:0a", "x86_64-linux"),
    "empty97": ("52:54:00:aa:00:0b", "x86_64-linux"),
    "mismatch": ("52:54:00:aa:00:0c", "x86_64-linux"),
    "ovmf4011": ("52:54:00:aa:00:0d", "x86_64-linux"),
    "ipxe4011": ("52:54:00:aa:00:0e", "x86_64-linux"),
}
UNKNOWN_MAC = "52:54:00:aa:00:ff"


def mac_of(name):
    return HOSTS[name][0]


# ------------------------------------------------------------------ packets (scapy)


def dhcp_options(arch=None, vendor=None, guid=GUID, user_class=None, extra=()):
    options = []
    if arch is not None:
        options.append((93, arch.to_bytes(2, "big")))
    options.append((94, b"\x01\x03\x00"))
    if vendor is not None:
        options.append(("vendor_class_id", vendor))
    if guid is not None:
        options.append((97, guid))
    if user_class is not None:
        options.append((77, user_class))
    options.extend(extra)
    return options


def pxe_vendor(arch, prefix=b"PXEClient"):
    return prefix + b":Arch:%05d:UNDI:003000" % arch


def discover_frame(mac, xid, options):
    """A DHCPDISCOVER broadcast from port 68 to 67, as firmware sends it (no address yet)."""
    chaddr = bytes.fromhex(mac.replace(":", ""))
    return (Ether(src=mac, dst=BROADCAST_MAC) / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
            / BOOTP(op=1, xid=xid, flags=0x8000, chaddr=chaddr)
            / DHCP(options=[("message-type", "discover"), (57, b"\x05\xc0"), *options, "end"]))


def request_frame(mac, xid, options, *, server_mac, src, sport, dport=4011, message="request", requested=None):
    """A DHCPREQUEST unicast to the proxy's port 4011 from ``src``:``sport`` (ciaddr = src)."""
    chaddr = bytes.fromhex(mac.replace(":", ""))
    extra = [("requested_addr", requested)] if requested else []
    return (Ether(src=mac, dst=server_mac) / IP(src=src, dst=SERVER) / UDP(sport=sport, dport=dport)
            / BOOTP(op=1, xid=xid, ciaddr=src, chaddr=chaddr)
            / DHCP(options=[("message-type", message), *extra, *options, "end"]))


def select_request_frame(mac, xid, options, requested):
    """The broadcast DHCPREQUEST that takes the site's offered address (option 50), to another server."""
    chaddr = bytes.fromhex(mac.replace(":", ""))
    return (Ether(src=mac, dst=BROADCAST_MAC) / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
            / BOOTP(op=1, xid=xid, flags=0x8000, chaddr=chaddr)
            / DHCP(options=[("message-type", "request"), ("requested_addr", requested), ("server_id", "10.77.0.9"),
                            *options, "end"]))


def options_by_code(bootp):
    """{code: value} of a reply's DHCP options as scapy decoded them."""
    found = {}
    for option in bootp[DHCP].options:
        if not isinstance(option, tuple):
            continue
        name, value = option[0], option[1] if len(option) == 2 else option[1:]
        code = name if isinstance(name, int) else DHCPRevOptions[name][0]
        found[code] = value
    return found


class Answer:
    """One BOOTP reply seen on the wire."""

    def __init__(self, frame, received_at):
        self.frame = frame
        self.received_at = received_at
        self.ip = frame[IP]
        self.udp = frame[UDP]
        # scapy binds BOOTP to ports 67/68 only: a 4011 answer is dissected by hand.
        self.bootp = BOOTP(bytes(self.udp.payload))
        self.options = options_by_code(self.bootp)

    @property
    def source(self):
        return (self.ip.src, self.udp.sport)

    @property
    def destination(self):
        return (self.ip.dst, self.udp.dport)

    @property
    def file(self):
        return self.bootp.file.rstrip(b"\0").decode()

    @property
    def mac(self):
        return ":".join("%02x" % b for b in self.bootp.chaddr[:6])


def answers(frames, xid):
    """(ours, site's) replies with this xid."""
    found = [Answer(Ether(bytes.fromhex(item["hex"])), item["time"]) for item in frames]
    found = [answer for answer in found if answer.bootp.xid == xid and answer.bootp.op == 2 and answer.bootp.haslayer(DHCP)]
    ours = [answer for answer in found if answer.ip.src == SERVER]
    site = [answer for answer in found if answer.ip.src == SITE]
    return ours, site


# ------------------------------------------------------------------ the lab


class ClientNamespace:
    """A namespace joined to the lab bridge by a veth, holding the clients; removed on close()."""

    def __init__(self, lab):
        self.lab = lab
        self.ns = "%s-cli" % lab.id
        self.procs = []

    def ip(self, *args):
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def __enter__(self):
        self.ip("netns", "add", self.ns)
        try:
            self.ip("-n", self.ns, "link", "set", "lo", "up")
            self.ip("-n", self.lab.lab_ns, "link", "add", "cli0", "type", "veth", "peer", "name", "eth0", "netns", self.ns)
            self.ip("-n", self.lab.lab_ns, "link", "set", "cli0", "master", self.lab.bridge, "up")
            # The kernel's own traffic (curl, tftp, the agent) is the "ipxe" host's: the server serves a host's script
            # and phone-home only to its MAC (docs/security.md). Raw frames carry each client's own MAC anyway.
            self.ip("-n", self.ns, "link", "set", "eth0", "address", HOSTS["ipxe"][0])
            for address in CLIENT_IPS:
                self.ip("-n", self.ns, "addr", "add", "%s/24" % address, "dev", "eth0")
            self.ip("-n", self.ns, "link", "set", "eth0", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self, cmd, **kwargs):
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("timeout", 30)
        check = kwargs.pop("check", False)
        return subprocess.run(["ip", "netns", "exec", self.ns, *cmd], check=check, **kwargs)

    def popen(self, cmd, **kwargs):
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *cmd], **kwargs)  # pylint: disable=consider-using-with
        self.procs.append(proc)
        return proc

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.procs.clear()
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)


class RawClient:
    """rawclient.py in the client namespace, spoken to over a pipe."""

    def __init__(self, client_ns):
        self.proc = client_ns.popen([sys.executable, str(HERE / "rawclient.py"), "eth0"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)
        ready = json.loads(self.proc.stdout.readline() or "{}")
        assert ready.get("ready"), "rawclient.py did not start"

    def exchange(self, frames, listen=LISTEN):
        self.proc.stdin.write(json.dumps({"send": [bytes(frame).hex() for frame in frames], "listen": listen}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "rawclient.py ended"
        return json.loads(line)["frames"]


class Env:
    def __init__(self, lab, client_ns, raw, events, server_mac):
        self.lab = lab
        self.client_ns = client_ns
        self.raw = raw
        self.events = events
        self.server_mac = server_mac
        self.xid = 0x4e580000

    def next_xid(self):
        self.xid += 1
        return self.xid

    def api(self, path):
        out = self.lab.run(["curl", "-sS", "%s/api/v1/%s" % (HTTP_BASE, path)]).stdout
        return json.loads(out)

    def host(self, name):
        return self.api("hosts/%s" % mac_of(name))["host"]


def start_server(lab):
    workdir = lab.workdir
    for name in ("kernel", "initrd"):
        (workdir / name).write_bytes(b"netboot_dhcp test stand-in %s\n" % name.encode())
    hosts = {name: {"mac_address": mac, "arch": arch} for name, (mac, arch) in HOSTS.items()}
    (workdir / "hosts.json").write_text(json.dumps(hosts), encoding="utf-8")
    artifact = {"kernel": str(workdir / "kernel"), "initrd": str(workdir / "initrd")}
    params = {"hosts_file": str(workdir / "hosts.json"), "kernel": artifact["kernel"], "initrd": artifact["initrd"],
              "artifacts": {"aarch64-linux": artifact}, "interface": lab.bridge, "ipxe_dir": str(IPXE_DIR),
              "run_dir": str(workdir / "run"), "max_duration": 300, "linger": 1}
    (workdir / "params.json").write_text(json.dumps(params), encoding="utf-8")
    events = workdir / "events.jsonl"
    with open(workdir / "server.log", "wb") as log:
        proc = lab.popen([sys.executable, str(HERE / "serve.py"), str(workdir / "params.json"), str(events)],
                         stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("the server exited:\n" + (workdir / "server.log").read_text(errors="replace")[-3000:])
        if lab.run(["curl", "-sf", "-o", "/dev/null", HTTP_BASE + "/api/v1/health"], check=False).returncode == 0:
            return events
        time.sleep(0.2)
    pytest.fail("the server did not answer in 30 s:\n" + (workdir / "server.log").read_text(errors="replace")[-3000:])
    return None


@pytest.fixture(scope="module")
def env():
    for tool in ("dnsmasq", "dumpcap", "curl", "tftp"):
        if subprocess.run(["sh", "-c", "command -v %s" % tool], capture_output=True, check=False).returncode:
            pytest.skip("%s is not installed (see tests/lab/README.md; tftp is Debian's tftp-hpa)" % tool)
    if not (IPXE_DIR / "undionly.kpxe").exists() or not (IPXE_DIR / "ipxe.efi").exists():
        pytest.skip("Debian's ipxe package is not installed")
    with Lab() as lab, ClientNamespace(lab) as client_ns:
        events = start_server(lab)
        link = json.loads(lab.run(["ip", "-j", "link", "show", lab.bridge]).stdout)[0]
        raw = RawClient(client_ns)
        yield Env(lab, client_ns, raw, events, link["address"])


# ------------------------------------------------------------------ DISCOVER on 67, every class at once

# name -> (options of its DISCOVER, expected boot file or None for "no answer from us")
DISCOVERS = {
    "bios": (dhcp_options(0, pxe_vendor(0)), "undionly.kpxe"),
    "ia32": (dhcp_options(6, pxe_vendor(6)), None),                   # 32-bit UEFI: no iPXE binary for it
    "efi7": (dhcp_options(7, pxe_vendor(7)), "ipxe.efi"),
    "efi9": (dhcp_options(9, pxe_vendor(9)), "ipxe.efi"),
    "arm64": (dhcp_options(11, pxe_vendor(11)), None),                # ipxe-arm64.efi is not installed
    "http16": (dhcp_options(16, pxe_vendor(16, b"HTTPClient")), HTTP_BASE + "/ipxe/ipxe.efi"),
    "http19": (dhcp_options(19, pxe_vendor(19, b"HTTPClient")), None),  # ipxe-arm64.efi is not installed
    "ipxe": (dhcp_options(7, pxe_vendor(7), user_class=b"iPXE", extra=[(175, b"\x13\x01\x01")]),
             HTTP_BASE + "/boot/52:54:00:aa:00:08/script.ipxe"),
    "ipxebios": (dhcp_options(0, pxe_vendor(0), user_class=b"iPXE"), HTTP_BASE + "/boot/52:54:00:aa:00:09/script.ipxe"),
    "no97": (dhcp_options(7, pxe_vendor(7), guid=None), "ipxe.efi"),
    "empty97": (dhcp_options(7, pxe_vendor(7), guid=b""), "ipxe.efi"),
    "mismatch": (dhcp_options(11, pxe_vendor(11)), None),            # an arm64 client for an x86_64 host
}


@pytest.fixture(scope="module")
def discovered(env):
    """Every class's DISCOVER sent at once; name -> (xid, ours, site's)."""
    xids = {name: env.next_xid() for name in DISCOVERS}
    frames = env.raw.exchange([discover_frame(mac_of(name), xids[name], DISCOVERS[name][0]) for name in DISCOVERS],
                              listen=DISCOVER_LISTEN)
    return {name: (xids[name],) + answers(frames, xids[name]) for name in DISCOVERS}


def assert_proxy_answer(answer, mac, vendor, boot_file, guid, message_type):
    bootp = answer.bootp
    assert answer.mac == mac
    assert answer.source == (SERVER, 67 if message_type == 2 else 4011)
    assert bootp.yiaddr == "0.0.0.0", "a proxy never hands out an address"
    assert bootp.siaddr == SERVER
    assert bootp.sname.rstrip(b"\0") == SERVER.encode()
    assert answer.options[53] == message_type
    assert answer.options[54] == SERVER
    assert answer.options[60] == vendor
    if guid is None:
        assert 97 not in answer.options, "option 97 invented"
    else:
        assert answer.options[97] == guid, "option 97 not echoed byte for byte"
    file_field = answer.file or answer.options.get(67, b"").decode()
    assert file_field == boot_file
    assert len(bytes(bootp)) >= 300, "replies are padded to 300 bytes (RFC 1542)"


@pytest.mark.parametrize("name", sorted(DISCOVERS))
def test_discover(discovered, name):
    """Our answer (or none) for each client class, and the site's address offer beside it."""
    xid, ours, site = discovered[name]
    options, boot_file = DISCOVERS[name]
    mac = mac_of(name)
    # The site's dnsmasq is a real DHCP server beside us: it offers an address to every client.
    assert site, "no offer from the site's dnsmasq for %s" % name
    assert all(answer.bootp.yiaddr.startswith("10.77.0.1") and answer.options[53] == 2 for answer in site)
    if boot_file is None:
        assert not ours, "%s got an answer: %s" % (name, [answer.file for answer in ours])
        return
    # One offer, sent again after each of OFFER_REPEATS (a lossy link's second chances): copies, no later than due.
    assert len(ours) == 1 + len(OFFER_REPEATS), "%s: %d answers from us" % (name, len(ours))
    answer = ours[0]
    for copy, delay in zip(ours[1:], OFFER_REPEATS):
        assert bytes(copy.udp.payload) == bytes(answer.udp.payload), "%s: a repeated offer differs from the first" % name
        assert copy.received_at - answer.received_at >= delay - 0.05, (name, delay, copy.received_at - answer.received_at)
    # Port 67 answers to a client without an address are broadcast to port 68.
    assert answer.destination == ("255.255.255.255", 68)
    assert answer.frame[Ether].dst == BROADCAST_MAC
    vendor = b"HTTPClient" if name.startswith("http") else b"PXEClient"
    guid = dict(o for o in options if isinstance(o, tuple)).get(97)
    assert_proxy_answer(answer, mac, vendor, boot_file, guid, message_type=2)
    assert answer.bootp.xid == xid and answer.bootp.flags == 0x8000
    if name in ("bios", "ipxebios"):
        assert answer.options[43] == b"\x06\x01\x08\xff", "BIOS needs discovery control 8"
    else:
        assert 43 not in answer.options, "UEFI gets no option 43"


def test_discover_events(env, discovered):
    """Offers are recorded on the host's timeline; unanswered classes leave their host untouched."""
    assert discovered
    for name, (dummy, boot_file) in DISCOVERS.items():
        host = env.host(name)
        events = [event["event"] for event in host["events"]]
        if boot_file is None:
            assert host["state"] == "known", (name, host["state"], events)
        elif "/boot/" in boot_file:
            assert "script_offered" in events, (name, events)
        else:
            assert host["state"] == "offered", (name, host["state"])


# ------------------------------------------------------------------ port 4011


@pytest.fixture(scope="module")
def acked(env):
    """REQUESTs on 4011: OVMF from port 4011, iPXE from port 68, a BIOS boot-server request (43/71)."""
    cases = {
        "ovmf4011": request_frame(mac_of("ovmf4011"), env.next_xid(), dhcp_options(7, pxe_vendor(7)),
                                  server_mac=env.server_mac, src=CLIENT_IPS[0], sport=4011),
        "ipxe4011": request_frame(mac_of("ipxe4011"), env.next_xid(), dhcp_options(7, pxe_vendor(7), user_class=b"iPXE"),
                                  server_mac=env.server_mac, src=CLIENT_IPS[2], sport=68),
        "bios": request_frame(mac_of("bios"), env.next_xid(),
                              dhcp_options(0, pxe_vendor(0), extra=[(43, b"\x47\x04\x80\x00\x00\x00\xff")]),
                              server_mac=env.server_mac, src=CLIENT_IPS[1], sport=4011),
    }
    frames = env.raw.exchange(list(cases.values()))
    return {name: (frame[BOOTP].xid,) + answers(frames, frame[BOOTP].xid) for name, frame in cases.items()}


def test_request_on_4011_from_4011(acked):
    """OVMF asks from port 4011: the ACK names ipxe.efi, echoes ciaddr, goes back to 4011 from 4011."""
    dummy, ours, site = acked["ovmf4011"]
    assert not site
    assert len(ours) == 1
    answer = ours[0]
    assert answer.destination == (CLIENT_IPS[0], 4011)
    assert_proxy_answer(answer, mac_of("ovmf4011"), b"PXEClient", "ipxe.efi", GUID, message_type=5)
    assert answer.bootp.ciaddr == CLIENT_IPS[0]
    assert 43 not in answer.options


def test_request_on_4011_from_68(acked):
    """iPXE asks from port 68: the ACK (the script URL) goes back to port 68, from port 4011."""
    dummy, ours, dummy2 = acked["ipxe4011"]
    assert len(ours) == 1
    answer = ours[0]
    assert answer.destination == (CLIENT_IPS[2], 68)
    assert_proxy_answer(answer, mac_of("ipxe4011"), b"PXEClient", HTTP_BASE + "/boot/52:54:00:aa:00:0e/script.ipxe",
                        GUID, message_type=5)


def test_bios_boot_server_request(acked):
    """A BIOS boot-server request (option 43 sub-option 71) gets undionly.kpxe and its boot item echoed."""
    dummy, ours, dummy2 = acked["bios"]
    assert len(ours) == 1
    answer = ours[0]
    assert answer.destination == (CLIENT_IPS[1], 4011)
    assert_proxy_answer(answer, mac_of("bios"), b"PXEClient", "undionly.kpxe", GUID, message_type=5)
    assert answer.options[43] == b"\x06\x01\x08\x47\x04\x80\x00\x00\x00\xff"


# ------------------------------------------------------------------ real TFTP and HTTP clients


def test_tftp_hpa_fetches_the_offered_efi_binary(env, acked):
    """tftp-hpa fetches ipxe.efi (the 4011 ACK's file) byte for byte; the transfer is tied to that host."""
    assert acked
    target = env.lab.workdir / "ipxe.efi.tftp"
    result = env.client_ns.run(["tftp", "-m", "binary", SERVER, "-c", "get", "ipxe.efi", str(target)])
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == (IPXE_DIR / "ipxe.efi").read_bytes()
    time.sleep(0.2)
    host = env.host("ovmf4011")
    served = [event for event in host["events"] if event["event"] == "ipxe_served"]
    assert host["state"] == "ipxe_served" and served[-1]["file"] == "ipxe.efi", host["events"]


def test_curl_tftp_fetches_undionly(env, acked):
    """curl over TFTP, from the BIOS client's address, fetches undionly.kpxe."""
    assert acked
    target = env.lab.workdir / "undionly.kpxe.tftp"
    result = env.client_ns.run(["curl", "-sS", "--interface", CLIENT_IPS[1], "-o", str(target),
                                "tftp://%s/undionly.kpxe" % SERVER])
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == (IPXE_DIR / "undionly.kpxe").read_bytes()
    time.sleep(0.2)
    assert env.host("bios")["state"] == "ipxe_served"


def test_arm64_binary_is_neither_offered_nor_served(env, discovered):
    """Debian's ipxe has no ipxe-arm64.efi: arm64 clients get no offer, and TFTP/HTTP have no such file."""
    assert not discovered["arm64"][1] and not discovered["http19"][1]
    result = env.client_ns.run(["curl", "-sS", "-o", "/dev/null", "tftp://%s/ipxe-arm64.efi" % SERVER])
    assert result.returncode != 0
    status = env.client_ns.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", HTTP_BASE + "/ipxe/ipxe-arm64.efi"])
    assert status.stdout.decode() == "404"


def test_http_boot_fetch_is_tied_to_the_snooped_address(env, discovered):
    """The HTTP boot client takes the site's address (REQUEST with option 50, seen by us), then GETs ipxe.efi."""
    assert discovered["http16"][1]
    env.raw.exchange([select_request_frame(mac_of("http16"), env.next_xid(), DISCOVERS["http16"][0], CLIENT_IPS[3])],
                     listen=0.3)
    target = env.lab.workdir / "ipxe.efi.http"
    result = env.client_ns.run(["curl", "-sS", "-f", "--interface", CLIENT_IPS[3], "-o", str(target),
                                HTTP_BASE + "/ipxe/ipxe.efi"])
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == (IPXE_DIR / "ipxe.efi").read_bytes()
    time.sleep(0.2)
    host = env.host("http16")
    served = [event for event in host["events"] if event["event"] == "ipxe_served"]
    assert served and served[-1].get("via") == "http", host["events"]


def fetch_script(env, name):
    return env.client_ns.run(["curl", "-sS", "-w", "\n%{http_code}", "%s/boot/%s/script.ipxe" % (HTTP_BASE, mac_of(name))])


def test_script_url_fetched_with_curl(env, discovered):
    """The iPXE client's offered URL is its script: kernel with api, token and MAC, then a bare initrd line."""
    url = discovered["ipxe"][1][0].file
    result = env.client_ns.run(["curl", "-sS", "-f", url])
    assert result.returncode == 0, result.stderr
    script = result.stdout.decode()
    assert script.startswith("#!ipxe")
    kernel = [line for line in script.splitlines() if line.strip().startswith("kernel ")]
    assert kernel, script
    assert "nixie.api=%s/api/v1" % HTTP_BASE in kernel[0]
    assert "nixie.mac=%s" % mac_of("ipxe") in kernel[0]
    assert "nixie.token=" in kernel[0]
    assert "initrd --name initrd %s/boot/%s/initrd" % (HTTP_BASE, mac_of("ipxe")) in script
    assert env.host("ipxe")["state"] == "script_served"


# ------------------------------------------------------------------ strangers and the one-shot rule


def test_unknown_mac_gets_nothing_on_the_wire(env):
    """A MAC outside hosts.json: everything on br0 for 2 s holds the site's offer and nothing from us."""
    pcap = env.lab.workdir / "unknown.pcap"
    xid = env.next_xid()
    with env.lab.capture(pcap):
        env.raw.exchange([discover_frame(UNKNOWN_MAC, xid, dhcp_options(7, pxe_vendor(7))),
                          request_frame(UNKNOWN_MAC, xid + 1, dhcp_options(7, pxe_vendor(7)), server_mac=env.server_mac,
                                        src=CLIENT_IPS[0], sport=4011)], listen=2.0)
    env.next_xid()
    packets = rdpcap(str(pcap))
    assert any(p.haslayer(Ether) and p[Ether].src == UNKNOWN_MAC for p in packets), "the capture missed the DISCOVER"
    from_us = [p.summary() for p in packets if p.haslayer(IP) and p[IP].src == SERVER]
    assert not from_us, "the server sent: %s" % from_us
    site = [p for p in packets if p.haslayer(BOOTP) and p[BOOTP].xid == xid and p[IP].src == SITE]
    assert site, "no offer from the site's dnsmasq in the capture"
    ignored = env.api("hosts")["ignored"]["macs"]
    assert UNKNOWN_MAC in ignored and ignored[UNKNOWN_MAC]["count"] >= 2, ignored


def test_phone_home_then_no_more_answers(env, discovered):
    """The real agent phones home with the token of its script; then the host's requests get no answer."""
    assert discovered["ipxe"][1]
    script = fetch_script(env, "ipxe").stdout.decode()
    kernel = next(line for line in script.splitlines() if line.strip().startswith("kernel "))
    workdir = env.lab.workdir
    (workdir / "cmdline").write_text(kernel.strip().split(None, 2)[2] + "\n", encoding="utf-8")
    ssh_dir = workdir / "ssh"
    ssh_dir.mkdir()
    key_line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhwDMtrSgUVBwgc06oxHxxBGk8VaOTZmj6YL1/2G5QN netboot_dhcp-test"
    (ssh_dir / "ssh_host_ed25519_key.pub").write_text(key_line + "\n", encoding="utf-8")
    agent_env = dict(os.environ, NIXIE_CMDLINE=str(workdir / "cmdline"), NIXIE_SSH_DIR=str(ssh_dir), NIXIE_NET_WAIT="2",
                     NIXIE_MAX_TRIES="3", NIXIE_MAX_DELAY="1", NIXIE_HTTP_CLIENT="curl")
    result = env.client_ns.run(["sh", str(AGENT)], env=agent_env, text=True)
    assert result.returncode == 0, result.stderr
    assert "phoned home" in result.stdout
    assert "nixie.token" not in result.stdout + result.stderr
    host = env.host("ipxe")
    assert host["state"] == "phoned_home" and host["finished"]
    assert host["address"] == CLIENT_IPS[0]
    assert host["ssh_host_keys"] == [" ".join(key_line.split()[:2])]

    mac = mac_of("ipxe")
    again = {"ipxe": env.next_xid(), "firmware": env.next_xid(), "4011": env.next_xid()}
    frames = env.raw.exchange([
        discover_frame(mac, again["ipxe"], DISCOVERS["ipxe"][0]),
        discover_frame(mac, again["firmware"], dhcp_options(7, pxe_vendor(7))),
        request_frame(mac, again["4011"], DISCOVERS["ipxe"][0], server_mac=env.server_mac, src=CLIENT_IPS[0], sport=68),
    ])
    for kind, xid in again.items():
        ours, site = answers(frames, xid)
        assert not ours, "a finished host was answered (%s)" % kind
        if kind != "4011":
            assert site, "no site offer (%s)" % kind
    status = fetch_script(env, "ipxe").stdout.decode().rsplit("\n", 1)[-1]
    assert status == "404", "the script is still served after the phone-home"
    events = [event for event in env.host("ipxe")["events"] if event["event"] == "dhcp_ignored"]
    assert events and all(event.get("reason") == "finished" for event in events)
