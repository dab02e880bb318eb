# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private network topology for netboot tests, always cleaned up.

::

    netns <id>-site                     netns <id>-lab
    +--------------------+   veth   +------------------------------------+
    | eth0 10.N.0.2/24   |----------| site0 --+                           |
    |      fd77::2/64    |          |         br0 10.N.0.1/24 (controller)|
    | dnsmasq: addresses |          | tap0 ---+   fd77::1/64              |
    | only + IPv6 RA     |          | tap1 ---+   server under test runs  |
    +--------------------+          |             here (Lab.popen)        |
                                    +------------------------------------+

Names carry a per-run id, so parallel runs never clash; nothing is
created in the root namespace, so no traffic leaves the namespaces.
Addresses can repeat between runs because each run has its own namespaces.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

BRIDGE = "br0"
SITE_VETH_LAB = "site0"   # bridge port, lab side
SITE_VETH = "eth0"        # inside the site namespace
IPV6_PREFIX = "fd77::"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def wait_for_file_text(path: Path, needle: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll a log file until it contains ``needle`` (or the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text(errors="replace"):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited ({proc.returncode}) before "
                               f"{needle!r} appeared in {path}:\n{path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    raise TimeoutError(f"{needle!r} not in {path} after {timeout}s")


def stop_process(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM by PID, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


class Capture:
    """dumpcap on the lab bridge, writing classic pcap (what scapy's rdpcap reads)."""

    def __init__(self, lab: "Lab", path: Path, capture_filter: str | None = None,
                 interface: str = BRIDGE) -> None:
        self.lab = lab
        self.path = Path(path)
        self.filter = capture_filter
        self.interface = interface
        self.proc: subprocess.Popen | None = None
        self._log = self.lab.workdir / f"dumpcap-{secrets.token_hex(3)}.log"

    def start(self, timeout: float = 10.0) -> "Capture":
        """Start and return only once dumpcap is capturing (so no early packet is lost)."""
        cmd = ["dumpcap", "-P", "-i", self.interface, "-w", str(self.path)]
        if self.filter:
            cmd += ["-f", self.filter]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._log, "wb") as log:
            self.proc = self.lab.popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_for_file_text(self._log, "Capturing on", timeout, self.proc)
        return self

    def stop(self) -> Path:
        """Stop dumpcap (SIGTERM flushes the file) and return the pcap path."""
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        return self.path

    def __enter__(self) -> "Capture":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Lab:
    """The topology as a context manager.

    ``with Lab() as lab:`` creates the namespaces, bridge, site veth and (by
    default) the site DHCP server; leaving the block stops every process
    started through ``lab.popen`` (and anything else still in the
    namespaces), deletes the namespaces and removes the work directory
    (kept when NIXIE_LAB_KEEP=1, or ``keep_workdir=True``).
    """

    def __init__(self, subnet: str = "10.77.0", *, site_dhcp: bool = True,
                 site_extra: list[str] | None = None, lease: str = "2m",
                 workdir: str | os.PathLike | None = None, keep_workdir: bool | None = None) -> None:
        self.id = f"nxl{os.getpid() % 100000}{secrets.token_hex(2)}"
        self.lab_ns = f"{self.id}-lab"
        self.site_ns = f"{self.id}-site"
        self.subnet = subnet
        self.controller_ip = f"{subnet}.1"
        self.site_ip = f"{subnet}.2"
        self.cidr = f"{subnet}.0/24"
        self.bridge = BRIDGE
        self.site_dhcp = site_dhcp
        self.site_extra = list(site_extra or [])
        self.lease = lease
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"{self.id}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._own_workdir:
            # The netboot server reads what it serves as nobody once bound (pxe_server's user).
            self.workdir.chmod(0o755)
        self.keep_workdir = (os.environ.get("NIXIE_LAB_KEEP") == "1") if keep_workdir is None else keep_workdir
        self.procs: list[subprocess.Popen] = []
        self.taps: list[str] = []
        self.site_dnsmasq: subprocess.Popen | None = None
        self._created: list[str] = []

    # ---------------------------------------------------------------- setup
    def __enter__(self) -> "Lab":
        try:
            self._create_namespaces()
            self._create_bridge()
            self._create_site_link()
            if self.site_dhcp:
                self.site_dnsmasq = self.start_site_dhcp(self.site_extra)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _create_namespaces(self) -> None:
        for ns in (self.lab_ns, self.site_ns):
            _ip("netns", "add", ns)
            self._created.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")

    def _create_bridge(self) -> None:
        """Bridge without STP so new ports forward at once (firmware does not wait)."""
        ns = self.lab_ns
        _ip("-n", ns, "link", "add", self.bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        _ip("-n", ns, "addr", "add", f"{self.controller_ip}/24", "dev", self.bridge)
        _ip("-n", ns, "addr", "add", f"{IPV6_PREFIX}1/64", "dev", self.bridge, "nodad")
        _ip("-n", ns, "link", "set", self.bridge, "up")

    def _create_site_link(self) -> None:
        _ip("-n", self.lab_ns, "link", "add", SITE_VETH_LAB, "type", "veth",
            "peer", "name", SITE_VETH, "netns", self.site_ns)
        _ip("-n", self.lab_ns, "link", "set", SITE_VETH_LAB, "master", self.bridge, "up")
        _ip("-n", self.site_ns, "addr", "add", f"{self.site_ip}/24", "dev", SITE_VETH)
        _ip("-n", self.site_ns, "addr", "add", f"{IPV6_PREFIX}2/64", "dev", SITE_VETH, "nodad")
        _ip("-n", self.site_ns, "link", "set", SITE_VETH, "up")

    def site_dhcp_config(self, extra: list[str] | None = None) -> str:
        """dnsmasq as the site's DHCP server: addresses only, fast.

        no-ping: else dnsmasq probes each address ~3 s before offering.
        RA-only IPv6: else iPXE (2019) waits ~16 s for a router advertisement.
        Option 3/6 empty: no router or DNS on an isolated segment.
        """
        lines = [
            "port=0", f"interface={SITE_VETH}", "bind-interfaces",
            f"dhcp-range={self.subnet}.100,{self.subnet}.199,255.255.255.0,{self.lease}",
            "no-ping", "dhcp-option=3", "dhcp-option=6",
            f"dhcp-leasefile={self.workdir / 'site.leases'}",
            "enable-ra", f"dhcp-range={IPV6_PREFIX},ra-only",
            "log-dhcp", f"log-facility={self.workdir / 'site-dnsmasq.log'}",
            "user=root", "group=root", "pid-file=",
        ]
        return "\n".join(lines + list(extra or [])) + "\n"

    def start_site_dhcp(self, extra: list[str] | None = None) -> subprocess.Popen:
        """(Re)start the site DHCP server with extra dnsmasq lines appended."""
        if self.site_dnsmasq is not None:
            stop_process(self.site_dnsmasq)
        conf = self.workdir / "site-dnsmasq.conf"
        conf.write_text(self.site_dhcp_config(extra))
        log = self.workdir / "site-dnsmasq.log"
        log.unlink(missing_ok=True)
        proc = self.popen(["dnsmasq", "-k", f"--conf-file={conf}"], ns=self.site_ns,
                          stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for_file_text(log, "DHCP, IP range", 10, proc)
        self.site_dnsmasq = proc
        return proc

    # ------------------------------------------------------------ interfaces
    def add_tap(self, name: str | None = None) -> str:
        """A tap on the bridge for one VM (QEMU must run inside the lab namespace)."""
        name = name or f"tap{len(self.taps)}"
        _ip("-n", self.lab_ns, "tuntap", "add", "dev", name, "mode", "tap")
        _ip("-n", self.lab_ns, "link", "set", name, "master", self.bridge, "up")
        self.taps.append(name)
        return name

    def add_machine(self, mac: str, address: str) -> str:
        """A namespace on the bridge whose NIC has ``mac`` and ``address``/24: a stand-in machine's own link.

        The server serves a host's script and phone-home only to the host's MAC (docs/security.md),
        so whatever poses as a machine must send from its MAC. Returns the namespace's name; it is
        deleted with the lab.
        """
        ns = f"{self.id}-m{len(self._created)}"
        veth = f"vm{len(self._created)}"
        _ip("netns", "add", ns)
        self._created.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", self.lab_ns, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("-n", self.lab_ns, "link", "set", veth, "master", self.bridge, "up")
        _ip("-n", ns, "link", "set", "eth0", "address", mac)
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        return ns

    # ------------------------------------------------------------- commands
    def wrap(self, cmd: list[str], ns: str | None = None) -> list[str]:
        """argv that runs ``cmd`` inside a namespace (default: lab)."""
        return ["ip", "netns", "exec", ns or self.lab_ns, *cmd]

    def run(self, cmd: list[str] | str, ns: str | None = None, **kwargs) -> subprocess.CompletedProcess:
        """Run to completion inside the lab namespace; check=True and text output by default."""
        if isinstance(cmd, str):
            cmd = shlex.split(cmd)
        check = kwargs.pop("check", True)
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.wrap(cmd, ns), check=check, **kwargs)

    def popen(self, cmd: list[str], ns: str | None = None, **kwargs) -> subprocess.Popen:
        """Start a background process in a namespace; it is stopped on close()."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self.wrap(cmd, ns), **kwargs)
        self.procs.append(proc)
        return proc

    def capture(self, path: str | os.PathLike, capture_filter: str | None = None) -> Capture:
        """Packet capture on the bridge; use as ``with lab.capture(p):`` or start()/stop()."""
        return Capture(self, Path(path), capture_filter)

    # -------------------------------------------------------------- cleanup
    def _kill_leftovers(self, ns: str) -> None:
        """Kill processes still inside our own namespace (all started by this lab)."""
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout
        for pid in (int(p) for p in out.split()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        """Stop processes (newest first), delete namespaces, drop the work dir."""
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                stop_process(proc)
        self.procs.clear()
        for ns in reversed(self._created):
            self._kill_leftovers(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self._created.clear()
        if self._own_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def cleanup_stale(prefix: str = "nxl") -> list[str]:
    """Delete namespaces left by crashed runs whose creating process is gone."""
    removed = []
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(prefix) and name.endswith(("-lab", "-site")):
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False).stdout.split()
            if not pids:
                subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
                removed.append(name)
    return removed
