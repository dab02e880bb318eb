# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Address-giving DHCP bench: a rack's full DORA, nixie.metal (dhcp=addresses) vs dnsmasq with static leases.

    python bench/dhcp_addresses.py                 # 1,000 machines at 2,000/s, 3 rounds
    python bench/dhcp_addresses.py --quick         # 200 machines, 1 round (CI)

N inventory machines (distinct MACs, each with its hosts.json ``ip``) send OVMF's
DHCPDISCOVER (the real frame of the unit tests' captures, with each machine's MAC, GUID
and xid) paced at --rate per second, then, once every offer is in, the DHCPREQUEST that
selects this server's offer of the machine's address (SELECTING: option 54 the server,
option 50 the address), paced the same way. Every machine goes through DISCOVER, OFFER,
REQUEST and ACK; the bench checks each OFFER and ACK names the machine's own address.

Our server is started as the pxe_server module starts it (plan + run, ``dhcp:
addresses``) in a private network namespace (bench/_simnet.py), pinned to one CPU; the
clients run in a second namespace, pinned to the other. The anchor is dnsmasq 2.90 as an
authoritative server with the same static leases (one ``dhcp-host`` per MAC, ``static``
range, no ping), in the same run, on the same CPU, alternating which goes first. The delay
of an answer is taken between two kernel timestamps on the client's interface.

Bar (ours): every machine leased its own address, and no answer later than 10 ms after
its request. Figures are medians over the rounds; every round is kept in the JSON result.
Exit 1 when the bar is missed. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
import _common  # noqa: E402
import _simclient  # noqa: E402
import _simnet  # noqa: E402
from dhcp_burst import median_of, summarize  # noqa: E402

SERVERS = ("dnsmasq", "ours")
PHASES = ("discover", "request")
DELAY_BAR_MS = 10.0
OFFER, ACK = 2, 5

DNSMASQ_CONF = """\
port=0
interface={iface}
bind-interfaces
dhcp-authoritative
dhcp-range={subnet},static,255.255.0.0,1h
dhcp-hostsfile={hostsfile}
dhcp-leasefile={leasefile}
no-ping
user=root
group=root
pid-file=
quiet-dhcp
log-facility={log}
"""


# ------------------------------------------------------------------ client side (runs in the client namespace)


def request_frames(kind, count, xid_base):
    """(key, frame) per machine: key (xid, mac) of its DISCOVER or of its REQUEST (SELECTING this server)."""
    templates = _simclient.firmware_templates()
    out = []
    for index in range(count):
        mac = _simnet.machine_mac(index)
        xid = (xid_base + index) & 0xFFFFFFFF
        if kind == "discover":
            payload = _simclient.bootp_request(templates["pxe_discover"], mac, xid)
        else:
            payload = _simclient.bootp_request(templates["pxe_select"], mac, xid, requested=_simnet.machine_ip(index),
                                               server_id=_simnet.SERVER_IP)
        frame = _simclient.udp_frame(_simclient.mac_bytes(mac), _simclient.BROADCAST_MAC, "0.0.0.0", "255.255.255.255", 68, 67, payload)
        out.append(((xid, mac), frame))
    return out


def match(frames, kind, keys):
    """First send and first answer (kernel times) per request key, and the address each answer gave."""
    answer_type = OFFER if kind == "discover" else ACK
    sent, answered, given = {}, {}, {}
    for stamp, outgoing, frame in frames:
        packet = _simclient.decode_dhcp(frame)
        if packet is None:
            continue
        key = (packet["xid"], packet["mac"])
        if key not in keys:
            continue
        if outgoing and packet["op"] == 1 and packet["dport"] == 67:
            sent.setdefault(key, stamp)
        elif not outgoing and packet["op"] == 2 and packet["sport"] == 67 and packet["type"] == answer_type:
            answered.setdefault(key, stamp)
            given.setdefault(key, packet["yiaddr"])
    return sent, answered, given


def client_phase(args):
    """One phase against whichever server listens; prints its JSON summary."""
    link = _simclient.RawLink(_simnet.CLIENT_IF)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sink.bind(("0.0.0.0", 68))
    requests = request_frames(args.kind, args.clients, args.xid_base)
    keys = [key for key, dummy in requests]
    link.drain()
    _simclient.paced_send(link, [frame for dummy, frame in requests], args.rate)
    frames = link.collect(quiet=0.5, limit=10.0)
    sent, answered, given = match(frames, args.kind, set(keys))
    result = summarize(args.kind, keys, sent, answered)
    own = {key: _simnet.machine_ip(index) for index, key in enumerate(keys)}
    result["wrong_address"] = sum(1 for key, address in given.items() if address != own[key])
    sink.close()
    link.close()
    json.dump(result, sys.stdout)
    return 0


# ------------------------------------------------------------------ orchestration (root namespace)


def run_client(rack, kind, clients, rate, xid_base):
    argv = [sys.executable, os.path.abspath(__file__), "--client", "--kind", kind, "--clients", str(clients),
            "--rate", str(rate), "--xid-base", str(xid_base)]
    out = subprocess.run(rack.wrap(argv, rack.cli, rack.client_cpus), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError("client %s failed:\n%s" % (kind, out.stderr[-3000:]))
    return json.loads(out.stdout)


def start_dnsmasq(rack, workdir, clients):
    """dnsmasq as the segment's address server with one static lease per machine, the anchor."""
    hostsfile = os.path.join(workdir, "dnsmasq.hosts")
    with open(hostsfile, "w", encoding="utf-8") as handle:
        handle.writelines("%s,%s\n" % (_simnet.machine_mac(i), _simnet.machine_ip(i)) for i in range(clients))
    log = os.path.join(workdir, "dnsmasq-addresses.log")
    leasefile = os.path.join(workdir, "dnsmasq.leases")
    if os.path.exists(leasefile):
        os.unlink(leasefile)
    conf = os.path.join(workdir, "dnsmasq-addresses.conf")
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write(DNSMASQ_CONF.format(iface=_simnet.SERVER_IF, subnet="10.77.0.0", hostsfile=hostsfile,
                                         leasefile=leasefile, log=log))
    argv = rack.wrap(["dnsmasq", "-k", "--conf-file=" + conf], rack.srv, rack.server_cpus)

    def ready():
        return os.path.exists(log) and "DHCP, static leases only" in open(log, encoding="utf-8", errors="replace").read()
    return _simnet.ServerProcess("dnsmasq", argv, os.path.join(workdir, "dnsmasq-addresses.out"), ready)


def server_round(rack, name, workdir, args, round_number):
    if name == "ours":
        server = _simnet.start_ours(rack, workdir, args.clients, workdir + "/kernel", workdir + "/initrd", tag="ours",
                                    extra={"dhcp": "addresses"}, with_ip=True)
    else:
        server = start_dnsmasq(rack, workdir, args.clients)
    phases = {}
    try:
        xid = 0x10000000 * (round_number + 1) + (0 if name == "ours" else 0x8000000)
        rack.run(["ip", "neigh", "flush", "dev", _simnet.SERVER_IF], rack.srv, check=False)
        for kind in PHASES:
            cpu_before = server.cpu_now()
            phase = run_client(rack, kind, args.clients, args.rate, xid)
            cpu_after = server.cpu_now()
            if cpu_before is not None and cpu_after is not None:
                phase["server_cpu_s"] = round(cpu_after - cpu_before, 3)
            phases[kind] = phase
            print("  %-7s %-8s answered %4d/%d  wrong address %d  delay p50 %s p99 %s max %s ms  over %g ms: %d  rate %s/s  cpu %s s"
                  % (name, kind, phase["answered"], phase["clients"], phase["wrong_address"], phase["delay_ms"]["p50"],
                     phase["delay_ms"]["p99"], phase["delay_ms"]["max"], DELAY_BAR_MS, phase["over_bar"],
                     phase["send_rate_per_s"], phase.get("server_cpu_s")), flush=True)
    finally:
        usage = server.stop()
    return {"phases": phases, "usage": usage}


def evaluate(rounds, clients):
    figures = {name: {phase: {"answered": median_of(rounds, name, phase, ["answered"]),
                              "wrong_address": median_of(rounds, name, phase, ["wrong_address"]),
                              "delay_p99_ms": median_of(rounds, name, phase, ["delay_ms", "p99"]),
                              "delay_max_ms": median_of(rounds, name, phase, ["delay_ms", "max"]),
                              "server_cpu_s": median_of(rounds, name, phase, ["server_cpu_s"])}
                      for phase in PHASES} for name in SERVERS}
    ours = figures["ours"]
    bars = {phase: {"bar": "all %d leased their own address, max delay <= %g ms" % (clients, DELAY_BAR_MS),
                    "pass": ours[phase]["answered"] == clients and ours[phase]["wrong_address"] == 0
                    and (ours[phase]["delay_max_ms"] or 1e9) <= DELAY_BAR_MS}
            for phase in PHASES}
    return figures, bars


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=2000, help="requests per second (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200 machines, 1 round (CI)")
    parser.add_argument("--json", default=os.path.join(_common.RESULTS, "dhcp_addresses.json"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server logs)")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--xid-base", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return client_phase(args)
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, raw sockets, port 67)")
    if args.quick:
        args.clients, args.rounds = 200, 1
    workdir = tempfile.mkdtemp(prefix="nixie-dhcp-addresses-")
    os.chmod(workdir, 0o755)
    _simnet.make_file(workdir + "/kernel", 4096, 1)
    _simnet.make_file(workdir + "/initrd", 4096, 2)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    load_before = os.getloadavg()
    rounds = []
    with _simnet.Rack(args.clients, "dhcpaddr", own_links=False) as rack:
        print("%d machines, DORA paced at %d/s; server CPU %s, clients CPU %s; work %s"
              % (args.clients, args.rate, rack.server_cpus, rack.client_cpus, workdir), flush=True)
        for number in range(args.rounds):
            order = SERVERS if number % 2 == 0 else tuple(reversed(SERVERS))
            print("round %d" % (number + 1), flush=True)
            rounds.append({name: server_round(rack, name, workdir, args, number) for name in order})
    figures, bars = evaluate(rounds, args.clients)
    passed = all(verdict["pass"] for verdict in bars.values())
    version = subprocess.run(["dnsmasq", "--version"], capture_output=True, text=True, check=False).stdout.split()[2]
    result = {
        "bench": "dhcp_addresses", "args": {"clients": args.clients, "rate": args.rate, "rounds": args.rounds, "quick": args.quick},
        "anchor": "dnsmasq %s, static leases" % version,
        "figures": figures, "bars": bars, "rounds": rounds, "cpus": {"server": rack.server_cpus, "clients": rack.client_cpus},
        "load_average": {"before": load_before, "after": os.getloadavg()}, "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "pass": passed,
    }
    _common.save_json(args.json, result)
    print("medians over %d round(s):" % args.rounds)
    for phase in PHASES:
        print("  %-8s ours answered %s, max %s ms | dnsmasq answered %s, max %s ms | %s: %s" % (
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
