# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn bridge captures into small unit-test fixtures, and describe them.

:func:`trim` keeps DHCP (UDP 67/68/4011) and TFTP control packets: every
RRQ, OACK and ERROR, the first few DATA/ACK blocks and the final (short)
block of each transfer, so a fixture shows negotiation and termination
without the bulk.  :func:`describe` decodes the result with scapy into
plain dicts (options kept as exact bytes), which is what
``fixtures/README.md`` is written from.
"""

from __future__ import annotations

import struct
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import PcapWriter, rdpcap

DHCP_PORTS = {67, 68, 4011}
TFTP_PORT = 69
TFTP_OPS = {1: "RRQ", 2: "WRQ", 3: "DATA", 4: "ACK", 5: "ERROR", 6: "OACK"}
DHCP_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK",
              7: "RELEASE", 8: "INFORM"}


# ------------------------------------------------------------------ parsing

def dhcp_options(payload: bytes) -> list[tuple[int, bytes]]:
    """Raw (code, value) options of a BOOTP/DHCP payload, in wire order."""
    if len(payload) < 240 or payload[236:240] != b"\x63\x82\x53\x63":
        return []
    options, i = [], 240
    while i < len(payload):
        code = payload[i]
        if code == 0:
            i += 1
            continue
        if code == 255 or i + 1 >= len(payload):
            break
        length = payload[i + 1]
        options.append((code, payload[i + 2:i + 2 + length]))
        i += 2 + length
    return options


def tftp_fields(payload: bytes) -> dict:
    """Opcode and fields of one TFTP packet (scapy binds TFTP to port 69 only)."""
    if len(payload) < 2:
        return {"op": "?"}
    op = struct.unpack("!H", payload[:2])[0]
    out: dict = {"op": TFTP_OPS.get(op, str(op))}
    if op in (1, 2, 6):
        parts = payload[2:].split(b"\0")
        if op != 6:
            out["file"], out["mode"] = parts[0].decode(), parts[1].decode()
            parts = parts[2:]
        opts = [p.decode() for p in parts if p]
        out["options"] = dict(zip(opts[0::2], opts[1::2]))
    elif op in (3, 4):
        out["block"] = struct.unpack("!H", payload[2:4])[0]
        if op == 3:
            out["size"] = len(payload) - 4
    elif op == 5:
        out["code"] = struct.unpack("!H", payload[2:4])[0]
        out["message"] = payload[4:].split(b"\0")[0].decode(errors="replace")
    return out


def _udp(pkt):
    if IP in pkt and UDP in pkt:
        return pkt[IP], pkt[UDP]
    return None, None


# ------------------------------------------------------------------- trimming

def _tftp_sessions(packets) -> dict:
    """Map each TFTP transfer's client endpoint to its server transfer port.

    A transfer starts with an RRQ to port 69; the server answers from a new
    port, so the session is identified by the client (ip, port).
    """
    sessions: dict = {}
    for pkt in packets:
        ip, udp = _udp(pkt)
        if ip is None:
            continue
        if udp.dport == TFTP_PORT:
            sessions[(ip.src, udp.sport)] = {"server": ip.dst, "blksize": 512}
        elif (ip.dst, udp.dport) in sessions and bytes(udp.payload)[:2] == b"\0\x06":
            opts = tftp_fields(bytes(udp.payload)).get("options", {})
            if "blksize" in opts:
                sessions[(ip.dst, udp.dport)]["blksize"] = int(opts["blksize"])
    return sessions


def _tftp_keep(pkt, sessions: dict, keep_blocks: int, last_blocks: dict) -> bool:
    ip, udp = _udp(pkt)
    if udp.dport == TFTP_PORT:
        return True
    client = (ip.dst, udp.dport) if (ip.dst, udp.dport) in sessions else (ip.src, udp.sport)
    if client not in sessions:
        return False
    fields = tftp_fields(bytes(udp.payload))
    if fields["op"] in ("OACK", "ERROR", "RRQ", "WRQ"):
        return True
    block = fields.get("block", 0)
    if block <= keep_blocks:
        return True
    if fields["op"] == "DATA" and fields["size"] < sessions[client]["blksize"]:
        last_blocks[client] = block
        return True
    return fields["op"] == "ACK" and last_blocks.get(client) == block


def trim(src: str | Path, dst: str | Path, keep_blocks: int = 3) -> int:
    """Write DHCP + TFTP-control packets of ``src`` to ``dst`` (pcap); returns the count."""
    packets = rdpcap(str(src))
    sessions = _tftp_sessions(packets)
    last_blocks: dict = {}
    kept = []
    for pkt in packets:
        ip, udp = _udp(pkt)
        if ip is None:
            continue
        if udp.sport in DHCP_PORTS or udp.dport in DHCP_PORTS:
            kept.append(pkt)
        elif _tftp_keep(pkt, sessions, keep_blocks, last_blocks):
            kept.append(pkt)
    writer = PcapWriter(str(dst), linktype=1, sync=True)
    for pkt in kept:
        writer.write(pkt)
    writer.close()
    return len(kept)


# ---------------------------------------------------------------- describing

def _show(value: bytes) -> str:
    """Printable text as text, anything else as hex."""
    if value and all(32 <= b < 127 for b in value):
        return value.decode()
    return value.hex()


def describe_packet(pkt) -> dict:
    """One packet as a dict: endpoints plus DHCP options or TFTP fields."""
    ip, udp = _udp(pkt)
    out = {"time": float(pkt.time), "src": f"{ip.src}:{udp.sport}", "dst": f"{ip.dst}:{udp.dport}",
           "eth_src": pkt[Ether].src if Ether in pkt else None}
    payload = bytes(udp.payload)
    if udp.sport in DHCP_PORTS or udp.dport in DHCP_PORTS:
        opts = dhcp_options(payload)
        kind = dict(opts).get(53, b"\0")[0]
        out.update({
            "proto": "DHCP", "op": payload[0], "type": DHCP_TYPES.get(kind, str(kind)),
            "xid": payload[4:8].hex(), "flags": payload[10:12].hex(),
            "ciaddr": ".".join(map(str, payload[12:16])), "yiaddr": ".".join(map(str, payload[16:20])),
            "siaddr": ".".join(map(str, payload[20:24])),
            "chaddr": ":".join(f"{b:02x}" for b in payload[28:34]),
            "sname": payload[44:108].split(b"\0")[0].decode(errors="replace"),
            "file": payload[108:236].split(b"\0")[0].decode(errors="replace"),
            "options": [(code, _show(value)) for code, value in opts],
        })
    else:
        out.update({"proto": "TFTP", **tftp_fields(payload)})
    return out


def describe(path: str | Path) -> list[dict]:
    return [describe_packet(p) for p in rdpcap(str(path)) if _udp(p)[0] is not None]


def summary_lines(path: str | Path) -> list[str]:
    """Human summary used for fixtures/README.md: one line per packet."""
    lines = []
    records = describe(path)
    t0 = records[0]["time"] if records else 0.0
    interesting = (93, 60, 77, 97, 54, 43, 57, 94, 55, 61, 175, 66, 67, 12)
    for rec in records:
        head = f"{rec['time'] - t0:7.3f}s {rec['src']:>21} -> {rec['dst']:<21}"
        if rec["proto"] == "DHCP":
            opts = dict(rec["options"])
            shown = " ".join(f"opt{c}={opts[c]}" for c in interesting if c in opts)
            extra = ""
            if rec["op"] == 2:
                extra = f" yiaddr={rec['yiaddr']} siaddr={rec['siaddr']} file={rec['file']!r}"
            lines.append(f"{head} DHCP {rec['type']} xid={rec['xid']}{extra} {shown}")
        else:
            detail = {k: v for k, v in rec.items() if k not in ("time", "src", "dst", "eth_src", "proto", "op")}
            lines.append(f"{head} TFTP {rec['op']} {detail}")
    return lines


def main() -> None:
    """``python3 -m nixielab.fixtures trim SRC DST`` or ``... show PCAP``."""
    import sys
    if len(sys.argv) == 4 and sys.argv[1] == "trim":
        print(trim(sys.argv[2], sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] == "show":
        print("\n".join(summary_lines(sys.argv[2])))
    else:
        raise SystemExit("usage: python3 -m nixielab.fixtures trim SRC DST | show PCAP")


if __name__ == "__main__":
    main()
