# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The dnsmasq baseline: boot lab VMs through dnsmasq (proxyDHCP + TFTP)
and the HTTP stand-in, to measure boot times and to record the packet
captures kept as unit-test fixtures.  Run as root::

    python3 tests/lab/baseline.py fixtures      # rewrite fixtures/*.pcap + README.md
    python3 tests/lab/baseline.py measure -n 3  # QEMU start -> installer markers
    python3 tests/lab/baseline.py build-times   # installer build, cold and warm
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nixielab import fixtures, installer  # noqa: E402
from nixielab.net import Lab  # noqa: E402
from nixielab.services import HttpStub, httpboot_site_lines, start_proxy_dnsmasq  # noqa: E402
from nixielab.vm import KINDS, VM  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests/unit/plugins/module_utils/netboot/fixtures"
MARKERS = {
    "init": r"NIXIE-LAB: init start",
    "network": r"NIXIE-LAB: network up \S+",
    "agent": r"NIXIE-LAB: agent exit 0",
}


def boot_once(kind: str, inst: installer.Installer, pcap: Path | None = None,
              timeout: float = 240) -> dict:
    """One VM of ``kind`` through dnsmasq + stub; seconds from QEMU start to each marker."""
    site_extra = []
    if kind == "ovmf-httpboot":
        site_extra = httpboot_site_lines("http://10.77.0.1:8080/ipxe/ipxe.efi")
    with Lab(site_extra=site_extra) as lab:
        HttpStub(lab, inst)
        start_proxy_dnsmasq(lab)
        capture = lab.capture(lab.workdir / "raw.pcap").start() if pcap else None
        vm = VM(lab, kind).start()
        times = {}
        try:
            for name, pattern in MARKERS.items():
                vm.wait_for(pattern, timeout)
                times[name] = round(vm.elapsed, 2)
        finally:
            if capture:
                capture.stop()
                fixtures.trim(capture.path, pcap)
        return times


# ----------------------------------------------------------------- fixtures

FIXTURE_NOTES = {
    "ovmf-pxe": "OVMF (EDK2) firmware PXE, virtio-net with romfile= (no iPXE ROM); "
                "TFTP ipxe.efi from dnsmasq, then that iPXE asks again (user class iPXE).",
    "ovmf-ipxe": "OVMF with QEMU's iPXE ROM (efi-virtio.rom): iPXE does DHCP itself, no TFTP.",
    "seabios-ipxe": "SeaBIOS with QEMU's iPXE ROM: arch 0, dnsmasq's PXE menu (option 43), "
                    "iPXE's boot-server request (option 43 sub 71) to 4011.",
    "ovmf-httpboot": "OVMF UEFI HTTP boot (PXE off by fw_cfg). dnsmasq proxy mode cannot answer "
                     "HTTPClient, so the site dnsmasq answers it (option 60 HTTPClient + URL).",
}


def _client_summary(pcap: Path) -> list[str]:
    """First request per distinct client identity: the values a classifier keys on."""
    seen, lines = set(), []
    for rec in fixtures.describe(pcap):
        if rec["proto"] != "DHCP" or rec["op"] != 1:
            continue
        opts = dict(rec["options"])
        key = (rec["type"], opts.get(60), opts.get(77), rec["dst"].split(":")[1])
        if key in seen:
            continue
        seen.add(key)
        lines.append(f"- {rec['type']} {rec['src']} -> {rec['dst']}: "
                     + ", ".join(f"{c}=`{opts[c]}`" for c in (93, 60, 77, 97, 43) if c in opts))
    return lines


def write_readme(kinds: list[str]) -> None:
    parts = [README_HEAD]
    for kind in kinds:
        pcap = FIXTURES / f"{kind}.pcap"
        if not pcap.exists():
            continue
        parts += [f"## `{kind}.pcap` ({pcap.stat().st_size} bytes)", "", FIXTURE_NOTES[kind], "",
                  "Client requests (option values as sent; hex where not printable):", ""]
        parts += _client_summary(pcap)
        parts += ["", "Every packet (`python3 -m nixielab.fixtures show " + pcap.name + "`):", "", "```"]
        parts += fixtures.summary_lines(pcap)
        parts += ["```", ""]
    parts.append(README_TAIL)
    (FIXTURES / "README.md").write_text("\n".join(parts))


def cmd_fixtures(args) -> None:
    inst = installer.build(installer.default_agent())
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for kind in args.kinds:
        times = boot_once(kind, inst, pcap=FIXTURES / f"{kind}.pcap")
        print(kind, json.dumps(times), flush=True)
    write_readme(list(KINDS))


def cmd_measure(args) -> None:
    inst = installer.build(installer.default_agent())
    results: dict = {}
    for run in range(args.runs):
        for kind in args.kinds:
            times = boot_once(kind, inst)
            results.setdefault(kind, []).append(times)
            print(f"run {run + 1} {kind} {json.dumps(times)}", flush=True)
    for kind, runs in results.items():
        med = {m: statistics.median(r[m] for r in runs) for m in MARKERS}
        print(f"median {kind} ({len(runs)} runs): {json.dumps(med)}")


def cmd_build_times(args) -> None:
    """Cold = empty cache (includes the ≈70 MB kernel download); warm = same inputs again."""
    with tempfile.TemporaryDirectory() as cache:
        os.environ["NIXIE_LAB_CACHE"] = cache
        for label in ("cold", "warm", "warm"):
            start = time.monotonic()
            installer.build(installer.default_agent())
            print(f"{label}: {time.monotonic() - start:.3f}s")


README_HEAD = """# Network boot captures (fixtures)

Real packets, captured with dumpcap on the lab bridge (tests/lab) while QEMU
clients booted through **dnsmasq 2.90 in proxyDHCP mode + TFTP** (lab namespace,
10.77.0.1) with a **site dnsmasq** giving addresses only (10.77.0.2, range
.100-.199), and tests/lab's HTTP stand-in on 10.77.0.1:8080. Every boot ended with
the lab installer's agent phoning home. Regenerate with
`python3 tests/lab/baseline.py fixtures` (root; ≈2 min).

Trimmed by `nixielab.fixtures.trim`: only UDP 67/68/4011 (DHCP) and TFTP, with
each transfer's RRQ/OACK/ERROR, first 3 DATA/ACK blocks and its final short block;
HTTP, ARP and ICMPv6 (dnsmasq's RAs) are dropped. Classic pcap, Ethernet
link type: `scapy.utils.rdpcap` reads them. MACs are 52:54:00:12:34:01. Option
values below: text if printable, else hex of the raw bytes (option 93 is 2 bytes).
Times are seconds from the first kept packet.
"""

README_TAIL = """## Quirks seen on the wire (all files)

- OVMF PXE: DISCOVER from 0.0.0.0:68 with 93=`0007`, 60=`PXEClient:Arch:00007:UNDI:003000`,
  97 = 17 bytes (type 0 + GUID), 94=`010300`, 57=`05c0` (1472); no option 77 and no
  client identifier (61). It waits ~3.7 s collecting offers, REQUESTs the site
  server's address, then sends a *new xid* REQUEST **from UDP 4011 to proxy:4011**
  (unicast, ciaddr = its new address, broadcast flag clear, no option 54) and takes
  `file` from that ACK, which dnsmasq sends to client:4011. Its DISCOVER has the
  broadcast flag (0x8000) set. Option 57 is `ff00` in its broadcast REQUEST but
  `05c0` in the others.
- dnsmasq's proxy OFFER to UEFI (arch 7): yiaddr 0.0.0.0, siaddr = proxy, options 53,
  54, 60 `PXEClient`, 97 echoed, no file, no option 43. Its 4011 ACK adds
  `file=ipxe.efi` (BOOTP field, not option 67).
- dnsmasq's proxy OFFER to BIOS (arch 0): siaddr **0.0.0.0**, option 43 with PXE
  sub-options 6 (discovery control = 3), 8 (boot server 0x8001 -> proxy), 9 (menu
  "script") and 10 (prompt, timeout 0).
- iPXE (both ROMs and the TFTP-loaded ipxe.efi): option 77 = `iPXE`, 175 (iPXE
  encapsulated feature flags), 61 = `01` + MAC, 60 =
  `PXEClient:Arch:0000N:UNDI:00301x` (UNDI `003010` for UEFI, `002001` for BIOS).
  Its DISCOVER has the broadcast flag clear. Its proxy request goes **from port 68**
  to proxy:4011 (unicast, ciaddr set, option 54 = proxy, broadcast flag *set*) and
  dnsmasq answers unicast to client:68. The ipxe.efi loaded by the firmware
  (TFTP or HTTP) used xid `9262f821` in every run here (ovmf-pxe, ovmf-httpboot):
  do not key state on xid alone; the ROM builds varied.
- iPXE after a BIOS PXE menu (option 43 sub 8/9) sends a *boot server* REQUEST to
  4011 with **xid 00000000**, option 60 just `PXEClient`, 43 = `470480010000ff`
  (sub 71: type 0x8001, layer 0). dnsmasq answers it with ciaddr 0, yiaddr = the
  client's address, the URL in `file` and 43 = sub 71 echoed + sub 10.
- OVMF HTTP boot: 93=`0010` (16), 60=`HTTPClient:Arch:00016:UNDI:003000`; it ignores
  the PXE proxy and accepted the site answer carrying 60=`HTTPClient` and
  option 67 (dnsmasq appended a NUL to the URL); then HEAD + GET of the URL
  (User-Agent `UefiHttpBoot/1.0`).
- OVMF TFTP: RRQ `ipxe.efi` with tsize=0, blksize=1468, windowsize=4; dnsmasq OACKs
  blksize and tsize only; OVMF aborts with ERROR 8 "User aborted the transfer"
  and re-reads without tsize (dnsmasq again ignores windowsize, so lock-step ACKs).
- busybox udhcpc (lab installer) sends 60=`udhcp 1.35.0`: it must get no boot answer.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_fix = sub.add_parser("fixtures")
    p_fix.add_argument("kinds", nargs="*", default=list(KINDS))
    p_meas = sub.add_parser("measure")
    p_meas.add_argument("-n", "--runs", type=int, default=3)
    p_meas.add_argument("kinds", nargs="*", default=["seabios-ipxe", "ovmf-pxe"])
    sub.add_parser("build-times")
    sub.add_parser("readme", help="rewrite fixtures/README.md from the existing pcaps")
    args = parser.parse_args()
    commands = {"fixtures": cmd_fixtures, "measure": cmd_measure, "build-times": cmd_build_times,
                "readme": lambda _args: write_readme(list(KINDS))}
    commands[args.cmd](args)


if __name__ == "__main__":
    main()
