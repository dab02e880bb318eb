# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Agent API bench: a rack's installers phoning home at once while every wait_for_agent long-polls.

    python bench/agent_api.py                 # 1,000 hosts, 3 rounds
    python bench/agent_api.py --quick         # 200 hosts, 1 round (CI)
    python bench/agent_api.py --servers ours --peer-check both --rounds 5   # the trust check's cost

Our server runs as the pxe_server module runs it (plan + run) with N hosts,
in a private namespace pinned to one CPU (bench/_simnet.py); the clients run
in a second namespace on the other CPU, each host from its own address on
its own interface with its own MAC (a macvlan), so our server's trust check
(pxe_server's ``peer_check``, on by default) finds each host's MAC in its
neighbour table, as on a rack. ``--peer-check off`` runs ours without the
check; ``both`` runs ours twice per round, check on and off in alternating
order, and reports on/off ratios. After each round the bench reads the
server's neighbour table (every address must map to its host's MAC) and our
server's result (with the check on, every phone-home checked against its
host's MAC, nothing refused); a round that shows otherwise fails the bench.
Untimed setup: each host fetches its iPXE script (the only place its token
leaves the server). Then, as wait_for_agent does, each host's long-poll
``GET /api/v1/hosts/<mac>?wait=..&after=<last_seq>`` is opened and left
waiting, and all N agents POST ``/api/v1/phone-home`` (Bearer token, the
agent's JSON report) at the same instant, each on a new connection, as the
agent's wget/curl does. Measured per host: phone-home latency (connect to
whole answer) and the delay from the phone-home's start to its long-poll's
answer (what wait_for_agent waits for). Every phone-home must be 200 and
every long-poll must answer ``phoned_home`` before its wait runs out.

Anchor, same run, same client, same CPUs: nginx (one worker, `return 200`
for the same POSTs): the floor of this machine and client for N concurrent
connections. Bar (ours): all N succeed and the phone-home p99 < 200 ms.
Figures are medians over the rounds. Exit 1 when a bar is missed. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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

SERVERS = ("nginx", "ours")
P99_BAR_MS = 200.0
API = "http://%s:%d/api/v1" % (_simnet.SERVER_IP, _simnet.HTTP_PORT)
BASE = "http://%s:%d" % (_simnet.SERVER_IP, _simnet.HTTP_PORT)


# ------------------------------------------------------------------ client side (client namespace)


def report_for(index):
    """The report the agent would build for host ``index``."""
    mac = _simnet.machine_mac(index)
    return json.dumps({"mac": mac, "addresses": [{"ifname": "eth0", "mac": mac, "address": _simnet.machine_ip(index), "prefix": 16}],
                       "ssh_host_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI%040d" % index], "hostname": "nixos",
                       "uptime": 4.2}).encode()


def tokens_of(count):
    """Each host's token, from its iPXE script (as its kernel command line would carry it)."""
    tokens = []
    for first in range(0, count, 100):
        burst = _simclient.HttpBurst()
        keys = list(range(first, min(count, first + 100)))
        for index in keys:
            burst.start(index, _simnet.machine_ip(index), "%s/boot/%s/script.ipxe" % (BASE, _simnet.machine_mac(index)),
                        device=_simnet.machine_if(index))
        burst.run(keys)
        burst.close()
        for index in keys:
            script = burst.results[index]
            if script["status"] != 200:
                raise RuntimeError("script of host %d: %s %s" % (index, script["status"], script["error"]))
            tokens.append([w for w in script["body"].decode().split() if w.startswith("nixie.token=")][0].split("=", 1)[1])
    return tokens


def last_seqs():
    burst = _simclient.HttpBurst()
    burst.start("hosts", None, API + "/hosts")
    burst.run(["hosts"])
    burst.close()
    return {host["mac"]: host["last_seq"] for host in json.loads(burst.results["hosts"]["body"])["hosts"]}


def client_run(args):
    count = args.hosts
    burst = _simclient.HttpBurst()
    polls = []
    early = 0
    scripts_cpu = None
    if args.server == "ours":
        cpu_before = _common.tree_cpu(args.server_pid)
        tokens = tokens_of(count)
        cpu_after = _common.tree_cpu(args.server_pid)
        scripts_cpu = round(cpu_after - cpu_before, 3) if cpu_before is not None and cpu_after is not None else None
        last = last_seqs()
        for index in range(count if args.long_polls else 0):
            mac = _simnet.machine_mac(index)
            burst.start(("poll", index), _simnet.machine_ip(index), "%s/hosts/%s?wait=%g&after=%d" % (API, mac, args.wait, last[mac]),
                        device=_simnet.machine_if(index))
            polls.append(("poll", index))
        burst.run(seconds=args.settle)  # every long-poll connected and waiting
        early = sum(1 for key in polls if burst.results[key]["end"] is not None)
    else:
        tokens = ["anchor-token-%04d" % i for i in range(count)]
    bodies = [report_for(i) for i in range(count)]
    headers = [{"Authorization": "Bearer " + tokens[i], "Content-Type": "application/json"} for i in range(count)]
    phones = [("phone", i) for i in range(count)]
    cpu_before, queued_before = _common.tree_cpu(args.server_pid), _common.tree_run_queue_wait(args.server_pid)
    began = time.perf_counter()
    for index in range(count):
        if args.spread:  # installers phoning home one after the other over --spread seconds
            burst.run(seconds=max(0.0, began + args.spread * index / count - time.perf_counter()))
        burst.start(("phone", index), _simnet.machine_ip(index), API + "/phone-home", "POST", headers[index], bodies[index],
                    device=_simnet.machine_if(index))
    burst.run(phones + polls, timeout=args.wait + 30)
    cpu_after, queued_after = _common.tree_cpu(args.server_pid), _common.tree_run_queue_wait(args.server_pid)
    burst.close()
    results = burst.results
    ok = [results[key] for key in phones if results[key]["status"] == 200]
    latencies = [(p["end"] - p["start"]) * 1000.0 for p in ok]
    result = {"hosts": count, "phone_homes_ok": len(ok),
              "phone_home_failures": sorted({"%s %s" % (results[k]["status"], results[k]["error"]) for k in phones
                                             if results[k]["status"] != 200})[:10],
              "phone_home_ms": summary(latencies),
              "server_cpu_phone_home_s": round(cpu_after - cpu_before, 3) if cpu_before is not None and cpu_after is not None else None,
              "server_cpu_scripts_s": scripts_cpu,
              "server_waiting_for_cpu_s": round(queued_after - queued_before, 3) if queued_before is not None and queued_after is not None else None,
              "wall_ms": round((max(results[k]["end"] for k in phones) - min(results[k]["start"] for k in phones)) * 1000.0, 1)}
    if polls:
        delivered, wrong = [], []
        for key in polls:
            answer = results[key]
            body = json.loads(answer["body"]) if answer["status"] == 200 and answer["body"] else {}
            host = body.get("host") or {}
            if host.get("state") == "phoned_home" and not body.get("timed_out"):
                delivered.append((answer["end"] - results[("phone", key[1])]["start"]) * 1000.0)
            else:
                wrong.append("%s %s %s" % (answer["status"], host.get("state"), answer["error"]))
        result.update({"long_polls_answered": len(delivered), "long_polls_early": early,
                       "long_poll_failures": sorted(set(wrong))[:10], "long_poll_delivery_ms": summary(delivered)})
    return result


def summary(values):
    return {"p50": _round(_simclient.percentile(values, 0.5)), "p99": _round(_simclient.percentile(values, 0.99)),
            "max": _round(max(values) if values else None)}


def _round(value):
    return None if value is None else round(value, 2)


def client_main(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 2 sockets per host
    json.dump(client_run(args), sys.stdout)
    return 0


# ------------------------------------------------------------------ orchestration


def run_client(rack, name, args, server_pid):
    argv = [sys.executable, os.path.abspath(__file__), "--client", "--server", name, "--server-pid", str(server_pid), "--hosts", str(args.hosts),
            "--wait", str(args.wait), "--settle", str(args.settle), "--spread", str(args.spread)]
    if not args.long_polls:
        argv.append("--no-long-polls")
    out = subprocess.run(rack.wrap(argv, rack.cli, rack.client_cpus), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError("client against %s failed:\n%s" % (name, out.stderr[-3000:]))
    return json.loads(out.stdout)


def server_round(rack, name, workdir, args, peer_check=None):
    """One server's round; ``peer_check`` is our server's option (None: nginx)."""
    if peer_check is not None:
        server = _simnet.start_ours(rack, workdir, args.hosts, workdir + "/kernel", workdir + "/initrd", linger=300, tag=name,
                                    peer_check=peer_check)
    else:
        server = _simnet.start_nginx(rack, workdir, workdir + "/kernel", workdir + "/initrd")
    try:
        cpu_before, tcp_before = server.cpu_now(), listen_counters(rack)
        result = run_client(rack, "nginx" if peer_check is None else "ours", args, server.proc.pid)
        cpu_after, tcp_after = server.cpu_now(), listen_counters(rack)
        result["server_cpu_s"] = round(cpu_after - cpu_before, 3) if cpu_before is not None and cpu_after is not None else None
        result["listen_queue"] = {key: tcp_after[key] - tcp_before.get(key, 0) for key in tcp_after}
    finally:
        result_usage = server.stop()
    result["usage"] = result_usage
    result["neighbours"] = rack.neighbours()
    result["problems"] = ["%d addresses map to another MAC in the server's neighbour table: %s"
                          % (result["neighbours"]["wrong"], result["neighbours"]["wrong_first"])] if result["neighbours"]["wrong"] else []
    if peer_check is not None:
        summary = _simnet.read_result(server) or {}
        result["peer_check"] = peer_check
        result["server"] = summary
        result["server_counters"] = summary.get("counters")
        # The long-polls outlive the phone-homes only until the server stops: nothing is "done", so the
        # summary's states are not checked, only how each phone-home was judged.
        if result["phone_homes_ok"] == args.hosts:
            result["problems"] += _simnet.check_outcome(summary, args.hosts, peer_check)
    line = ("  %-14s phone-homes %d/%d ok, p50 %s p99 %s max %s ms, wall %s ms, server CPU %s s (scripts %s s, phone-homes %s s, "
            "waiting for a CPU %s s), peak RSS %s MiB") % (
        name, result["phone_homes_ok"], result["hosts"], result["phone_home_ms"]["p50"], result["phone_home_ms"]["p99"],
        result["phone_home_ms"]["max"], result["wall_ms"], result["server_cpu_s"], result.get("server_cpu_scripts_s"),
        result["server_cpu_phone_home_s"], result["server_waiting_for_cpu_s"], result_usage["peak_rss_mib"])
    if "long_polls_answered" in result:
        line += "; long-polls %d/%d answered, phone-home -> answer p50 %s p99 %s ms" % (
            result["long_polls_answered"], result["hosts"], result["long_poll_delivery_ms"]["p50"], result["long_poll_delivery_ms"]["p99"])
    print(line, flush=True)
    if any(result["listen_queue"].values()):
        print("    listen queue: %s" % result["listen_queue"], flush=True)
    if result.get("phone_home_failures") or result.get("long_poll_failures"):
        print("    failures: %s %s" % (result.get("phone_home_failures"), result.get("long_poll_failures")), flush=True)
    for problem in result["problems"]:
        print("    problem: %s" % problem, flush=True)
    return result


def listen_counters(rack):
    """The server namespace's TcpExt counters of connections its listen queue could not take."""
    text = rack.run(["cat", "/proc/net/netstat"], rack.srv, text=True).stdout.splitlines()
    for names, values in zip(text[::2], text[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], (int(v) for v in values.split()[1:])))
            return {key: table.get(key, 0) for key in ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "TCPReqQFullDoCookies")}
    return {}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def peer_check_cost(rounds):
    """Our server with the check on against off, per figure: the medians over rounds, their ratio, and each round's ratio."""
    cost = {"pairs": len(rounds)}
    figures = {"phone_home_p50_ms": lambda r: r["phone_home_ms"]["p50"], "phone_home_p99_ms": lambda r: r["phone_home_ms"]["p99"],
               "server_cpu_s": lambda r: r["server_cpu_s"], "server_cpu_phone_home_s": lambda r: r["server_cpu_phone_home_s"],
               "server_cpu_scripts_s": lambda r: r["server_cpu_scripts_s"],
               "wall_ms": lambda r: r["wall_ms"]}
    for key, read in figures.items():
        on = median([read(r["ours"]) for r in rounds])
        off = median([read(r[_simnet.UNCHECKED]) for r in rounds])
        each = [round(read(r["ours"]) / read(r[_simnet.UNCHECKED]), 3) for r in rounds
                if read(r["ours"]) and read(r[_simnet.UNCHECKED])]
        cost[key] = {"on": on, "off": off, "ratio": round(on / off, 3) if on and off else None, "ratio_per_round": each,
                     "median_ratio_per_round": round(statistics.median(each), 3) if each else None}
    return cost


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wait", type=float, default=25.0, help="long-poll wait, s (wait_for_agent's poll is 25 s)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds between opening the long-polls and the phone-homes")
    parser.add_argument("--no-long-polls", dest="long_polls", action="store_false",
                        help="phone-homes only, no long-poll waiting (shows what the long-polls cost)")
    parser.add_argument("--spread", type=float, default=0.0,
                        help="phone-homes spread evenly over this many seconds instead of all at once (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="200 hosts, 1 round (CI)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="nginx,ours (default) or one of them")
    _simnet.add_peer_check_option(parser)
    parser.add_argument("--json", default=os.path.join(_common.RESULTS, "agent_api.json"))
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--server", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return client_main(args)
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    if args.quick:
        args.hosts, args.rounds = 200, 1
    servers = [name for name in args.servers.split(",") if name]
    unknown = set(servers) - set(SERVERS)
    if unknown or "ours" not in servers:
        parser.error("--servers takes ours and optionally nginx, comma-separated; got %s" % args.servers)
    checks = dict(_simnet.our_variants(args.peer_check))
    servers = [name for name in servers if name != "ours"] + list(checks)
    workdir = tempfile.mkdtemp(prefix="nixie-agent-api-")
    os.chmod(workdir, 0o755)
    _simnet.make_file(workdir + "/kernel", 4096, 1)
    _simnet.make_file(workdir + "/initrd", 4096, 2)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    load_before = os.getloadavg()
    rounds = []
    with _simnet.Rack(args.hosts, "api") as rack:
        print("%d hosts; server CPU %s, clients CPU %s" % (args.hosts, rack.server_cpus, rack.client_cpus), flush=True)
        for number in range(args.rounds):
            order = servers if number % 2 == 0 else list(reversed(servers))
            print("round %d (load average %.2f)" % (number + 1, os.getloadavg()[0]), flush=True)
            rounds.append({name: server_round(rack, name, workdir, args, checks.get(name)) for name in order})
    figures = {name: {"phone_homes_ok": median([r[name]["phone_homes_ok"] for r in rounds]),
                      "phone_home_p50_ms": median([r[name]["phone_home_ms"]["p50"] for r in rounds]),
                      "phone_home_p99_ms": median([r[name]["phone_home_ms"]["p99"] for r in rounds]),
                      "phone_home_max_ms": median([r[name]["phone_home_ms"]["max"] for r in rounds]),
                      "server_cpu_s": median([r[name]["server_cpu_s"] for r in rounds]),
                      "peak_rss_mib": median([r[name]["usage"]["peak_rss_mib"] for r in rounds])} for name in servers}
    for name, check in checks.items():
        figures[name].update({"long_polls_answered": median([r[name].get("long_polls_answered") for r in rounds]),
                              "long_poll_delivery_p99_ms": median([r[name].get("long_poll_delivery_ms", {}).get("p99") for r in rounds]),
                              "server_cpu_phone_home_s": median([r[name]["server_cpu_phone_home_s"] for r in rounds]),
                              "server_cpu_scripts_s": median([r[name]["server_cpu_scripts_s"] for r in rounds]),
                              "peer_check": check})
    ours = figures["ours"]
    problems = ["round %d, %s: %s" % (number + 1, name, problem) for number, each in enumerate(rounds)
                for name in servers for problem in each[name]["problems"]]
    all_ok = all(r[name]["phone_homes_ok"] == args.hosts and (not args.long_polls or r[name]["long_polls_answered"] == args.hosts)
                 for r in rounds for name in checks) and not problems
    passed = all_ok and ours["phone_home_p99_ms"] is not None and ours["phone_home_p99_ms"] < P99_BAR_MS
    check_cost = peer_check_cost(rounds) if _simnet.UNCHECKED in servers else None
    recorded = ("hosts", "rounds", "wait", "settle", "spread", "long_polls", "quick", "peer_check")
    result = {"bench": "agent_api", "args": {key: getattr(args, key) for key in recorded},
              "anchor": "nginx (1 worker, return 200)", "figures": figures,
              "ratio_p99_ours_over_nginx": round(ours["phone_home_p99_ms"] / figures["nginx"]["phone_home_p99_ms"], 2)
              if "nginx" in figures and ours["phone_home_p99_ms"] and figures["nginx"]["phone_home_p99_ms"] else None,
              "peer_check_cost": check_cost, "problems": problems,
              "bar": {"phone_home_p99_ms": P99_BAR_MS, "all_succeed": True}, "rounds": rounds,
              "cpus": {"server": rack.server_cpus, "clients": rack.client_cpus},
              "load_average": {"before": load_before, "after": os.getloadavg()}, "started": started,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "pass": passed}
    _common.save_json(args.json, result)
    print("medians over %d round(s): ours p99 %s ms (nginx %s ms, ratio %s), all succeeded: %s; long-poll delivery p99 %s ms; bar p99 < %g ms"
          % (args.rounds, ours["phone_home_p99_ms"], figures.get("nginx", {}).get("phone_home_p99_ms"), result["ratio_p99_ours_over_nginx"], all_ok,
             ours["long_poll_delivery_p99_ms"], P99_BAR_MS))
    if check_cost:
        print("trust check on/off over %d pairs, ratio of medians (median of the rounds' ratios): phone-home p50 %s (%s), "
              "p99 %s (%s), server CPU %s (%s), during the phone-homes %s (%s)" % tuple([check_cost["pairs"]] + [
                  check_cost[key][which] for key in ("phone_home_p50_ms", "phone_home_p99_ms", "server_cpu_s", "server_cpu_phone_home_s")
                  for which in ("ratio", "median_ratio_per_round")]))
    import shutil  # pylint: disable=import-outside-toplevel
    shutil.rmtree(workdir, ignore_errors=True)
    print("%s -> %s" % ("PASS" if passed else "FAIL", args.json))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
