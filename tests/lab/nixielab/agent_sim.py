# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Simulated machines: woken by Wake-on-LAN, they "boot" and phone home like the installer's agent.

Tests and benches only. Stands in for a rack of machines when what is measured
is the controller's side (the playbook, the server's API), not firmware::

    ip netns exec LAB python -m nixielab.agent_sim --interface br0 --base http://10.77.0.1:8080 \\
        --macs macs.txt --log sim.jsonl [--delay 0.5 2.0] [--seed N]

It listens for magic packets on UDP ``--port`` (9) bound to ``--interface``.
For each MAC of ``--macs`` (one per line) the first magic packet starts a
"boot": after a random delay in ``--delay MIN MAX`` seconds (the firmware and
kernel, default 0.5-2 s) it GETs ``{base}/boot/{mac}/script.ipxe`` as iPXE
would, takes ``nixie.token=`` from the kernel line, and POSTs the phone-home
report of docs/api.md with ``Authorization: Bearer <token>``. A failed step is
retried after 1 s, up to ``--tries`` times. Later magic packets for a MAC
already booting are logged and ignored, like a powered-on machine.

Every step is one JSON line in ``--log`` with the wall-clock ``time``:
``wake`` (first magic packet), ``wake_again``, ``unknown_mac``, ``malformed``,
``script`` (status), ``phone_home`` (status, answer), ``error`` and ``gave_up``.
Ends on SIGTERM/SIGINT, or by itself once every MAC phoned home when
``--exit-when-done`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import signal
import socket
import sys
import time
import urllib.error
import urllib.request

SYNC = b"\xff" * 6
TOKEN = re.compile(r"nixie\.token=(\S+)")


def parse_magic(payload: bytes) -> str | None:
    """The MAC a magic packet wakes (6 x FF, then the MAC 16 times, optional SecureOn), or None."""
    if len(payload) not in (102, 106, 108) or not payload.startswith(SYNC):
        return None
    mac = payload[6:12]
    if payload[6:102] != mac * 16 or mac in (b"\xff" * 6, b"\x00" * 6):
        return None
    return ":".join("%02x" % octet for octet in mac)


def report(mac: str, index: int, subnet: str) -> dict:
    """The agent's phone-home body (docs/api.md) for the simulated machine number ``index``."""
    return {
        "mac": mac,
        "addresses": [{"ifname": "eth0", "mac": mac, "address": "%s.%d" % (subnet, 100 + index % 100), "prefix": 24}],
        "ssh_host_keys": [],
        "hostname": "sim-%s" % mac.replace(":", ""),
        "uptime": 1.0,
    }


def http(url: str, body: bytes | None = None, token: str | None = None, timeout: float = 10.0) -> tuple[int, str]:
    """(status, text) of one request; connection errors raise OSError."""
    headers = {"User-Agent": "nixielab-agent-sim"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as answer:
            return answer.status, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


class Machines(asyncio.DatagramProtocol):
    def __init__(self, args, macs, log):
        self.args = args
        self.macs = {mac: index for index, mac in enumerate(macs)}
        self.log = log
        self.booting = set()
        self.done = set()
        self.finished = asyncio.Event()
        self.random = random.Random(args.seed)
        self.subnet = args.base.split("//", 1)[1].split(":", 1)[0].rsplit(".", 1)[0]

    def write(self, event, **details):
        self.log.write(json.dumps(dict(details, time=time.time(), event=event)) + "\n")
        self.log.flush()

    def datagram_received(self, data, addr):
        mac = parse_magic(data)
        if mac is None:
            self.write("malformed", src=addr[0], length=len(data))
            return
        if mac not in self.macs:
            self.write("unknown_mac", mac=mac, src=addr[0])
            return
        if mac in self.booting:
            self.write("wake_again", mac=mac, src=addr[0])
            return
        self.booting.add(mac)
        delay = self.random.uniform(*self.args.delay)
        self.write("wake", mac=mac, src=addr[0], delay=round(delay, 3))
        asyncio.get_running_loop().create_task(self.boot(mac, delay))

    async def boot(self, mac, delay):
        await asyncio.sleep(delay)
        base = self.args.base.rstrip("/")
        body = json.dumps(report(mac, self.macs[mac], self.subnet)).encode()
        token = None
        for attempt in range(1, self.args.tries + 1):
            try:
                if token is None:
                    status, text = await asyncio.to_thread(http, "%s/boot/%s/script.ipxe" % (base, mac))
                    self.write("script", mac=mac, status=status, attempt=attempt)
                    match = TOKEN.search(text) if status == 200 else None
                    if match is None:
                        raise OSError("no script with a nixie.token (HTTP %d)" % status)
                    token = match.group(1)
                status, text = await asyncio.to_thread(http, base + "/api/v1/phone-home", body, token)
                answer = json.loads(text) if text.startswith("{") else {}
                self.write("phone_home", mac=mac, status=status, attempt=attempt, state=answer.get("state"),
                           seq=answer.get("seq"), code=answer.get("code"))
                if status == 200:
                    self.done.add(mac)
                    if self.args.exit_when_done and len(self.done) == len(self.macs):
                        self.finished.set()
                    return
            except (OSError, ValueError) as exc:
                self.write("error", mac=mac, attempt=attempt, error=str(exc))
            await asyncio.sleep(1.0)
        self.write("gave_up", mac=mac)


async def serve(args, macs, log):
    loop = asyncio.get_running_loop()
    machines = Machines(args, macs, log)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    if args.interface:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.interface.encode())
    sock.bind(("0.0.0.0", args.port))
    transport, dummy = await loop.create_datagram_endpoint(lambda: machines, sock=sock)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, machines.finished.set)
    machines.write("listening", port=args.port, interface=args.interface, machines=len(macs))
    try:
        await machines.finished.wait()
    finally:
        transport.close()
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interface", help="bind the WoL listener to this interface (e.g. br0)")
    parser.add_argument("--port", type=int, default=9)
    parser.add_argument("--base", required=True, help="the netboot server's HTTP base, e.g. http://10.77.0.1:8080")
    parser.add_argument("--macs", required=True, help="file with one MAC per line: the simulated machines")
    parser.add_argument("--log", required=True, help="JSON lines log")
    parser.add_argument("--delay", type=float, nargs=2, default=(0.5, 2.0), metavar=("MIN", "MAX"),
                        help="random boot time in seconds between wake and script fetch (default 0.5 2.0)")
    parser.add_argument("--tries", type=int, default=30)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--exit-when-done", action="store_true")
    args = parser.parse_args(argv)
    with open(args.macs, encoding="utf-8") as handle:
        macs = [line.strip().lower() for line in handle if line.strip()]
    with open(args.log, "a", encoding="utf-8") as log:
        return asyncio.run(serve(args, macs, log))


if __name__ == "__main__":
    sys.exit(main())
