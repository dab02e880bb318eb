# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

# End-to-end bench: real firmware under QEMU (TCG) boots the lab installer
# through nixie.metal's server and through the anchor (dnsmasq as proxyDHCP +
# TFTP, with tests/lab's HTTP stub), in the same run, alternating which goes
# first. The figure is the time from QEMU start to the installer's agent
# exiting 0 after its phone-home (serial marker "NIXIE-LAB: agent exit 0").
# Needs root, QEMU, OVMF, iPXE and dnsmasq (see tests/lab/README.md).
#
#   python bench/e2e.py                      # 3 rounds of ovmf-pxe and seabios-ipxe
#   python bench/e2e.py --quick              # 1 round
#   python bench/e2e.py --rounds 5 --kinds ovmf-pxe --capture /tmp/pcaps
#
# Bar: ovmf-pxe (OVMF's own PXE -> TFTP ipxe.efi -> iPXE -> HTTP -> installer)
# median ours / median dnsmasq <= 1.15. seabios-ipxe is reported, no bar.
# Exit 1 if a bar is missed or a boot failed.

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
import _common  # noqa: E402

# bench/http.py would shadow the standard library's http package (aiohttp, urllib need it).
sys.path[:] = [path for path in sys.path if os.path.abspath(path or ".") != BENCH_DIR]

LAB_DIR = os.path.join(_common.REPO, "tests", "lab")
AGENT = os.path.join(_common.REPO, "nix", "agent", "nixie-agent")
BARS = {"ovmf-pxe": 1.15}
KINDS = ("ovmf-pxe", "seabios-ipxe")
VARIANTS = ("dnsmasq", "ours")
MAC = "52:54:00:12:34:01"
AGENT_EXIT = r"NIXIE-LAB: agent exit 0"


# ------------------------------------------------------------------ our server, in the lab namespace


def serve(params_path, events_path):
    """Run nixie.metal's server as the pxe_server module does (plan + run); one JSON line per event."""
    _common.use_collection()
    from ansible_collections.nixie.metal.plugins.module_utils import _pxe_server  # pylint: disable=import-outside-toplevel

    with open(params_path, encoding="utf-8") as handle:
        params = json.load(handle)
    with open(events_path, "w", encoding="utf-8") as events:
        def progress(event):
            events.write(json.dumps(event) + "\n")
            events.flush()
        options = _pxe_server.plan(params)
        result = _pxe_server.run(options, params["run_dir"], on_progress=progress)
        events.write(json.dumps({"event": "result", "stop_reason": result.get("stop_reason")}) + "\n")
    return 0


def start_ours(lab, inst, timeout=30.0, mac=MAC, health_host=None):
    """Our server for one machine, ready once its health endpoint answers at ``health_host`` (the lab's address)."""
    hosts = lab.workdir / "hosts.json"
    hosts.write_text(json.dumps({"vm1": {"mac_address": mac}}), encoding="utf-8")
    params = {"hosts_file": str(hosts), "kernel": str(inst.kernel), "initrd": str(inst.initrd),
              "cmdline": inst.cmdline(), "interface": lab.bridge, "run_dir": str(lab.workdir / "run"),
              "max_duration": 600, "linger": 1}
    params_path = lab.workdir / "params.json"
    params_path.write_text(json.dumps(params), encoding="utf-8")
    events_path = lab.workdir / "events.jsonl"
    with open(lab.workdir / "server.log", "wb") as log:
        proc = lab.popen([sys.executable, os.path.abspath(__file__), "--serve", str(params_path), str(events_path)],
                         stdout=log, stderr=subprocess.STDOUT)
    url = "http://%s:8080/api/v1/health" % (health_host or lab.controller_ip)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("our server exited early:\n" + (lab.workdir / "server.log").read_text(errors="replace")[-3000:])
        if lab.run(["curl", "-sfg", "-o", "/dev/null", url], check=False).returncode == 0:
            return events_path
        time.sleep(0.2)
    raise RuntimeError("our server did not answer %s in %gs" % (url, timeout))


# ------------------------------------------------------------------ milestones (seconds after QEMU start)


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def milestones_ours(events, t0):
    first = {}
    for event in events:
        name = event.get("event")
        if name in ("offered", "script_offered", "boot_file_acked", "ipxe_served", "script_served",
                    "kernel_served", "initrd_served", "phoned_home") and name not in first:
            first[name] = round(event["time"] - t0, 3)
    return {
        "dhcp_answered": first.get("offered", first.get("script_offered")),
        "ipxe_loaded": first.get("ipxe_served"),
        "script": first.get("script_served"),
        "initrd": first.get("initrd_served"),
        "phone_home": first.get("phoned_home"),
    }


def milestones_dnsmasq(requests, t0):
    def first(fragment):
        for record in requests:
            if fragment in (record.get("path") or ""):
                return round(record["t"] - t0, 3)
        return None
    return {
        "dhcp_answered": None,
        "ipxe_loaded": None,
        "script": first(".ipxe"),
        "initrd": first("/initrd"),
        "phone_home": first("/api/v1/phone-home"),
    }


# ------------------------------------------------------------------ one boot


def boot(kind, variant, inst, timeout, capture_dir, tag):
    from nixielab.net import Lab  # pylint: disable=import-outside-toplevel
    from nixielab.services import HttpStub, start_proxy_dnsmasq  # pylint: disable=import-outside-toplevel
    from nixielab.vm import VM  # pylint: disable=import-outside-toplevel

    with Lab() as lab:
        stub = events_path = None
        if variant == "dnsmasq":
            stub = HttpStub(lab, inst)
            start_proxy_dnsmasq(lab)
        else:
            events_path = start_ours(lab, inst)
        capture = None
        if capture_dir:
            capture = lab.capture(lab.workdir / "boot.pcap").start()
        try:
            t0 = time.time()
            vm = VM(lab, kind, mac=MAC).start()
            vm.wait_for(AGENT_EXIT, timeout=timeout)
            elapsed = vm.elapsed
            time.sleep(0.3)  # let the last server-side record land
        finally:
            if capture is not None:
                capture.stop()
                os.makedirs(capture_dir, exist_ok=True)
                stem = os.path.join(capture_dir, "%s-%s-%s" % (kind, variant, tag))
                shutil.copy(lab.workdir / "boot.pcap", stem + ".pcap")
                shutil.copy(vm.serial_log, stem + ".serial.log")
        if variant == "dnsmasq":
            marks = milestones_dnsmasq(stub.requests(), t0)
        else:
            marks = milestones_ours(read_jsonl(events_path), t0)
        # The guest's own clock at the agent's exit: the kernel + installer part of the
        # time; the rest of the kernel stage is iPXE handing over and the EFI stub/decompressor.
        uptime = re.search(r"NIXIE-LAB: agent exit 0 \(t=([0-9.]+)s\)", vm.serial())
        marks["guest_uptime"] = float(uptime.group(1)) if uptime else None
        return round(elapsed, 3), marks


# ------------------------------------------------------------------ main


def median(values):
    return statistics.median(values) if values else None


def _round(value):
    return round(value, 3) if value is not None else None


def main():
    parser = argparse.ArgumentParser(description="QEMU end-to-end boot: nixie.metal vs dnsmasq + HttpStub")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 round")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated VM kinds (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per boot before calling it failed")
    parser.add_argument("--capture", metavar="DIR", help="keep a pcap of every boot in DIR")
    parser.add_argument("--json", default=os.path.join(_common.RESULTS, "e2e.json"), help="result file (default %(default)s)")
    parser.add_argument("--serve", nargs=2, metavar=("PARAMS", "EVENTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(*args.serve)
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, taps)")
    rounds = 1 if args.quick else args.rounds
    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]

    sys.path.insert(0, LAB_DIR)
    from nixielab import installer  # pylint: disable=import-outside-toplevel
    inst = installer.build(AGENT if os.path.exists(AGENT) else installer.default_agent())

    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    load_before = os.getloadavg()
    data = {kind: {variant: {"all": [], "milestones": []} for variant in VARIANTS} for kind in kinds}
    failures = {variant: [] for variant in VARIANTS}
    for number in range(rounds):
        for kind in kinds:
            # Alternate which server goes first, so a slow minute hurts both.
            order = VARIANTS if number % 2 == 0 else tuple(reversed(VARIANTS))
            for variant in order:
                tag = "r%d" % (number + 1)
                try:
                    elapsed, marks = boot(kind, variant, inst, args.timeout, args.capture, tag)
                except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
                    failures[variant].append({"kind": kind, "round": number + 1, "error": str(exc)[-2000:]})
                    print("%-12s %-7s round %d FAILED: %s" % (kind, variant, number + 1, str(exc).splitlines()[0]), flush=True)
                    continue
                data[kind][variant]["all"].append(elapsed)
                data[kind][variant]["milestones"].append(marks)
                print("%-12s %-7s round %d: %6.2f s to phone-home  %s" % (kind, variant, number + 1, elapsed,
                      " ".join("%s=%s" % item for item in marks.items() if item[1] is not None)), flush=True)

    ratios = {}
    passed = not any(failures.values())
    for kind in kinds:
        for variant in VARIANTS:
            entry = data[kind][variant]
            entry["median"] = median(entry["all"])
            # Where the time went: up to the initrd (firmware, DHCP, TFTP, iPXE, HTTP: what a
            # server can change) and after it (iPXE handing over, the kernel, the installer's
            # DHCP and agent: no server involved, and where nearly all run-to-run spread is).
            entry["median_to_initrd"] = median([m["initrd"] for m in entry["milestones"] if m.get("initrd") is not None])
            entry["median_initrd_to_phone_home"] = median([m["phone_home"] - m["initrd"] for m in entry["milestones"]
                                                           if m.get("initrd") is not None and m.get("phone_home") is not None])
        anchor, ours = data[kind]["dnsmasq"]["median"], data[kind]["ours"]["median"]
        ratios[kind] = round(ours / anchor, 3) if anchor and ours else None
        limit = BARS.get(kind)
        if limit is not None and (ratios[kind] is None or ratios[kind] > limit):
            passed = False
    result = {
        "bench": "e2e",
        "what": "seconds from QEMU start to the installer's agent exit 0 after phone-home (lower is better)",
        "args": {"rounds": rounds, "kinds": kinds, "timeout": args.timeout, "quick": args.quick},
        "anchor": "dnsmasq proxyDHCP + TFTP with tests/lab HttpStub",
        "bars": BARS,
        "names": list(VARIANTS),
        "results": data,
        "ratios_ours_over_dnsmasq": ratios,
        "failures": failures,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "cpus": os.cpu_count(),
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "pass": passed,
    }
    _common.save_json(args.json, result)
    for kind in kinds:
        limit = BARS.get(kind)
        print("%-12s median dnsmasq %s s, ours %s s, ours/dnsmasq %s (bar %s)" % (
            kind, _round(data[kind]["dnsmasq"]["median"]), _round(data[kind]["ours"]["median"]), ratios[kind],
            "<= %.2f" % limit if limit else "none"))
        print("%-12s   to initrd: dnsmasq %s s, ours %s s; initrd to phone-home: dnsmasq %s s, ours %s s" % (
            "", _round(data[kind]["dnsmasq"]["median_to_initrd"]), _round(data[kind]["ours"]["median_to_initrd"]),
            _round(data[kind]["dnsmasq"]["median_initrd_to_phone_home"]), _round(data[kind]["ours"]["median_initrd_to_phone_home"])))
    print("%s -> %s" % ("PASS" if passed else "FAIL", args.json))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
