# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Seed inputs of the fuzz targets, made from the real captures of firmware booting (the unit tests' pcaps).

DHCP seeds are the client requests exactly as OVMF, iPXE and udhcpc sent them; TFTP seeds are each
captured read request followed by the client's own ACK/ERROR datagrams of that transfer; API seeds
are what the nixie-agent posts (its report shape, with this run's and other hosts' tokens) and the
admin stop request. A few requests no capture holds (BIOS boot server request, HTTP boot, arm64,
traversal names, a write request) are built by hand so the fuzzer starts next to those branches too.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

from targets import ADMIN_TOKEN, FINISHED_MAC, HOSTS, TOKENS, join_records  # pylint: disable=import-error

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "unit" / "plugins" / "module_utils" / "netboot" / "fixtures"

DHCP_PORTS = (67, 68, 4011)
TFTP_PORT = 69


def _udp_flows(pcap):
    """(src, sport, dst, dport, payload) of every UDP datagram of a capture."""
    from scapy.all import IP, UDP, rdpcap  # pylint: disable=import-outside-toplevel,no-name-in-module
    flows = []
    for frame in rdpcap(str(pcap)):
        if IP in frame and UDP in frame:
            udp = frame[UDP]
            flows.append((frame[IP].src, udp.sport, frame[IP].dst, udp.dport, bytes(udp.payload)))
    return flows


def captured_dhcp_requests():
    out = []
    for pcap in sorted(FIXTURES.glob("*.pcap")):
        for dummy, sport, dummy2, dport, payload in _udp_flows(pcap):
            if dport in (67, 4011) and sport in DHCP_PORTS:
                out.append(payload)
    return out


def captured_tftp_sessions():
    """Each captured RRQ followed by what its client sent on that transfer (ACKs, ERROR)."""
    sessions = []
    for pcap in sorted(FIXTURES.glob("*.pcap")):
        flows = _udp_flows(pcap)
        for index, (src, sport, dummy, dport, payload) in enumerate(flows):
            if dport != TFTP_PORT:
                continue
            follow = [p for (s, sp, dummy2, dummy3, p) in flows[index + 1:] if s == src and sp == sport and p[:2] in (b"\x00\x04", b"\x00\x05")]
            sessions.append([payload] + follow)
    return sessions


def _dhcp_request(options, chaddr=bytes.fromhex("525400123401"), ciaddr=b"\0\0\0\0"):
    head = bytes((1, 1, 6, 0)) + b"\x12\x34\x56\x78" + b"\0\x04\0\0" + ciaddr + b"\0" * 12 + chaddr + b"\0" * 10 + b"\0" * 192
    body = b"".join(bytes((code, len(value))) + value for code, value in options)
    return head + b"\x63\x82\x53\x63" + body + b"\xff"


def crafted_dhcp_requests():
    arm = bytes.fromhex("525400123403")
    done = bytes.fromhex(FINISHED_MAC.replace(":", ""))
    return [
        # BIOS PXE boot server request on 4011 (option 43 sub-option 71)
        _dhcp_request([(53, b"\x03"), (93, b"\x00\x00"), (60, b"PXEClient:Arch:00000:UNDI:002001"),
                       (43, b"\x47\x04\x80\x00\x00\x00\xff")], ciaddr=b"\x0a\x4d\x00\xad"),
        # UEFI HTTP boot, x64 (arch 16)
        _dhcp_request([(53, b"\x01"), (93, b"\x00\x10"), (60, b"HTTPClient:Arch:00016:UNDI:003001")]),
        # arm64 UEFI PXE
        _dhcp_request([(53, b"\x01"), (93, b"\x00\x0b"), (60, b"PXEClient:Arch:00011:UNDI:003000")], chaddr=arm),
        # iPXE with its feature list, no HTTP
        _dhcp_request([(53, b"\x01"), (77, b"iPXE"), (175, b"\x15\x01\x01\xff")]),
        # options overloaded into file and sname
        _dhcp_request([(53, b"\x01"), (52, b"\x03"), (60, b"PXEClient:Arch:00007:UNDI:003000")]),
        # a host that already phoned home
        _dhcp_request([(53, b"\x01"), (93, b"\x00\x07"), (60, b"PXEClient:Arch:00007:UNDI:003000")], chaddr=done),
    ]


def crafted_tftp_sessions():
    def rrq(name, *options, opcode=1):
        out = opcode.to_bytes(2, "big") + name + b"\0octet\0"
        for option in options:
            out += option + b"\0"
        return out
    ack = [b"\x00\x04" + n.to_bytes(2, "big") for n in range(0, 8)]
    return [
        [rrq(b"undionly.kpxe", b"blksize", b"8", b"windowsize", b"4", b"tsize", b"0", b"timeout", b"1")] + ack,
        [rrq(b"snponly.efi")] + ack[1:2],
        [rrq(b"ipxe-arm64.efi", b"blksize", b"1468")] + ack[:3],
        [rrq(b"../../etc/passwd")],
        [rrq(b"%2e%2e/ipxe.efi")],
        [rrq(b"ipxe.efi", opcode=2)],
        [rrq(b"ipxe.efi", b"tsize", b"0"), b"\x00\x05\x00\x08User aborted\x00"],
    ]


def _report(mac, address="10.77.0.173"):
    return {"mac": mac, "addresses": [{"ifname": "eth0", "mac": mac, "address": address, "prefix": 24},
                                      {"ifname": "eth0", "mac": mac, "address": "fd77::5054:ff:fe12:3401", "prefix": 64}],
            "ssh_host_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBt0k3nPl9HnRCYuTBnUxw8ns9oz6ZOV2x1uS5kNTy8S root@nixos"],
            "hostname": "nixos", "uptime": 12.5}


def api_inputs():
    node1 = HOSTS[0].mac
    out = []
    for authorization, query, mac, report in (
            ("Bearer " + TOKENS["node1"], "wait=0", node1, _report(node1)),
            ("Bearer " + TOKENS["arm1"], "after=0", node1, _report(node1)),
            ("bearer  " + TOKENS["node1"], "wait=5&after=3", "5254.0012.3401", _report(node1)),
            ("", "", "52-54-00-12-34-01", _report(node1)),
            ("Bearer " + TOKENS["done1"], "wait=nan", FINISHED_MAC, _report(FINISHED_MAC)),
            ("Bearer " + ADMIN_TOKEN, "", node1, {"reason": "state=stopped"}),
            ("Basic dXNlcjpwYXNz", "after=-1", "zz", [1, 2, 3])):
        out.append(join_records(authorization.encode(), query.encode(), mac.encode(), json.dumps(report).encode()))
    # The same phone-home as the kernel sees its peer: on the segment with node1's MAC, a stranger's, none;
    # behind a router (the fifth record indexes targets.PEER_ROUTES, PEER_MACS and the entry's state).
    for peer in (b"\x01\x00\x00", b"\x01\x03\x00", b"\x01\x04\x00", b"\x01\x00\x02", b"\x02\x03\x00"):
        out.append(join_records(("Bearer " + TOKENS["node1"]).encode(), b"", node1.encode(),
                                json.dumps(_report(node1)).encode(), peer))
    return out


def api_http_inputs():
    """First bytes of API connections as curl, busybox wget, Ansible's open_url and odd clients send them."""
    node1 = HOSTS[0].mac
    report = json.dumps(_report(node1)).encode()
    phone_home = ("POST /api/v1/phone-home HTTP/1.1\r\nHost: 10.77.0.1:8080\r\nUser-Agent: curl/8.7.1\r\nAccept: */*\r\n"
                  "Authorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                  % (TOKENS["node1"], len(report))).encode() + report
    wget = ("POST /api/v1/phone-home HTTP/1.1\r\nHost: 10.77.0.1:8080\r\nUser-Agent: Wget\r\nConnection: close\r\n"
            "Authorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (TOKENS["arm1"], len(report))).encode() + report
    long_poll = ("GET /api/v1/hosts/%s?wait=25&after=3 HTTP/1.1\r\nAccept-Encoding: identity\r\nHost: 10.77.0.1:8080\r\n"
                 "User-Agent: ansible-httpget\r\nConnection: close\r\n\r\n" % node1.replace(":", "%3A")).encode()
    return [
        phone_home,
        wget,
        long_poll,
        b"GET /api/v1/hosts?wait=1&after=0 HTTP/1.0\r\n\r\n",
        b"HEAD /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
        ("POST /api/v1/stop HTTP/1.1\r\nAuthorization: Bearer %s\r\nExpect: 100-continue\r\nContent-Length: 27\r\n\r\n"
         '{"reason": "state=stopped"}' % ADMIN_TOKEN).encode(),
        b"POST /api/v1/phone-home HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /api/v1/phone-home HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"GET /api/v1/../../boot/52:54:00:12:34:01/script.ipxe HTTP/1.1\r\n\r\n",
        b"GET /api/v1/hosts/%ff%fe HTTP/1.1\r\nX: \xff\r\n\r\n",
        b"GET /boot/52:54:00:12:34:01/kernel HTTP/1.1\r\nRange: bytes=0-1\r\n\r\n",
    ]


def seeds(target):
    if target in ("dhcp67", "dhcp4011"):
        return captured_dhcp_requests() + crafted_dhcp_requests()
    if target == "tftp":
        return [join_records(*session) for session in captured_tftp_sessions() + crafted_tftp_sessions()]
    if target == "api":
        return api_inputs()
    if target == "api_http":
        return api_http_inputs()
    raise KeyError(target)


def write_seeds(target, directory):
    """Write the seeds of ``target`` into ``directory`` (one file each, named by content); return how many."""
    os.makedirs(directory, exist_ok=True)
    items = seeds(target)
    for item in items:
        name = hashlib.sha1(item).hexdigest()  # nosec - a file name, not security
        pathlib.Path(directory, name).write_bytes(item)
    return len(items)
