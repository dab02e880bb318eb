# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""RouteNeighbours in the server namespace, as the server's child uses it: after dropping to nobody.

    ip netns exec SRV python probe.py PORT

Listens on [::]:PORT (dual stack, so IPv4 peers arrive as ::ffff:a.b.c.d,
as the server sees them), drops every privilege with the server's own
``privileges.drop_privileges`` (account nobody), prints ``{"ready": ...}``,
then answers one JSON line per request line on stdin:

* ``{"op": "status"}``: uid, gid and effective capabilities;
* ``{"op": "accept"}``: accept one connection and look up its peer (route,
  then the neighbour on the route's interface) while it is open;
* ``{"op": "lookup", "ip": ...}``: the same lookup for an address;
* ``{"op": "neighbour", "ip": ..., "ifindex": ...}``, ``{"op": "route", "ip": ...}``,
  ``{"op": "resolve", "ip": ...}``, ``{"op": "ifname", "ifindex": ...}``;
* ``{"op": "stale_then_route", "ip": ...}``: a request whose answer is left
  unread, then route(): the late answer must be skipped;
* ``{"op": "unanswered", "timeout": ...}``: a message the kernel does not
  answer (no NLM_F_REQUEST), through the class's own exchange: the timeout;
* ``{"op": "measure", "ip": ..., "n": ...}``: n route()+neighbour() pairs, timed;
* ``{"op": "watch", "ip": ..., "ifindex": ..., "buffer": ...}``: a NeighbourWatch with that receive buffer,
  which keeps the entry of ``ip``; ``{"op": "watch_drain"}``: its drain(), then what it keeps and its resyncs.

Errors come back as ``{"error": type, "errno": ..., "message": ...}``.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import statistics
import sys
import time

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import netlink
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import netlink_socket
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import privileges
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.neighbour_watch import NeighbourWatch

WATCHES = []


def as_json(value):
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def peer_text(peer):
    """An accepted peer's address as the server would pass it on (with the zone of a link-local address)."""
    host = peer[0]
    if len(peer) == 4 and peer[3]:
        host = "%s%%%d" % (host, peer[3])
    return host


def lookup(table, address):
    route = table.route(address)
    entry = table.neighbour(address, route.ifindex) if route is not None and route.ifindex else None
    return {"ip": address, "route": as_json(route), "neighbour": as_json(entry)}


def measure(table, address, count):
    pairs = []
    routes = []
    neighbours = []
    for dummy in range(count):
        start = time.perf_counter_ns()
        route = table.route(address)
        middle = time.perf_counter_ns()
        table.neighbour(address, route.ifindex)
        end = time.perf_counter_ns()
        pairs.append(end - start)
        routes.append(middle - start)
        neighbours.append(end - middle)

    def summary(samples):
        ordered = sorted(samples)
        return {"median_us": statistics.median(ordered) / 1000, "p99_us": ordered[int(len(ordered) * 0.99)] / 1000,
                "max_us": ordered[-1] / 1000}
    return {"n": count, "pair": summary(pairs), "route": summary(routes), "neighbour": summary(neighbours)}


def handle(table, listener, request):
    op = request["op"]
    if op == "status":
        status = privileges.privilege_status()
        return {"uid": status["Uid"], "gid": status["Gid"], "cap_eff": status["CapEff"]}
    if op == "accept":
        listener.settimeout(request.get("timeout", 10))
        conn, peer = listener.accept()
        with conn:
            return lookup(table, peer_text(peer))
    if op == "lookup":
        return lookup(table, request["ip"])
    if op == "route":
        return {"route": as_json(table.route(request["ip"]))}
    if op == "neighbour":
        return {"neighbour": as_json(table.neighbour(request["ip"], request["ifindex"]))}
    if op == "resolve":
        return {"resolve": table.resolve(request["ip"])}
    if op == "ifname":
        return {"ifname": table.ifname(request["ifindex"])}
    if op == "stale_then_route":
        # An answer left in the socket's queue, as after a request that timed out.
        seq = table._next_seq()  # pylint: disable=protected-access
        table._sock.send(netlink.route_request(request["ip"], seq))  # pylint: disable=protected-access
        return {"stale_seq": seq, "route": as_json(table.route(request["ip"]))}
    if op == "unanswered":
        table.timeout = request["timeout"]
        seq = table._next_seq()  # pylint: disable=protected-access
        message = bytearray(netlink.route_request("127.0.0.1", seq))
        message[6] = 0  # nlmsg_flags without NLM_F_REQUEST: the kernel ignores it and sends nothing back
        start = time.monotonic()
        try:
            table._ask(bytes(message), seq, "an unanswered message")  # pylint: disable=protected-access
        finally:
            table.timeout = 0.5
            request["elapsed"] = time.monotonic() - start
        return {"answered": True}
    if op == "measure":
        return measure(table, request["ip"], request["n"])
    if op == "watch":
        watch = NeighbourWatch(receive_buffer=request["buffer"])
        WATCHES.append(watch)
        watch.drain()
        return {"neighbour": as_json(watch.neighbour(request["ip"], request["ifindex"])),
                "kept": len(watch._neighbours)}  # pylint: disable=protected-access
    if op == "watch_drain":
        watch = WATCHES[-1]
        watch.drain()
        return {"kept": len(watch._neighbours), "resyncs": watch.resyncs}  # pylint: disable=protected-access
    raise ValueError("unknown op %r" % op)


def main():
    listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("::", int(sys.argv[1])))
    listener.listen(16)
    privileges.drop_privileges(privileges.find_account("nobody"))
    table = netlink_socket.RouteNeighbours()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = handle(table, listener, request)
        except OSError as exc:
            answer = {"error": type(exc).__name__, "errno": exc.errno, "message": str(exc),
                      "elapsed": request.get("elapsed")}
        except ValueError as exc:
            answer = {"error": "ValueError", "message": str(exc)}
        print(json.dumps(answer), flush=True)
    for watch in WATCHES:
        watch.close()
    table.close()


if __name__ == "__main__":
    main()
