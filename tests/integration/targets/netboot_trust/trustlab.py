# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The trust lab: one segment, the server, the host, an impostor and a routed client, in namespaces.

::

    <id>-host  eth0 52:54:00:aa:00:01  10.90.0.10  fd90::10 --+
    <id>-imp   eth0 02:00:00:bb:00:02  10.90.0.50  fd90::50 --+
    <id>-srv   eth0                    10.90.0.1   fd90::1  --+-- br0 in <id>-seg
    <id>-rtr   eth0                    10.90.0.254 fd90::254 -+
               eth1 10.91.0.1 fd91::1 --veth-- <id>-far eth0 10.91.0.10 fd91::10

The server namespace routes 10.91.0.0/24 and fd91::/64 via the router. Every
namespace carries the lab's id (the pid and a random tail), is created here
and deleted on close() with every process started through the lab; nothing
is created outside them, so no frame leaves the lab. Shared by the target's
test files (test_neighbours.py, and the server-level ones beside it).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOST_MAC = "52:54:00:aa:00:01"
IMPOSTOR_MAC = "02:00:00:bb:00:02"
SERVER = {"v4": "10.90.0.1", "v6": "fd90::1"}
HOST = {"v4": "10.90.0.10", "v6": "fd90::10"}
IMPOSTOR = {"v4": "10.90.0.50", "v6": "fd90::50"}
ROUTER = {"v4": "10.90.0.254", "v6": "fd90::254"}
FAR = {"v4": "10.91.0.10", "v6": "fd91::10"}
NOBODY = {"v4": "10.90.0.99", "v6": "fd90::99"}
PORT = 8080
SEGMENT_NAMESPACES = ("srv", "host", "imp", "rtr")


def ip(*args):
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError("ip %s failed: %s" % (" ".join(args), done.stderr.strip()))
    return done.stdout


class TrustLab:
    """The namespaces above as a context manager; ``lab.ns("srv")`` is a namespace's full name."""

    def __init__(self):
        self.id = "nxt%d%s" % (os.getpid() % 100000, secrets.token_hex(2))
        self.created = []
        self.procs = []

    def ns(self, name):
        return "%s-%s" % (self.id, name)

    def __enter__(self):
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def _build(self):
        for name in ("seg",) + SEGMENT_NAMESPACES + ("far",):
            ip("netns", "add", self.ns(name))
            self.created.append(self.ns(name))
            # No duplicate address detection: a tentative link-local address can be neither bound nor chosen.
            self.run(["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0"], name)
            ip("-n", self.ns(name), "link", "set", "lo", "up")
        seg = self.ns("seg")
        ip("-n", seg, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        ip("-n", seg, "link", "set", "br0", "up")
        addresses = {"srv": (None, SERVER), "host": (HOST_MAC, HOST), "imp": (IMPOSTOR_MAC, IMPOSTOR),
                     "rtr": (None, ROUTER)}
        for name in SEGMENT_NAMESPACES:
            mac, address = addresses[name]
            ip("-n", seg, "link", "add", "p-" + name, "type", "veth", "peer", "name", "eth0", "netns", self.ns(name))
            ip("-n", seg, "link", "set", "p-" + name, "master", "br0", "up")
            if mac:
                ip("-n", self.ns(name), "link", "set", "eth0", "address", mac)
            ip("-n", self.ns(name), "addr", "add", address["v4"] + "/24", "dev", "eth0")
            ip("-n", self.ns(name), "addr", "add", address["v6"] + "/64", "dev", "eth0", "nodad")
            ip("-n", self.ns(name), "link", "set", "eth0", "up")
        rtr, far = self.ns("rtr"), self.ns("far")
        ip("-n", rtr, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", far)
        ip("-n", rtr, "addr", "add", "10.91.0.1/24", "dev", "eth1")
        ip("-n", rtr, "addr", "add", "fd91::1/64", "dev", "eth1", "nodad")
        ip("-n", rtr, "link", "set", "eth1", "up")
        ip("-n", far, "addr", "add", FAR["v4"] + "/24", "dev", "eth0")
        ip("-n", far, "addr", "add", FAR["v6"] + "/64", "dev", "eth0", "nodad")
        ip("-n", far, "link", "set", "eth0", "up")
        ip("-n", far, "route", "add", "default", "via", "10.91.0.1")
        ip("-n", far, "-6", "route", "add", "default", "via", "fd91::1")
        self.run(["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"], "rtr")
        ip("-n", self.ns("srv"), "route", "add", "10.91.0.0/24", "via", ROUTER["v4"])
        ip("-n", self.ns("srv"), "-6", "route", "add", "fd91::/64", "via", ROUTER["v6"])

    def run(self, cmd, name, check=True, timeout=30):
        """Run argv ``cmd`` to completion in namespace ``name`` (``srv``, ``host``...); text output."""
        done = subprocess.run(["ip", "netns", "exec", self.ns(name), *cmd], capture_output=True, text=True,
                              check=False, timeout=timeout)
        if check and done.returncode:
            raise RuntimeError("%s in %s failed (%d): %s%s" % (" ".join(cmd), name, done.returncode, done.stdout,
                                                               done.stderr))
        return done

    def popen(self, cmd, name, **kwargs):
        """Start argv ``cmd`` in namespace ``name``; it is stopped on close()."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(name), *cmd], **kwargs)  # pylint: disable=consider-using-with
        self.procs.append(proc)
        return proc

    def peer(self, name, *args, check=True):
        """peer.py in namespace ``name`` (a client connection, a forged ARP or NA)."""
        return self.run([sys.executable, str(HERE / "peer.py"), *args], name, check=check)

    def link_local(self, name):
        """The link-local IPv6 address of eth0 in namespace ``name``."""
        rows = json.loads(ip("-n", self.ns(name), "-j", "addr", "show", "dev", "eth0", "scope", "link"))
        return next(a["local"] for row in rows for a in row.get("addr_info", []) if a.get("family") == "inet6")

    def ifindex(self, name, dev="eth0"):
        return json.loads(ip("-n", self.ns(name), "-j", "link", "show", "dev", dev))[0]["ifindex"]

    def close(self):
        for proc in reversed(self.procs):
            stop(proc)
        self.procs.clear()
        for namespace in reversed(self.created):
            # Anything still inside our own namespaces was started by this lab.
            pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False).stdout
            for pid in pids.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        self.created.clear()


def stop(proc, timeout=5):
    """SIGTERM by PID, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


class Probe:
    """probe.py in the server namespace, as nobody: asks RouteNeighbours what the test says, one JSON line each."""

    def __init__(self, lab):
        self.proc = lab.popen([sys.executable, str(HERE / "probe.py"), str(PORT)], "srv", stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = self._line(15)
        if not ready.get("ready"):
            raise RuntimeError("probe.py did not start: %r" % ready)

    def _line(self, timeout):
        readable, dummy_w, dummy_x = select.select([self.proc.stdout], [], [], timeout)
        if not readable:
            raise TimeoutError("probe.py gave no answer in %s s" % timeout)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("probe.py ended (%s): %s" % (self.proc.wait(5), self.proc.stderr.read()[-3000:]))
        return json.loads(line)

    def send(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def ask(self, wait=15, **request):
        """Send one request and return its answer, waiting at most ``wait`` seconds."""
        self.send(**request)
        return self._line(wait)

    def answer(self, wait=15):
        return self._line(wait)


def wait_until(predicate, timeout, interval=0.05):
    """The first truthy value of ``predicate()`` within ``timeout`` seconds, else the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
