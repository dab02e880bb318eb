# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-machine bench: a rack of simulated machines booting end to end, nixie.metal vs dnsmasq + nginx.

    python bench/machines.py                          # 200 machines, 2 MiB kernel, 6 MiB initrd, 3 rounds
    python bench/machines.py --full                   # 200 machines, 16 MiB kernel, 800 MiB initrd, 1 round
    python bench/machines.py --quick                  # 40 machines, 1 + 2 MiB, 1 round (CI)
    python bench/machines.py --machines 100 --kernel-mib 8 --initrd-mib 64 --spread 10
    python bench/machines.py --servers ours --peer-check both --rounds 5   # the trust check's cost

Each simulated machine (bench/_simclient.py ``machine``) does what OVMF and
the iPXE it loads do on the wire, with real protocols against the real
server: DHCPDISCOVER (OVMF's own frame, from a capture) -> proxy offer, the
broadcast REQUEST of its address, OVMF's request to port 4011 -> boot file;
TFTP of that iPXE binary (the real /usr/lib/ipxe/ipxe.efi) with OVMF's tsize
probe then blksize 1468 + windowsize 4; iPXE's DISCOVER and 4011 request ->
script URL; HTTP GET of the script, kernel and initrd (sizes and SHA-256
checked); a boot delay; POST phone-home with the token from its kernel
command line. Jitter: machines power on spread over --spread seconds, wait
up to --step-jitter between firmware steps, and "boot the kernel" for
--boot-min..--boot-max seconds. Retransmission schedules are the firmware's
(PXE: DISCOVER after 4, 8, 16, 32 s; iPXE: 1, 2, 4, 8 s).

Each machine is its own NIC on the link (a macvlan with its MAC and address,
bench/_simnet.py), so the server's neighbour table maps each machine's
address to its own MAC and our server's trust check (pxe_server's
``peer_check``, on by default) lets it in as it would a real machine. After
every round the bench reads that table (``ip neigh`` in the server's
namespace) and our server's result: every address must map to its
machine's MAC, and with the check on every phone-home must have been
checked against it and nothing refused; else the round fails.
``--peer-check off`` runs ours without the check; ``both`` runs ours twice
per round, check on and off in alternating order, and reports on/off ratios.

Ours runs as the pxe_server module runs it (plan + run; it stops by itself
when every machine phoned home) in a private namespace pinned to one CPU;
the machines share the other CPU (bench/_simnet.py). The anchor, same run,
same CPUs: dnsmasq 2.90 (proxy DHCP + TFTP) and nginx (one worker,
sendfile; a static script using ${net0/mac}; `return 200` for phone-home).
Figures: completion (first power-on to last phone-home answered), slowest
machine (power-on to its phone-home), failed machines and their step,
retransmissions, server CPU seconds and peak RSS from the server's own
rusage (wait4). Bars (ours, small images): all machines done in < 30 s,
zero failed, peak RSS < 300 MiB. Medians over rounds. Needs root.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
import _common  # noqa: E402
import _simclient  # noqa: E402
import _simnet  # noqa: E402

SERVERS = ("anchor", "ours")
FIGURES = ("completion_s", "slowest_machine_s", "failed", "retransmissions", "tftp_timeouts", "server_cpu_s", "server_peak_rss_mib")
BAR_SECONDS = 30.0
BAR_RSS_MIB = 300.0
HASH_LIMIT = 64 << 20  # bodies larger than this are checked by size only (hashing 160 GB would time the client)


# ------------------------------------------------------------------ client side (client namespace)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


async def client_run(args, plan):
    link = _simclient.RawLink(_simnet.CLIENT_IF)
    sinks = []
    for port in (68, 4011):  # the machines' stacks take the unicast answers (no ICMP unreachable back)
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sink.bind(("0.0.0.0", port))
        sinks.append(sink)
    mux = _simclient.DhcpMux(link, _simnet.SERVER_IP)
    templates = _simclient.firmware_templates()
    server_mac = bytes.fromhex(plan["server_mac"].replace(":", ""))
    expected = {name: tuple(value) for name, value in plan["expected"].items()}
    rng = random.Random(plan["seed"])
    specs = [_simclient.MachineSpec(index, _simnet.machine_mac(index), _simnet.machine_ip(index), _simnet.SERVER_IP, server_mac,
                                    templates, rng.uniform(0, args.spread), rng.uniform(args.boot_min, args.boot_max),
                                    args.step_jitter, expected, rng.getrandbits(32), device=_simnet.machine_if(index))
             for index in range(args.machines)]
    clock = asyncio.get_running_loop().time
    began = clock()
    records = await asyncio.gather(*(_simclient.machine(mux, spec, clock) for spec in specs))
    mux.close()
    link.close()
    for sink in sinks:
        sink.close()
    done = [r for r in records if r["ok"]]
    failed = [r for r in records if not r["ok"]]
    first_start = min(r["start"] for r in records)
    slowest = max(records, key=lambda r: r["seconds"])
    steps = {}
    for record in done:
        marks = sorted(record["marks"].items(), key=lambda item: item[1])
        for (name, at), (dummy, after) in zip(marks, marks[1:]):
            steps.setdefault(name, []).append(after - at)
    return {
        "machines": len(records), "done": len(done), "failed": len(failed),
        "failures": [{"index": r["index"], "error": r["error"]} for r in failed][:20],
        "completion_s": round(max(r["end"] for r in done) - first_start, 3) if done else None,
        "client_wall_s": round(clock() - began, 3),
        "slowest_machine_s": slowest["seconds"], "slowest_machine": slowest["index"], "slowest_marks": slowest["marks"],
        "machine_s": {"p50": round(statistics.median([r["seconds"] for r in done]), 3) if done else None,
                      "p99": _simclient.percentile([r["seconds"] for r in done], 0.99)},
        "retransmissions": sum(r["retransmissions"] for r in records),
        "tftp_timeouts": sum(r["tftp_timeouts"] for r in records),
        "tftp_windowsize": sorted({r.get("tftp_windowsize") for r in done}),
        "bytes": sum(r["bytes"] for r in records),
        "step_median_s": {name: round(statistics.median(values), 4) for name, values in steps.items()},
        "step_max_s": {name: round(max(values), 4) for name, values in steps.items()},
    }


def client_main(args):
    with open(args.plan, encoding="utf-8") as handle:
        plan = json.load(handle)
    json.dump(asyncio.run(client_run(args, plan)), sys.stdout)
    return 0


# ------------------------------------------------------------------ orchestration


CLIENT_OPTIONS = ("machines", "spread", "boot_min", "boot_max", "step_jitter")


def run_client(rack, args, plan_path):
    argv = [sys.executable, os.path.abspath(__file__), "--client", "--plan", plan_path]
    for name in CLIENT_OPTIONS:
        argv += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    out = subprocess.run(rack.wrap(argv, rack.cli, rack.client_cpus), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError("machines client failed:\n%s" % out.stderr[-3000:])
    return json.loads(out.stdout)


def server_round(rack, name, workdir, args, plan_path, peer_check=None):
    """One server's round; ``peer_check`` is our server's option (None: the anchor)."""
    kernel, initrd = os.path.join(workdir, "kernel"), os.path.join(workdir, "initrd")
    if peer_check is not None:
        servers = [_simnet.start_ours(rack, workdir, args.machines, kernel, initrd, linger=0.5, tag=name, peer_check=peer_check)]
    else:
        servers = [_simnet.start_dnsmasq(rack, workdir), _simnet.start_nginx(rack, workdir, kernel, initrd)]
    try:
        result = run_client(rack, args, plan_path)
        if peer_check is not None:
            servers[0].wait(30)  # every machine phoned home: it stops by itself after its linger
    finally:
        usages = {server.name: server.stop() for server in servers}
    result["usage"] = usages
    result["server_cpu_s"] = round(sum(u["cpu_s"] for u in usages.values()), 3)
    result["server_peak_rss_mib"] = round(sum(u["peak_rss_mib"] for u in usages.values()), 1)
    result["neighbours"] = rack.neighbours()
    result["problems"] = ["%d addresses map to another MAC in the server's neighbour table: %s"
                          % (result["neighbours"]["wrong"], result["neighbours"]["wrong_first"])] if result["neighbours"]["wrong"] else []
    if peer_check is not None:
        result["peer_check"] = peer_check
        result["server"] = _simnet.read_result(servers[0])
        if result["done"] == args.machines:
            result["problems"] += _simnet.check_outcome(result["server"], args.machines, peer_check)
    print("  %-14s %d/%d done in %s s (slowest machine %s s, p50 %s s), failed %d, retransmissions %d, TFTP timeouts %d, "
          "server CPU %s s, peak RSS %s MiB" % (name, result["done"], result["machines"], result["completion_s"],
                                                result["slowest_machine_s"], result["machine_s"]["p50"], result["failed"],
                                                result["retransmissions"], result["tftp_timeouts"], result["server_cpu_s"],
                                                result["server_peak_rss_mib"]), flush=True)
    if result["failures"]:
        print("    failures: %s" % result["failures"][:5], flush=True)
    for problem in result["problems"]:
        print("    problem: %s" % problem, flush=True)
    return result


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def peer_check_cost(rounds):
    """Our server with the check on against off, per figure: the medians over rounds, their ratio, and each round's ratio."""
    cost = {"pairs": len(rounds)}
    for key in ("completion_s", "slowest_machine_s", "server_cpu_s"):
        on = median([r["ours"][key] for r in rounds])
        off = median([r[_simnet.UNCHECKED][key] for r in rounds])
        each = [round(r["ours"][key] / r[_simnet.UNCHECKED][key], 3) for r in rounds
                if r["ours"][key] and r[_simnet.UNCHECKED][key]]
        cost[key] = {"on": on, "off": off, "ratio": round(on / off, 3) if on and off else None, "ratio_per_round": each,
                     "median_ratio_per_round": round(statistics.median(each), 3) if each else None}
    return cost


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--kernel-mib", type=float, default=2.0)
    parser.add_argument("--initrd-mib", type=float, default=6.0)
    parser.add_argument("--spread", type=float, default=3.0, help="power-on spread, s (default %(default)s)")
    parser.add_argument("--boot-min", type=float, default=0.5, help="kernel boot to agent, min s")
    parser.add_argument("--boot-max", type=float, default=2.0, help="kernel boot to agent, max s")
    parser.add_argument("--step-jitter", type=float, default=0.05, help="max pause between firmware steps, s")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default=",".join(SERVERS), help="anchor,ours (default) or one of them")
    _simnet.add_peer_check_option(parser)
    parser.add_argument("--full", action="store_true", help="16 MiB kernel, 800 MiB initrd, 1 round")
    parser.add_argument("--quick", action="store_true", help="40 machines, 1 + 2 MiB, 1 round (CI)")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--json", default=os.path.join(_common.RESULTS, "machines.json"))
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return client_main(args)
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, raw sockets, ports 67/69)")
    if args.full:
        args.kernel_mib, args.initrd_mib, args.rounds = 16.0, 800.0, 1
    if args.quick:
        args.machines, args.kernel_mib, args.initrd_mib, args.rounds = 40, 1.0, 2.0, 1
    servers = [name for name in args.servers.split(",") if name]
    if set(servers) - set(SERVERS) or not servers:
        parser.error("--servers takes anchor and/or ours, comma-separated; got %s" % args.servers)
    checks = dict(_simnet.our_variants(args.peer_check)) if "ours" in servers else {}
    servers = [name for name in servers if name != "ours"] + list(checks)
    workdir = tempfile.mkdtemp(prefix="nixie-machines-")
    os.chmod(workdir, 0o755)
    kernel = _simnet.make_file(os.path.join(workdir, "kernel"), int(args.kernel_mib * (1 << 20)), 1)
    initrd = _simnet.make_file(os.path.join(workdir, "initrd"), int(args.initrd_mib * (1 << 20)), 2)
    ipxe = os.path.join(_simnet.IPXE_DIR, "ipxe.efi")
    expected = {"ipxe.efi": (os.path.getsize(ipxe), sha256_of(ipxe))}
    for name, path in (("kernel", kernel), ("initrd", initrd)):
        size = os.path.getsize(path)
        expected[name] = (size, sha256_of(path) if size <= HASH_LIMIT else None)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    load_before = os.getloadavg()
    rounds = []
    try:
        with _simnet.Rack(args.machines, "mach") as rack:
            server_mac = json.loads(rack.run(["ip", "-j", "link", "show", _simnet.SERVER_IF], rack.srv).stdout)[0]["address"]
            print("%d machines, kernel %g MiB, initrd %g MiB, power-on spread %g s, boot %g-%g s; server CPU %s, clients CPU %s"
                  % (args.machines, args.kernel_mib, args.initrd_mib, args.spread, args.boot_min, args.boot_max,
                     rack.server_cpus, rack.client_cpus), flush=True)
            for number in range(args.rounds):
                plan_path = os.path.join(workdir, "plan-%d.json" % number)
                with open(plan_path, "w", encoding="utf-8") as handle:
                    json.dump({"server_mac": server_mac, "expected": expected, "seed": args.seed + number}, handle)
                order = servers if number % 2 == 0 else list(reversed(servers))
                print("round %d (load average %.2f)" % (number + 1, os.getloadavg()[0]), flush=True)
                rounds.append({name: server_round(rack, name, workdir, args, plan_path, checks.get(name)) for name in order})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    figures = {name: {key: median([r[name][key] for r in rounds]) for key in FIGURES} for name in servers}
    for name, check in checks.items():
        figures[name]["peer_check"] = check
    problems = ["round %d, %s: %s" % (number + 1, name, problem) for number, each in enumerate(rounds)
                for name in servers for problem in each[name]["problems"]]
    passed = None
    if "ours" in servers:
        ours = figures["ours"]
        every_round_clean = all(r[name]["failed"] == 0 and r[name]["done"] == args.machines for r in rounds for name in checks)
        every_round_clean = every_round_clean and not problems
        # The time bar is for the default small images; with --full (or other sizes) only failures count.
        small = args.kernel_mib <= 4 and args.initrd_mib <= 16
        passed = every_round_clean and ours["server_peak_rss_mib"] < BAR_RSS_MIB
        if small:
            passed = passed and ours["completion_s"] is not None and ours["completion_s"] < BAR_SECONDS
    ratio = None
    if "ours" in servers and "anchor" in servers and figures["ours"]["completion_s"] and figures["anchor"]["completion_s"]:
        ratio = round(figures["ours"]["completion_s"] / figures["anchor"]["completion_s"], 3)
    check_cost = peer_check_cost(rounds) if _simnet.UNCHECKED in servers else None
    recorded = ("machines", "kernel_mib", "initrd_mib", "spread", "boot_min", "boot_max", "step_jitter", "rounds", "full", "quick", "seed",
                "peer_check")
    result = {"bench": "machines", "args": {key: getattr(args, key) for key in recorded},
              "anchor": "dnsmasq (proxy DHCP + TFTP) + nginx (1 worker, sendfile)", "servers": servers, "figures": figures,
              "ratio_completion_ours_over_anchor": ratio, "peer_check_cost": check_cost, "problems": problems,
              "bars": {"completion_s": BAR_SECONDS, "failed": 0, "peak_rss_mib": BAR_RSS_MIB,
                       "completion_bar_applies": args.kernel_mib <= 4 and args.initrd_mib <= 16},
              "rounds": rounds, "load_average": {"before": load_before, "after": os.getloadavg()}, "started": started,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "pass": passed}
    _common.save_json(args.json, result)
    for name in servers:
        print("median %-14s completion %s s, slowest %s s, failed %s, server CPU %s s, peak RSS %s MiB" % (
            name, figures[name]["completion_s"], figures[name]["slowest_machine_s"], figures[name]["failed"],
            figures[name]["server_cpu_s"], figures[name]["server_peak_rss_mib"]))
    if check_cost:
        print("trust check on/off over %d pairs, ratio of medians (median of the rounds' ratios): completion %s (%s), "
              "slowest machine %s (%s), server CPU %s (%s)" % tuple([check_cost["pairs"]] + [
                  check_cost[key][which] for key in ("completion_s", "slowest_machine_s", "server_cpu_s")
                  for which in ("ratio", "median_ratio_per_round")]))
    print("ours/anchor completion %s; bars: %s0 failed, < %g MiB -> %s (%s)" % (
        ratio, "< %g s (small images), " % BAR_SECONDS if args.kernel_mib <= 4 and args.initrd_mib <= 16 else "",
        BAR_RSS_MIB, {True: "PASS", False: "FAIL", None: "no bar"}[passed], args.json))
    return 0 if passed is not False else 1


if __name__ == "__main__":
    sys.exit(main())
