# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

# IPv6 against IPv4, same firmware, same server, same run: OVMF's own PXE
# client (virtio-net, no option ROM) boots the lab installer through
# nixie.metal's server on three segments, in alternating order:
#
#   ipv4       the lab's usual segment: the site's dnsmasq gives IPv4 addresses and
#              sends IPv6 router advertisements without M/O (SLAAC only), as the
#              netboot_qemu target and bench/e2e.py boot;
#   ipv4-only  the same without any router advertisement: IPv4 single-stack;
#   ipv6       no IPv4 at all: the site's dnsmasq is the router (M flag) and the stateful
#              DHCPv6 server (it names iPXE's script, see docs/ipv6.md); our server answers
#              in dhcp6=proxy mode; OVMF's IPv4 PXE attempt is switched off (fw_cfg), as
#              a firmware's boot order would be on such a segment.
#
# The figure is the time from QEMU start to the installer's agent exiting 0
# after its phone-home (serial marker "NIXIE-LAB: agent exit 0"). Needs root,
# QEMU, OVMF, iPXE, dnsmasq (tests/lab/README.md).
#
#   python bench/ipv6.py                 # 3 rounds
#   python bench/ipv6.py --quick         # 1 round
#
# Bar: median(ipv6) / median(ipv4-only) <= 1.2, single stack against single stack.
# The ratio to the dual-stack lab (ipv4) is reported beside it, with where the time
# goes; docs/ipv6.md explains the difference (iPXE waits ~15 s for DHCPv4 to give up).

import argparse
import os
import re
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
import _common  # noqa: E402
import e2e  # noqa: E402

sys.path[:] = [path for path in sys.path if os.path.abspath(path or ".") != BENCH_DIR]

LAB_DIR = os.path.join(_common.REPO, "tests", "lab")
AGENT = os.path.join(_common.REPO, "nix", "agent", "nixie-agent")
VARIANTS = ("ipv4", "ipv4-only", "ipv6")
BAR = ("ipv6", "ipv4-only", 1.2)
MAC = "52:54:00:12:34:61"
AGENT_EXIT = r"NIXIE-LAB: agent exit 0"


def start_site(lab, variant):
    """The site's dnsmasq for a variant (lab made with site_dhcp=False)."""
    from nixielab import ipv6  # pylint: disable=import-outside-toplevel
    from nixielab.net import wait_for_file_text  # pylint: disable=import-outside-toplevel

    if variant == "ipv6":
        ipv6.remove_ipv4(lab)
        ipv6.start_site_dhcp6(lab, ipxe_script=ipv6.ipxe_script_template())
        return
    lines = lab.site_dhcp_config().splitlines()
    if variant == "ipv4-only":
        lines = [line for line in lines if line != "enable-ra" and not line.startswith("dhcp-range=fd77::")]
    conf = lab.workdir / "site-dnsmasq.conf"
    conf.write_text("\n".join(lines) + "\n")
    log = lab.workdir / "site-dnsmasq.log"
    lab.site_dnsmasq = lab.popen(["dnsmasq", "-k", "--conf-file=%s" % conf], ns=lab.site_ns,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_for_file_text(log, "DHCP, IP range", 10, lab.site_dnsmasq)


def boot(variant, inst, timeout):
    from nixielab import ipv6  # pylint: disable=import-outside-toplevel
    from nixielab.net import Lab  # pylint: disable=import-outside-toplevel
    from nixielab.vm import VM  # pylint: disable=import-outside-toplevel

    with Lab(site_dhcp=False) as lab:
        start_site(lab, variant)
        events_path = e2e.start_ours(lab, inst, mac=MAC, health_host="[fd77::1]" if variant == "ipv6" else None)
        t0 = time.time()
        vm = VM(lab, "ovmf-pxe", mac=MAC, extra=ipv6.OVMF_NO_PXE4 if variant == "ipv6" else None).start()
        vm.wait_for(AGENT_EXIT, timeout=timeout)
        elapsed = vm.elapsed
        time.sleep(0.3)
        marks = e2e.milestones_ours(e2e.read_jsonl(events_path), t0)
        serial = vm.serial()
        if variant == "ipv6" and "nixie.api=http://[fd77::1]" not in serial:
            raise RuntimeError("the ipv6 boot did not get the IPv6 API URL")
        uptime = re.search(r"NIXIE-LAB: agent exit 0 \(t=([0-9.]+)s\)", serial)
        marks["guest_uptime"] = float(uptime.group(1)) if uptime else None
        return round(elapsed, 3), marks


def main():
    parser = argparse.ArgumentParser(description="OVMF PXE to phone-home: IPv6 single-stack against IPv4, same run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 round")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per boot before calling it failed")
    parser.add_argument("--json", default=os.path.join(_common.RESULTS, "ipv6.json"), help="result file (default %(default)s)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, taps)")
    rounds = 1 if args.quick else args.rounds
    sys.path.insert(0, LAB_DIR)
    from nixielab import installer  # pylint: disable=import-outside-toplevel
    inst = installer.build(AGENT if os.path.exists(AGENT) else installer.default_agent())

    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    load_before = os.getloadavg()
    data = {variant: {"all": [], "milestones": []} for variant in VARIANTS}
    failures = []
    for number in range(rounds):
        order = VARIANTS if number % 2 == 0 else tuple(reversed(VARIANTS))
        for variant in order:
            try:
                elapsed, marks = boot(variant, inst, args.timeout)
            except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
                failures.append({"variant": variant, "round": number + 1, "error": str(exc)[-2000:]})
                print("%-9s round %d FAILED: %s" % (variant, number + 1, str(exc).splitlines()[0]), flush=True)
                continue
            data[variant]["all"].append(elapsed)
            data[variant]["milestones"].append(marks)
            print("%-9s round %d: %6.2f s to phone-home  %s" % (variant, number + 1, elapsed,
                  " ".join("%s=%s" % item for item in marks.items() if item[1] is not None)), flush=True)

    for variant in VARIANTS:
        entry = data[variant]
        entry["median"] = e2e.median(entry["all"])
        for mark in ("dhcp_answered", "ipxe_loaded", "script", "initrd", "phone_home"):
            entry["median_" + mark] = e2e.median([m[mark] for m in entry["milestones"] if m.get(mark) is not None])
    ratios = {}
    for other in ("ipv4", "ipv4-only"):
        ours, base = data["ipv6"]["median"], data[other]["median"]
        ratios["ipv6/" + other] = round(ours / base, 3) if ours and base else None
    bar_ratio = ratios["%s/%s" % BAR[:2]]
    passed = not failures and bar_ratio is not None and bar_ratio <= BAR[2]
    result = {
        "bench": "ipv6",
        "what": "seconds from QEMU start to the installer's agent exit 0 after phone-home, OVMF PXE (lower is better)",
        "args": {"rounds": rounds, "timeout": args.timeout, "quick": args.quick},
        "anchor": "the same server and firmware over IPv4 (ipv4-only: single stack; ipv4: the lab's dual-stack segment)",
        "bar": {"ratio": "%s/%s" % BAR[:2], "max": BAR[2]},
        "names": list(VARIANTS),
        "results": data,
        "ratios": ratios,
        "failures": failures,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "cpus": os.cpu_count(),
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "pass": passed,
    }
    _common.save_json(args.json, result)
    for variant in VARIANTS:
        entry = data[variant]
        print("%-9s median %s s (DHCP answer %s, iPXE loaded %s, script %s, initrd %s)" % (
            variant, e2e._round(entry["median"]), e2e._round(entry["median_dhcp_answered"]), e2e._round(entry["median_ipxe_loaded"]),
            e2e._round(entry["median_script"]), e2e._round(entry["median_initrd"])))
    print("ratios %s (bar %s/%s <= %.1f)" % (ratios, BAR[0], BAR[1], BAR[2]))
    print("%s -> %s" % ("PASS" if passed else "FAIL", args.json))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
