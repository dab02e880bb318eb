# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Captures the DHCPv4 conversations of the Linux clients an installer uses, against dnsmasq.

    python3 tests/lab/capture_dhcp_clients.py OUTDIR [CLIENT...]     (root; about 30 s for all)

CLIENT is any of udhcpc, dhcpcd, systemd-networkd (default: all). Writes ``udhcpc.pcap``
(busybox udhcpc: DORA, renew, release, a DISCOVER asking for a foreign address),
``dhcpcd.pcap`` (dhcpcd: DORA, renew, release, INIT-REBOOT of the remembered lease,
INIT-REBOOT of a lease the server no longer gives (NAK), DECLINE of an address another
machine holds) and ``systemd-networkd.pcap`` (systemd-networkd as NixOS runs it, see
nixielab/networkd.py: the installer's DORA, a renewal at T1 and the RELEASE it sends when
stopped, then the installed system's, whose DUID client identifier differs, DORA and
RELEASE) into OUTDIR. The addresses mode's unit tests replay the clients' packets from
these files (tests/unit/.../fixtures/leases/README.md).

Three namespaces on a bridge: ``nxcap-srv`` runs dnsmasq as an authoritative
address server (10.99.0.1/24, MAC 52:54:00:12:34:01 leased 10.99.0.50 by dhcp-host),
``nxcap-cli`` is the client's side (eth0 with that MAC), where tcpdump writes the pcap, and
``nxcap-sq`` takes the address dhcpcd is moved to, so that its ARP probe finds it (DECLINE). Everything
is removed at the end, also after a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nixielab import networkd  # noqa: E402  pylint: disable=wrong-import-position

SERVER_NS = "nxcap-srv"
CLIENT_NS = "nxcap-cli"
SQUATTER_NS = "nxcap-sq"
MAC = "52:54:00:12:34:01"
SERVER_IP = "10.99.0.1"
LEASED_IP = "10.99.0.50"
MOVED_IP = "10.99.0.60"
FOREIGN_IP = "10.99.0.77"
CLIENTS = ("udhcpc", "dhcpcd", "systemd-networkd")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def make_segment() -> None:
    sh("ip", "netns", "add", SERVER_NS)
    sh("ip", "netns", "add", CLIENT_NS)
    sh("ip", "netns", "add", SQUATTER_NS)
    sh(*in_ns(SERVER_NS, "ip", "link", "add", "nxcap0", "type", "bridge"))
    sh("ip", "link", "add", "nxcap1", "netns", SERVER_NS, "type", "veth", "peer", "name", "eth0", "netns", CLIENT_NS)
    sh("ip", "link", "add", "nxcap2", "netns", SERVER_NS, "type", "veth", "peer", "name", "eth0", "netns", SQUATTER_NS)
    for port in ("nxcap1", "nxcap2"):
        sh(*in_ns(SERVER_NS, "ip", "link", "set", port, "master", "nxcap0", "up"))
    sh(*in_ns(SERVER_NS, "ip", "addr", "add", SERVER_IP + "/24", "dev", "nxcap0"))
    sh(*in_ns(SERVER_NS, "ip", "link", "set", "nxcap0", "up"))
    sh(*in_ns(SQUATTER_NS, "ip", "link", "set", "eth0", "up"))
    sh(*in_ns(SERVER_NS, "ip", "link", "set", "lo", "up"))
    sh(*in_ns(CLIENT_NS, "ip", "link", "set", "eth0", "address", MAC))
    sh(*in_ns(CLIENT_NS, "ip", "link", "set", "eth0", "up"))
    sh(*in_ns(CLIENT_NS, "ip", "link", "set", "lo", "up"))


def remove_segment() -> None:
    for ns in (SERVER_NS, CLIENT_NS, SQUATTER_NS):
        sh("ip", "netns", "del", ns, check=False)


def start_dnsmasq(work: Path, leased_ip: str, host_lease: str = "", extra: tuple[str, ...] = (),
                  leasefile: str = "leases") -> subprocess.Popen:
    return subprocess.Popen(in_ns(
        SERVER_NS, "dnsmasq", "--keep-in-foreground", "--no-daemon", "--port=0", "--bind-interfaces",
        "--interface=nxcap0", "--dhcp-authoritative", "--no-ping", "--dhcp-range=10.99.0.100,10.99.0.199,255.255.255.0,1h",
        "--dhcp-host=%s,%s%s" % (MAC, leased_ip, "," + host_lease if host_lease else ""), "--dhcp-option=option:router," + SERVER_IP,
        "--dhcp-option=option:dns-server," + SERVER_IP, "--dhcp-leasefile=%s" % (work / leasefile),
        "--pid-file=%s" % (work / "dnsmasq.pid"), "--log-dhcp", *extra,
    ), stdout=subprocess.DEVNULL, stderr=open(work / "dnsmasq.log", "a"))


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def capture(path: Path) -> subprocess.Popen:
    tcpdump = subprocess.Popen(in_ns(CLIENT_NS, "tcpdump", "--immediate-mode", "-i", "eth0", "-U", "-w", str(path), "udp port 67 or udp port 68"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # tcpdump says "listening on" once the capture is open.
    tcpdump.stderr.readline()
    return tcpdump


def udhcpc_conversations(work: Path) -> None:
    script = work / "udhcpc.sh"
    # The default script would configure the interface; the renew must come from the leased address.
    script.write_text("#!/bin/sh\ncase $1 in bound|renew) ip addr flush dev $interface; "
                      "ip addr add $ip/$mask dev $interface;; deconfig) ip addr flush dev $interface;; esac\n")
    script.chmod(0o755)
    client = subprocess.Popen(in_ns(CLIENT_NS, "busybox", "udhcpc", "-f", "-R", "-i", "eth0", "-s", str(script), "-x", "0x3d:0152540012340a"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_address(LEASED_IP)
    client.send_signal(signal.SIGUSR1)  # renew: a unicast REQUEST from the leased address
    time.sleep(1.5)
    stop(client)  # -R: RELEASE on exit
    time.sleep(0.5)
    sh(*in_ns(CLIENT_NS, "busybox", "udhcpc", "-f", "-q", "-n", "-i", "eth0", "-s", str(script), "-r", FOREIGN_IP))
    sh(*in_ns(CLIENT_NS, "ip", "addr", "flush", "dev", "eth0"))


def dhcpcd_conversations(work: Path, dnsmasq: subprocess.Popen) -> subprocess.Popen:
    """Runs dhcpcd's cases in a private mount namespace (its database and control socket)."""
    state = work / "dhcpcd-state"
    state.mkdir()
    run = work / "dhcpcd-run"
    run.mkdir()
    conf = work / "dhcpcd.conf"
    conf.write_text("option domain_name_servers, routers, subnet_mask\nnohook resolv.conf\n")
    common = "dhcpcd -4 -f %s -c /bin/true" % conf
    # Each step waits for the address it expects; dhcpcd -B stays in the foreground.
    prelude = f"""
set -e
mount --bind {state} /var/lib/dhcpcd
mount --bind {run} /run
wait_for() {{ i=0; until ip -4 addr show dev eth0 | grep -q "inet $1/"; do i=$((i+1)); [ $i -lt 100 ] || exit 3; sleep 0.1; done; }}
wait_gone() {{ i=0; while ip -4 addr show dev eth0 | grep -q "inet $1/"; do i=$((i+1)); [ $i -lt 100 ] || exit 4; sleep 0.1; done; }}
"""
    (work / "dhcpcd-1.sh").write_text(prelude + f"""
{common} --noarp -B eth0 & pid=$!
wait_for {LEASED_IP}
{common} -N eth0; sleep 1.5
{common} -x eth0; wait $pid || true
{common} --noarp -B eth0 & pid=$!
wait_for {LEASED_IP}
{common} -k eth0; wait $pid || true
wait_gone {LEASED_IP}
{common} --noarp -B eth0 & pid=$!
wait_for {LEASED_IP}
{common} -x eth0; wait $pid || true
""")
    sh(*in_ns(CLIENT_NS, "unshare", "-m", "sh", str(work / "dhcpcd-1.sh")))
    # The server moves the host to another address: the remembered lease gets a NAK at INIT-REBOOT.
    stop(dnsmasq)
    dnsmasq = start_dnsmasq(work, MOVED_IP)
    time.sleep(0.5)
    (work / "dhcpcd-2.sh").write_text(prelude + f"""
{common} --noarp -B eth0 & pid=$!
wait_for {MOVED_IP}
{common} -x eth0; wait $pid || true
""")
    sh(*in_ns(CLIENT_NS, "unshare", "-m", "sh", str(work / "dhcpcd-2.sh")))
    # Another machine holds the address: dhcpcd's ARP probe finds it and it sends DECLINE.
    sh(*in_ns(SQUATTER_NS, "ip", "addr", "add", MOVED_IP + "/24", "dev", "eth0"))
    (work / "dhcpcd-3.sh").write_text(prelude + f"""
rm -f /var/lib/dhcpcd/*.lease
timeout 8 {common} -B eth0 || true
""")
    sh(*in_ns(CLIENT_NS, "unshare", "-m", "sh", str(work / "dhcpcd-3.sh")))
    return dnsmasq


def networkd_conversations(work: Path, dnsmasq: subprocess.Popen) -> subprocess.Popen:
    """systemd-networkd as the installer (DORA, a renewal, RELEASE when stopped), then as the installed
    system, whose other machine id makes another DUID client identifier (DORA, RELEASE when stopped)."""
    # dnsmasq's shortest lease is 2 minutes; a T1 of 5 s brings networkd's renewal within seconds.
    stop(dnsmasq)
    dnsmasq = start_dnsmasq(work, LEASED_IP, "2m", ("--dhcp-option=option:T1,5",), "networkd-leases")
    time.sleep(0.5)
    for name, machine_id, renewals in (("installer", networkd.INSTALLER_MACHINE_ID, 1),
                                       ("installed", networkd.INSTALLED_MACHINE_ID, 0)):
        log = work / ("networkd-%s.log" % name)
        mark = len(_dnsmasq_log(work))
        with open(log, "wb") as stderr:
            client = subprocess.Popen(in_ns(CLIENT_NS, *networkd.command(work / ("networkd-" + name), machine_id)),
                                      stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            _wait_for_address(LEASED_IP, client, log)
            _wait_for_dnsmasq(work, mark, "DHCPACK(nxcap0) %s " % LEASED_IP, 1 + renewals, 15)
        finally:
            stop(client)
        if client.returncode != 0:
            raise SystemExit("systemd-networkd (%s) exited %s:\n%s" % (name, client.returncode, log.read_text(errors="replace")[-3000:]))
        # systemd 252's RELEASE carries no server identifier (RFC 2131 table 5 wants one), so dnsmasq
        # drops it without a log line: the capture alone shows it (the unit tests look for it there).
        time.sleep(0.3)
        # networkd leaves the address behind when it stops; the next client starts from none.
        sh(*in_ns(CLIENT_NS, "ip", "addr", "flush", "dev", "eth0"))
    return dnsmasq


def _dnsmasq_log(work: Path) -> str:
    return (work / "dnsmasq.log").read_text(errors="replace")


def _wait_for_dnsmasq(work: Path, mark: int, needle: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _dnsmasq_log(work)[mark:].count(needle) < count:
        if time.monotonic() > deadline:
            raise SystemExit("dnsmasq logged %r fewer than %d times in %d s" % (needle.strip(), count, timeout))
        time.sleep(0.1)


def _wait_for_address(address: str, client: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if ("inet %s/" % address) in sh(*in_ns(CLIENT_NS, "ip", "-4", "addr", "show", "dev", "eth0")).stdout:
            return
        if client is not None and client.poll() is not None:
            break
        time.sleep(0.1)
    tail = ("\n" + log.read_text(errors="replace")[-3000:]) if log is not None and log.exists() else ""
    raise SystemExit("the client never got %s%s" % (address, tail))


def main() -> None:
    if len(sys.argv) < 2 or not set(sys.argv[2:]) <= set(CLIENTS):
        raise SystemExit(__doc__)
    if os.geteuid() != 0:
        raise SystemExit("run as root: it makes network namespaces")
    out = Path(sys.argv[1]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    clients = [name for name in CLIENTS if name in sys.argv[2:]] or list(CLIENTS)
    with tempfile.TemporaryDirectory(prefix="nxcap.") as tmp:
        work = Path(tmp)
        remove_segment()
        make_segment()
        dnsmasq = start_dnsmasq(work, LEASED_IP)
        try:
            time.sleep(0.5)
            for name in clients:
                tcpdump = capture(out / ("%s.pcap" % name))
                try:
                    if name == "udhcpc":
                        udhcpc_conversations(work)
                    elif name == "dhcpcd":
                        dnsmasq = dhcpcd_conversations(work, dnsmasq)
                    else:
                        dnsmasq = networkd_conversations(work, dnsmasq)
                    time.sleep(0.5)
                finally:
                    stop(tcpdump, signal.SIGINT)
        finally:
            stop(dnsmasq)
            remove_segment()
            print(_dnsmasq_log(work)[-3000:], file=sys.stderr)
    print("wrote", *(out / ("%s.pcap" % name) for name in clients))


if __name__ == "__main__":
    main()
