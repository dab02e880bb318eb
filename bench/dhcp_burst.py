# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""DHCP burst bench: a rack of PXE clients asking at once, nixie.metal vs dnsmasq (proxy mode).

    python bench/dhcp_burst.py                    # 1,000 clients, 3 rounds
    python bench/dhcp_burst.py --quick            # 200 clients, 1 round (CI)
    python bench/dhcp_burst.py --clients 2000 --rate 10000

N known machines (distinct MACs, all in hosts.json; UEFI x86-64, arch 7) send
the DHCPDISCOVER OVMF sends (the real frame from the unit tests' captures,
with each machine's MAC, GUID and xid), then OVMF's follow-up DHCPREQUEST
from UDP 4011 to the proxy's 4011, each from the machine's own address:

* paced: at --rate per second (default 5,000), on an absolute schedule;
* all at once: as fast as one AF_PACKET socket sends (~100,000/s); clients
  not answered after --retry-after seconds (PXE's first DISCOVER timeout is
  4 s) send their first retry, and the answers are counted again.

Our server is started as the pxe_server module starts it (plan + run), in
a private network namespace (bench/_simnet.py) and pinned to one CPU; the
clients run in a second namespace, pinned to the other. dnsmasq 2.90 in
proxy mode (+ TFTP, quiet-dhcp) is the anchor, in the same run, on the same
CPU, alternating which goes first. The delay of an answer is taken between
two kernel timestamps on the client's interface: the request leaving and
the answer arriving (SO_TIMESTAMPNS), so the client's Python time is not in it.

The machines' addresses share the client's one interface (``Rack(own_links=False)``),
unlike the other rack benches, where each machine has its own MAC: the server's trust
check (``peer_check``) is made on boot files and phone-homes, not on DHCP, so it has
nothing to see here, while a thousand macvlans would each get a copy of every broadcast
proxy offer, work done by the kernel on the server's CPU that is no part of a server.

Bars (ours): paced, every request answered and none later than 10 ms; all
at once, every client answered by its first retry and at least as many as
dnsmasq. Figures are medians over the rounds; every round is kept in the
JSON result. Exit 1 when a bar is missed. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
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

SERVERS = ("dnsmasq", "ours")
PHASES = ("paced_discover", "paced_4011", "burst_discover", "burst_4011")
DELAY_BAR_MS = 10.0


# ------------------------------------------------------------------ client side (runs in the client namespace)


def request_frames(kind, count, server_mac, xid_base):
    """(key, frame) per machine: key (xid, mac) of the request."""
    templates = _simclient.firmware_templates()
    out = []
    for index in range(count):
        mac = _simnet.machine_mac(index)
        xid = (xid_base + index) & 0xFFFFFFFF
        if kind == "discover":
            payload = _simclient.bootp_request(templates["pxe_discover"], mac, xid)
            frame = _simclient.udp_frame(_simclient.mac_bytes(mac), _simclient.BROADCAST_MAC, "0.0.0.0", "255.255.255.255", 68, 67, payload)
        else:
            ip = _simnet.machine_ip(index)
            payload = _simclient.bootp_request(templates["pxe_4011"], mac, xid, ciaddr=ip)
            frame = _simclient.udp_frame(_simclient.mac_bytes(mac), server_mac, ip, _simnet.SERVER_IP, 4011, 4011, payload, ident=index)
        out.append(((xid, mac), frame))
    return out


def match(frames, kind, keys):
    """First send and first answer (kernel times) per request key, from the captured frames."""
    server_port = 67 if kind == "discover" else 4011
    answer_type = 2 if kind == "discover" else 5
    sent, answered = {}, {}
    for stamp, outgoing, frame in frames:
        packet = _simclient.decode_dhcp(frame)
        if packet is None:
            continue
        key = (packet["xid"], packet["mac"])
        if key not in keys:
            continue
        if outgoing and packet["op"] == 1 and packet["dport"] == server_port:
            sent.setdefault(key, stamp)
        elif (not outgoing and packet["op"] == 2 and packet["sport"] == server_port and packet["src"] == _simnet.SERVER_IP
              and packet["type"] == answer_type):
            answered.setdefault(key, stamp)
    return sent, answered


def summarize(kind, keys, sent, answered, retry_sent=None):
    delays = [(answered[key] - sent[key]) * 1000.0 for key in keys if key in answered and key in sent]
    stamps = sorted(sent[key] for key in keys if key in sent)
    first_try = [key for key in keys if key in answered and (retry_sent is None or key not in retry_sent
                                                             or answered[key] < retry_sent[key])]
    result = {
        "kind": kind, "clients": len(keys), "sent": len(sent), "answered": len(answered), "answered_first_try": len(first_try),
        "unanswered": len(keys) - len(answered),
        "delay_ms": {"p50": _round(_simclient.percentile(delays, 0.5)), "p99": _round(_simclient.percentile(delays, 0.99)),
                     "max": _round(max(delays) if delays else None)},
        "over_bar": sum(1 for delay in delays if delay > DELAY_BAR_MS),
        "send_rate_per_s": round((len(stamps) - 1) / (stamps[-1] - stamps[0])) if len(stamps) > 1 and stamps[-1] > stamps[0] else None,
        "last_answer_after_first_send_ms": _round((max(answered.values()) - stamps[0]) * 1000.0) if answered and stamps else None,
    }
    if retry_sent is not None:
        result["retries_sent"] = len(retry_sent)
    return result


def _round(value):
    return None if value is None else round(value, 3)


def client_phase(args):
    """One phase against whichever server listens; prints its JSON summary."""
    link = _simclient.RawLink(_simnet.CLIENT_IF)
    # The machines' stacks take the unicast answers (no ICMP port unreachable back to the server).
    sinks = []
    for port in (68, 4011):
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sink.bind(("0.0.0.0", port))
        sinks.append(sink)
    server_mac = bytes.fromhex(args.server_mac.replace(":", ""))
    requests = request_frames(args.kind, args.clients, server_mac, args.xid_base)
    keys = [key for key, dummy in requests]
    link.drain()
    if args.mode == "paced":
        _simclient.paced_send(link, [frame for dummy, frame in requests], args.rate)
        frames = link.collect(quiet=0.5, limit=10.0)
        sent, answered = match(frames, args.kind, set(keys))
        result = summarize(args.kind, keys, sent, answered)
    else:
        _simclient.paced_send(link, [frame for dummy, frame in requests], 0)
        frames = link.collect(quiet=args.retry_after, limit=args.retry_after)
        sent, answered = match(frames, args.kind, set(keys))
        retry = [(key, frame) for key, frame in requests if key not in answered]
        retry_sent = {}
        if retry:
            _simclient.paced_send(link, [frame for dummy, frame in retry], 0)
            more = link.collect(quiet=0.5, limit=args.retry_after)
            frames += more
            retried_keys = {key for key, dummy in retry}
            for stamp, outgoing, frame in more:
                packet = _simclient.decode_dhcp(frame)
                if outgoing and packet is not None and (packet["xid"], packet["mac"]) in retried_keys:
                    retry_sent.setdefault((packet["xid"], packet["mac"]), stamp)
            sent, answered = match(frames, args.kind, set(keys))
        result = summarize(args.kind, keys, sent, answered, retry_sent)
    for sink in sinks:
        sink.close()
    link.close()
    json.dump(result, sys.stdout)
    return 0


# ------------------------------------------------------------------ orchestration (root namespace)


def run_client(rack, server_mac, mode, kind, clients, rate, retry_after, xid_base):
    argv = [sys.executable, os.path.abspath(__file__), "--client", "--mode", mode, "--kind", kind, "--clients", str(clients),
            "--rate", str(rate), "--retry-after", str(retry_after), "--server-mac", server_mac, "--xid-base", str(xid_base)]
    out = subprocess.run(rack.wrap(argv, rack.cli, rack.client_cpus), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError("client %s %s failed:\n%s" % (mode, kind, out.stderr[-3000:]))
    return json.loads(out.stdout)


def server_round(rack, name, workdir, args, server_mac, round_number):
    if name == "ours":
        server = _simnet.start_ours(rack, workdir, args.clients, workdir + "/kernel", workdir + "/initrd", tag="ours")
    else:
        server = _simnet.start_dnsmasq(rack, workdir)
    phases = {}
    try:
        xid = 0x10000000 * (round_number + 1) + (0 if name == "ours" else 0x8000000)
        for mode in ("paced", "burst"):
            # Every phase meets a cold neighbour table, as the first answer to a new machine does.
            rack.run(["ip", "neigh", "flush", "dev", _simnet.SERVER_IF], rack.srv, check=False)
            for kind in ("discover", "4011"):
                cpu_before = server.cpu_now()
                xid += 0x100000
                phase = run_client(rack, server_mac, mode, kind, args.clients, args.rate, args.retry_after, xid)
                cpu_after = server.cpu_now()
                if cpu_before is not None and cpu_after is not None:
                    phase["server_cpu_s"] = round(cpu_after - cpu_before, 3)
                phases["%s_%s" % (mode, kind)] = phase
                print("  %-7s %-15s answered %4d/%d (first try %4d)  delay p50 %s p99 %s max %s ms  over %g ms: %d  rate %s/s  cpu %s s"
                      % (name, mode + "_" + kind, phase["answered"], phase["clients"], phase["answered_first_try"],
                         phase["delay_ms"]["p50"], phase["delay_ms"]["p99"], phase["delay_ms"]["max"], DELAY_BAR_MS,
                         phase["over_bar"], phase["send_rate_per_s"], phase.get("server_cpu_s")), flush=True)
    finally:
        usage = server.stop()
    result = {"phases": phases, "usage": usage}
    if name == "ours":
        result["server"] = _simnet.read_result(server)
    return result


def median_of(rounds, name, phase, path):
    values = []
    for each in rounds:
        value = each[name]["phases"][phase]
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            values.append(value)
    return statistics.median(values) if values else None


def evaluate(rounds, clients):
    figures = {name: {phase: {"answered": median_of(rounds, name, phase, ["answered"]),
                              "answered_first_try": median_of(rounds, name, phase, ["answered_first_try"]),
                              "delay_p99_ms": median_of(rounds, name, phase, ["delay_ms", "p99"]),
                              "delay_max_ms": median_of(rounds, name, phase, ["delay_ms", "max"]),
                              "server_cpu_s": median_of(rounds, name, phase, ["server_cpu_s"])}
                      for phase in PHASES} for name in SERVERS}
    ours = figures["ours"]
    bars = {}
    for phase in ("paced_discover", "paced_4011"):
        bars[phase] = {"bar": "all %d answered, max delay <= %g ms" % (clients, DELAY_BAR_MS),
                       "pass": ours[phase]["answered"] == clients and (ours[phase]["delay_max_ms"] or 1e9) <= DELAY_BAR_MS}
    for phase in ("burst_discover", "burst_4011"):
        bars[phase] = {"bar": "all %d answered by the first retry, >= dnsmasq" % clients,
                       "pass": ours[phase]["answered"] == clients and ours[phase]["answered"] >= figures["dnsmasq"][phase]["answered"]}
    return figures, bars


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=5000, help="paced requests per second (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--retry-after", type=float, default=4.0, help="seconds before a client's first retry (PXE: 4)")
    parser.add_argument("--quick", action="store_true", help="200 clients, 1 round, retry after 2 s (CI)")
    parser.add_argument("--json", default=os.path.join(_common.RESULTS, "dhcp_burst.json"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server logs)")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("paced", "burst"), help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=("discover", "4011"), help=argparse.SUPPRESS)
    parser.add_argument("--server-mac", help=argparse.SUPPRESS)
    parser.add_argument("--xid-base", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return client_phase(args)
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, raw sockets, port 67)")
    if args.quick:
        args.clients, args.rounds, args.retry_after = 200, 1, 2.0
    workdir = tempfile.mkdtemp(prefix="nixie-dhcp-burst-")
    os.chmod(workdir, 0o755)
    _simnet.make_file(workdir + "/kernel", 4096, 1)
    _simnet.make_file(workdir + "/initrd", 4096, 2)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    load_before = os.getloadavg()
    rounds = []
    with _simnet.Rack(args.clients, "dhcp", own_links=False) as rack:
        server_mac = json.loads(rack.run(["ip", "-j", "link", "show", _simnet.SERVER_IF], rack.srv).stdout)[0]["address"]
        print("%d clients, paced at %d/s and all at once (retry after %g s); server CPU %s, clients CPU %s; work %s"
              % (args.clients, args.rate, args.retry_after, rack.server_cpus, rack.client_cpus, workdir), flush=True)
        for number in range(args.rounds):
            order = SERVERS if number % 2 == 0 else tuple(reversed(SERVERS))
            print("round %d" % (number + 1), flush=True)
            rounds.append({name: server_round(rack, name, workdir, args, server_mac, number) for name in order})
    figures, bars = evaluate(rounds, args.clients)
    passed = all(verdict["pass"] for verdict in bars.values())
    version = subprocess.run(["dnsmasq", "--version"], capture_output=True, text=True, check=False).stdout.split()[2]
    result = {
        "bench": "dhcp_burst", "args": {"clients": args.clients, "rate": args.rate, "rounds": args.rounds,
                                        "retry_after": args.retry_after, "quick": args.quick},
        "anchor": "dnsmasq %s, proxy mode" % version,
        "figures": figures, "bars": bars, "rounds": rounds, "cpus": {"server": rack.server_cpus, "clients": rack.client_cpus},
        "load_average": {"before": load_before, "after": os.getloadavg()}, "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "pass": passed,
    }
    _common.save_json(args.json, result)
    print("medians over %d round(s):" % args.rounds)
    for phase in PHASES:
        print("  %-15s ours answered %s, max %s ms | dnsmasq answered %s, max %s ms | %s: %s" % (
            phase, figures["ours"][phase]["answered"], figures["ours"][phase]["delay_max_ms"],
            figures["dnsmasq"][phase]["answered"], figures["dnsmasq"][phase]["delay_max_ms"], bars[phase]["bar"],
            "PASS" if bars[phase]["pass"] else "FAIL"))
    if not args.keep:
        import shutil  # pylint: disable=import-outside-toplevel
        shutil.rmtree(workdir, ignore_errors=True)
    print("%s -> %s" % ("PASS" if passed else "FAIL", args.json))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
