# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

# TFTP bench: dnsmasq vs nixie.metal's asyncio server (vs tftpy), same run,
# same file, same client, inside a private network namespace (dnsmasq's TFTP
# port is always 69).  Needs root and dnsmasq.
#
#   python3 bench/tftp.py                 # defaults below
#   python3 bench/tftp.py --reps 30 --rounds 5 --plain-blksize 512
#
# (a) one client asking blksize + windowsize (falls back to windowsize 1 when
#     the OACK lacks it), repeated --reps times: MB/s (1 MB = 10^6 bytes).
# (b) --clients concurrent plain clients (blksize --plain-blksize, no
#     windowsize), --rounds times: aggregate MB/s.
# Every transfer's content is compared with the file; any failure fails the run.

import argparse
import asyncio
import logging
import os
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

BARS = {"window": 1.5, "concurrent": 0.8}
ADDR = {"dnsmasq": "127.0.0.1", "ours": "127.0.0.2", "tftpy": "127.0.0.3"}


# ------------------------------------------------------------------ client


class Client:
    """Non-blocking raw-socket TFTP read client (RFC 1350/2347/2348/7440)."""

    __slots__ = ("sock", "server", "rrq", "tid", "blksize", "ws", "expected", "inwin", "chunks",
                 "done", "error", "t0", "t1", "deadline", "tries", "last", "timeout")

    timeouts = 0  # class-wide count of client timeouts (retransmissions)

    def __init__(self, server, filename, options, timeout=1.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.server = server
        req = b"\x00\x01" + filename.encode() + b"\x00octet\x00"
        for k, v in options.items():
            req += k.encode() + b"\x00" + str(v).encode() + b"\x00"
        self.rrq = req
        self.tid = None
        self.blksize = 512
        self.ws = 1
        self.expected = 1
        self.inwin = 0
        self.chunks = []
        self.done = False
        self.error = None
        self.timeout = timeout
        self.tries = 0
        self.last = None

    def begin(self, now):
        self.t0 = now
        self.sock.sendto(self.rrq, self.server)
        self.deadline = now + self.timeout

    def _ack(self, block):
        self.last = b"\x00\x04" + (block & 0xFFFF).to_bytes(2, "big")
        self.sock.send(self.last)

    def readable(self, now):
        sock = self.sock
        while not self.done:
            if self.tid is None:
                try:
                    data, addr = sock.recvfrom(70000)
                except BlockingIOError:
                    return
                self.tid = addr
                sock.connect(addr)  # from now on the kernel filters other sources
            else:
                try:
                    data = sock.recv(70000)
                except (BlockingIOError, ConnectionRefusedError):
                    return
            op = data[1]
            if op == 3:
                block = (data[2] << 8) | data[3]
                if block == self.expected & 0xFFFF:
                    payload = data[4:]
                    self.chunks.append(payload)
                    self.expected += 1
                    self.inwin += 1
                    if len(payload) < self.blksize:
                        self._ack(block)
                        self.done = True
                        self.t1 = time.monotonic()
                    elif self.inwin >= self.ws:
                        self._ack(block)
                        self.inwin = 0
                    self.deadline = now + self.timeout
                    self.tries = 0
                elif ((block - self.expected) & 0xFFFF) < 0x8000:  # a gap: ask again from the last in-order block
                    self._ack(self.expected - 1)
                    self.inwin = 0
            elif op == 6:
                fields = data[2:].split(b"\x00")
                opts = {fields[i].decode().lower(): fields[i + 1].decode() for i in range(0, len(fields) - 1, 2)}
                self.blksize = int(opts.get("blksize", 512))
                self.ws = int(opts.get("windowsize", 1))
                self._ack(0)
                self.deadline = now + self.timeout
            elif op == 5:
                self.error = "server error %r" % data[2:]
                self.done = True
                self.t1 = now

    def tick(self, now):
        if self.done or now < self.deadline:
            return
        self.tries += 1
        Client.timeouts += 1
        if self.tries > 5:
            self.error = "timeout"
            self.done = True
            self.t1 = now
            return
        if self.last is None:
            self.sock.sendto(self.rrq, self.server)
        else:
            self.inwin = 0
            self.sock.send(self.last)
        self.deadline = now + self.timeout


def run_clients(clients, limit=120.0):
    ep = select.epoll()
    byfd = {}
    now = time.monotonic()
    for c in clients:
        byfd[c.sock.fileno()] = c
        ep.register(c.sock.fileno(), select.EPOLLIN)
        c.begin(now)
    start = now
    active = len(clients)
    next_tick = now + 0.1
    while active:
        events = ep.poll(0.1)
        now = time.monotonic()
        for fd, dummy in events:
            c = byfd[fd]
            if c.done:
                continue
            c.readable(now)
            if c.done:
                ep.unregister(fd)
                active -= 1
        if now >= next_tick:
            next_tick = now + 0.1
            for fd, c in list(byfd.items()):
                if not c.done:
                    c.tick(now)
                    if c.done:
                        ep.unregister(fd)
                        active -= 1
            if now - start > limit:
                for c in clients:
                    if not c.done:
                        c.error, c.done, c.t1 = "bench limit", True, now
                break
    end = time.monotonic()
    ep.close()
    for c in clients:
        c.sock.close()
    return start, end


def check(clients, content):
    failures = []
    for c in clients:
        if c.error:
            failures.append(c.error)
        elif b"".join(c.chunks) != content:
            failures.append("content mismatch (%d bytes)" % sum(len(x) for x in c.chunks))
    return failures


def run_one(c):
    """One client on a blocking socket: a single recv syscall per datagram."""
    sock = c.sock
    sock.setblocking(True)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 100000))
    c.begin(time.monotonic())
    while not c.done:
        now = time.monotonic()
        c.readable(now)
        c.tick(now)
    sock.close()


def fetch_one(addr, filename, options, content):
    c = Client((addr, 69), filename, options)
    run_one(c)
    failures = check([c], content)
    return (len(content) / (c.t1 - c.t0) / 1e6 if not failures else 0.0), failures, c.ws


def fetch_many(addr, filename, options, content, n):
    clients = [Client((addr, 69), filename, options) for dummy in range(n)]
    before = Client.timeouts
    start, end = run_clients(clients)
    failures = check(clients, content)
    if Client.timeouts != before:
        print("  %s: %d clients %.3f s, %d client timeouts" % (addr, n, end - start, Client.timeouts - before))
    return n * len(content) / (end - start) / 1e6, failures


# ------------------------------------------------------------------ servers


def serve_ours(host, port, directory, max_blksize, gso=True):
    _common.use_collection()
    from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import tftp

    async def main():
        server = tftp.TftpServer(tftp.load_files(directory, ["ipxe.efi"]), max_transfers=256, max_blksize=max_blksize,
                                 gso=gso)
        await server.start(host, port)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.close()
    asyncio.run(main())


def serve_tftpy(host, port, directory):
    import tftpy
    logging.getLogger("tftpy").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    tftpy.TftpServer(directory).listen(host, port)


def wait_ready(addr, limit=10.0):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.2)
    end = time.monotonic() + limit
    try:
        while time.monotonic() < end:
            sock.sendto(b"\x00\x01nonexistent\x00octet\x00", (addr, 69))
            try:
                sock.recvfrom(2048)
                return
            except (socket.timeout, ConnectionRefusedError):
                continue
        raise RuntimeError("server at %s did not answer" % addr)
    finally:
        sock.close()


def cpu_seconds(proc) -> float:
    """utime + stime of a server process (Linux /proc)."""
    with open("/proc/%d/stat" % proc.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_servers(directory, names, max_blksize, extra=()):
    procs = {}
    if "dnsmasq" in names:
        procs["dnsmasq"] = subprocess.Popen(
            ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--enable-tftp", "--tftp-root=" + directory,
             "--listen-address=" + ADDR["dnsmasq"], "--bind-interfaces", "--user=root", "--group=root", "--pid-file=",
             "--tftp-max=256", "--quiet-tftp", "--log-facility=-"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    me = os.path.abspath(__file__)
    if "ours" in names:
        procs["ours"] = subprocess.Popen([sys.executable, me, "--serve", "ours", "--dir", directory, "--max-blksize", str(max_blksize)] + list(extra))
    if "tftpy" in names:
        procs["tftpy"] = subprocess.Popen([sys.executable, me, "--serve", "tftpy", "--dir", directory])
    for name in procs:
        wait_ready(ADDR[name])
    return procs


def stop_servers(procs):
    for p in procs.values():
        p.terminate()
    for p in procs.values():
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()


# ------------------------------------------------------------------- bench


def bench(args):
    workdir = tempfile.mkdtemp(prefix="nixie-tftp-bench-")
    path = os.path.join(workdir, "ipxe.efi")
    if args.file:
        with open(args.file, "rb") as f:
            content = f.read()
    else:
        content = os.urandom(args.size)
    with open(path, "wb") as f:
        f.write(content)
    os.chmod(workdir, 0o755)
    names = ["dnsmasq", "ours"] + ([] if args.no_tftpy else ["tftpy"])
    procs = start_servers(workdir, names, args.max_blksize, ["--no-gso"] if args.no_gso else [])
    result = {"size": len(content), "names": names, "args": vars(args), "window": {}, "concurrent": {}, "failures": {}}
    try:
        wopts = {"blksize": args.blksize, "windowsize": args.windowsize}
        popts = {"blksize": args.plain_blksize} if args.plain_blksize != 512 else {}
        # warm-up (one transfer each; also builds our packet cache)
        for name in names:
            fetch_one(ADDR[name], "ipxe.efi", wopts, content)
            fetch_one(ADDR[name], "ipxe.efi", popts, content)
        window = {n: [] for n in names}
        negotiated_ws = {}
        failures = {n: [] for n in names}
        cpu = {n: {"window": 0.0, "concurrent": 0.0} for n in names}
        for dummy in range(args.reps):
            for name in names:
                c0 = cpu_seconds(procs[name])
                mbps, fails, ws = fetch_one(ADDR[name], "ipxe.efi", wopts, content)
                cpu[name]["window"] += cpu_seconds(procs[name]) - c0
                window[name].append(mbps)
                negotiated_ws[name] = ws
                failures[name] += fails
        conc = {n: [] for n in names}
        for dummy in range(args.rounds):
            for name in names:
                c0 = cpu_seconds(procs[name])
                mbps, fails = fetch_many(ADDR[name], "ipxe.efi", popts, content, args.clients)
                cpu[name]["concurrent"] += cpu_seconds(procs[name]) - c0
                conc[name].append(mbps)
                failures[name] += fails
    finally:
        stop_servers(procs)
        shutil.rmtree(workdir, ignore_errors=True)
    for name in names:
        result["window"][name] = {"median": statistics.median(window[name]), "all": window[name], "windowsize": negotiated_ws[name]}
        result["concurrent"][name] = {"median": statistics.median(conc[name]), "all": conc[name]}
        result["failures"][name] = failures[name]
        mb_w = args.reps * len(content) / 1e6
        mb_c = args.rounds * args.clients * len(content) / 1e6
        result["server_cpu_ms_per_mb"] = result.get("server_cpu_ms_per_mb", {})
        result["server_cpu_ms_per_mb"][name] = {"window": 1000 * cpu[name]["window"] / mb_w,
                                                "concurrent": 1000 * cpu[name]["concurrent"] / mb_c}
    ratios = {
        "window": result["window"]["ours"]["median"] / result["window"]["dnsmasq"]["median"],
        "concurrent": result["concurrent"]["ours"]["median"] / result["concurrent"]["dnsmasq"]["median"],
    }
    result["ratios_ours_over_dnsmasq"] = ratios
    result["bars"] = BARS
    ok = all(ratios[k] >= BARS[k] for k in BARS) and not any(result["failures"].values())
    result["pass"] = ok

    w = "(a) 1 client, blksize %d windowsize %d, %d reps" % (args.blksize, args.windowsize, args.reps)
    c = "(b) %d clients, blksize %d, %d rounds" % (args.clients, args.plain_blksize, args.rounds)
    print("file %d bytes; MB/s medians (1 MB = 10^6 B)" % len(content))
    print("%-48s %s" % ("", " ".join("%12s" % n for n in names)) + "   ours/dnsmasq  bar")
    print("%-48s %s" % (w, " ".join("%12.1f" % result["window"][n]["median"] for n in names))
          + "   %8.2fx   >= %.1fx" % (ratios["window"], BARS["window"]))
    print("%-48s %s" % ("    windowsize granted", " ".join("%12d" % negotiated_ws[n] for n in names)))
    print("%-48s %s" % (c, " ".join("%12.1f" % result["concurrent"][n]["median"] for n in names))
          + "   %8.2fx   >= %.1fx" % (ratios["concurrent"], BARS["concurrent"]))
    print("%-48s %s" % ("server CPU ms per MB, (a) / (b)", " ".join(
        "%12s" % ("%.2f / %.2f" % (result["server_cpu_ms_per_mb"][n]["window"], result["server_cpu_ms_per_mb"][n]["concurrent"]))
        for n in names)))
    print("failed transfers: %s" % {n: len(f) for n, f in result["failures"].items()})
    print("result: %s -> %s" % ("PASS" if ok else "FAIL", _common.write_result("tftp", result)))
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--reps", type=int, default=20, help="(a) repetitions per server")
    p.add_argument("--rounds", type=int, default=3, help="(b) rounds per server")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--blksize", type=int, default=1468, help="(a) blksize asked")
    p.add_argument("--windowsize", type=int, default=4, help="(a) windowsize asked")
    p.add_argument("--plain-blksize", type=int, default=1468, help="(b) blksize asked (512: no option)")
    p.add_argument("--max-blksize", type=int, default=1468, help="our server's blksize cap")
    p.add_argument("--size", type=int, default=1 << 20, help="random file size when no --file")
    p.add_argument("--file", help="serve this file instead of random bytes")
    p.add_argument("--no-tftpy", action="store_true")
    p.add_argument("--no-gso", action="store_true", help="our server without UDP GSO")
    p.add_argument("--serve", choices=["ours", "tftpy"], help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve == "ours":
        return serve_ours(ADDR["ours"], 69, args.dir, args.max_blksize, not args.no_gso)
    if args.serve == "tftpy":
        return serve_tftpy(ADDR["tftpy"], 69, args.dir)
    if args.inner:
        return bench(args)
    if os.geteuid() != 0:
        sys.exit("bench/tftp.py needs root (private network namespace, port 69)")
    with _common.netns("nixie-tftp-bench") as ns:
        cmd = ["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__), "--inner"] + sys.argv[1:]
        return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
