# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rack benches' network and servers: two private namespaces, our server, the anchors.

::

    netns <id>-srv                         netns <id>-cli
    srv0 10.77.0.1/16  ------- veth ------- cli0 10.77.0.2/16
    one server at a time, pinned             +- m0  macvlan, machine_mac(0), 10.77.1.1/16
    to CPU 0: ours (pxe_server's plan +      +- m1  macvlan, machine_mac(1), 10.77.1.2/16
    run), dnsmasq (proxy + TFTP), nginx      +- ... one per machine; simulated clients (AF_PACKET
                                                frames for DHCP on cli0, the kernel's stack for
                                                4011 replies, TFTP and HTTP), pinned to the other CPU

Each machine is its own NIC on the link (``Rack(own_links=True)``, the
default): a macvlan with the machine's MAC and address, so the server's ARP
request for a machine's address is answered by that machine's MAC and by no
other (``arp_ignore=1``), and the server's neighbour table holds, for each
machine's address, that machine's MAC, as on a rack's switch. The server's
trust check (``peer_check``) compares exactly that entry with the host's MAC.
A machine's sockets are bound to its interface (``_simclient.machine_socket``),
so its packets leave with its own MAC. ``Rack(own_links=False)`` keeps every
machine's address on cli0 (one MAC for all): the DHCP-only bench uses it,
because the check is not made on DHCP and a broadcast answer fanned out to a
thousand macvlans would be client work on the server's CPU.

Servers are children of the bench; when one ends, ``os.wait4`` gives its own
rusage (CPU seconds and peak RSS). Everything is removed on exit, whatever
happens.

Also the entry point that runs our server exactly as the pxe_server module
does (``_pxe_server.plan`` then ``_pxe_server.run``):
``python bench/_simnet.py serve PARAMS.json RESULT.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)
import _common  # noqa: E402

SERVER_IP = "10.77.0.1"
# Fixed, locally administered: the machines' static neighbour entries for the server name it.
SERVER_MAC = "02:77:00:00:00:01"
CLIENT_GATEWAY_IP = "10.77.0.2"
PREFIX = 16
SERVER_IF = "srv0"
CLIENT_IF = "cli0"
HTTP_PORT = 8080
IPXE_DIR = "/usr/lib/ipxe"


def machine_ip(index):
    """The address of machine ``index`` (0-based): 10.77.1.1 onwards, 250 per /24."""
    return "10.77.%d.%d" % (1 + index // 250, 1 + index % 250)


def machine_mac(index):
    return "52:54:00:5c:%02x:%02x" % (index // 256, index % 256)


def machine_if(index):
    """The name of machine ``index``'s own interface (a macvlan on cli0) in the client namespace."""
    return "m%d" % index


def cpu_plan():
    """(server CPUs, client CPUs) as taskset lists: one each on a 2-core machine."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return str(cpus[0]), ",".join(str(c) for c in cpus[1:])


# Scheduling priority of every server and client process of a bench: the machine may be shared
# with other jobs, and the simulated machines each stand for a computer of their own. Servers and
# anchors get the same. NIXIE_BENCH_NICE=0 runs everything at normal priority.
BENCH_NICE = int(os.environ.get("NIXIE_BENCH_NICE", "-10"))


def pinned(cpus, argv):
    prefix = ["taskset", "-c", cpus] if cpus and shutil.which("taskset") else []
    if BENCH_NICE and os.geteuid() == 0:
        prefix = ["nice", "-n", str(BENCH_NICE)] + prefix
    return prefix + list(argv)


def _ip(*args, stdin=None):
    subprocess.run(["ip", *args], check=True, input=stdin, capture_output=True, text=True)


class Rack:
    """The two namespaces, the veth between them and ``machines`` machines (each its own macvlan with ``own_links``)."""

    def __init__(self, machines, tag="rack", own_links=True):
        self.machines = machines
        self.own_links = own_links
        self.srv = "nxs%d-%s-srv" % (os.getpid(), tag)
        self.cli = "nxs%d-%s-cli" % (os.getpid(), tag)
        self.server_cpus, self.client_cpus = cpu_plan()

    def __enter__(self):
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def _create(self):
        for ns in (self.srv, self.cli):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            # No IPv6: no DAD, router solicitations or MLD reports among the measured frames.
            self.run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"], ns)
        _ip("-n", self.srv, "link", "add", SERVER_IF, "address", SERVER_MAC, "type", "veth", "peer", "name", CLIENT_IF,
            "netns", self.cli)
        _ip("-n", self.srv, "addr", "add", "%s/%d" % (SERVER_IP, PREFIX), "dev", SERVER_IF)
        for ns, dev in ((self.srv, SERVER_IF), (self.cli, CLIENT_IF)):
            _ip("-n", ns, "link", "set", dev, "up")
        lines = ["addr add %s/%d dev %s" % (CLIENT_GATEWAY_IP, PREFIX, CLIENT_IF)]
        if self.own_links:
            # Linux answers ARP for any of its addresses on any interface by default; a machine's
            # address must be answered by its own MAC only, as its NIC would (arp_ignore=1), and the
            # ARP it sends must carry that address (arp_announce=2). The effective value is the larger
            # of "all" and the interface's, so "all" covers cli0 and every macvlan. rp_filter stays off:
            # every machine's /16 is on a thousand interfaces, and the reverse route names only the first.
            self.run(["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
                      "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"], self.cli)
            lines += self._machine_lines()
        else:
            lines += ["addr add %s/%d dev %s" % (machine_ip(i), PREFIX, CLIENT_IF) for i in range(self.machines)]
        _ip("-n", self.cli, "-batch", "-", stdin="\n".join(lines) + "\n")

    def _machine_lines(self):
        """``ip -batch`` lines that give each machine its own macvlan on cli0: its MAC, its address, up.

        Each machine's entry for the server is static: the kernel keeps one neighbour table for
        every namespace, with room for 1,024 entries by default (gc_thresh3), and a thousand
        machines' entries for the server beside the server's thousand for the machines would
        overflow it, which a real rack, one table per machine, never does. The server's own
        entries, the ones the check reads, stay learnt from the machines' ARP replies.
        """
        lines = []
        for index in range(self.machines):
            dev = machine_if(index)
            lines += ["link add link %s name %s address %s type macvlan mode bridge" % (CLIENT_IF, dev, machine_mac(index)),
                      "addr add %s/%d dev %s" % (machine_ip(index), PREFIX, dev),
                      "link set %s up" % dev,
                      "neigh replace %s lladdr %s dev %s nud permanent" % (SERVER_IP, SERVER_MAC, dev)]
        return lines

    def neighbours(self, count=None):
        """What the server's neighbour table says of the first ``count`` machines (default: all), from ``ip -j neigh``.

        ``right``: addresses whose entry holds the machine's own MAC; ``wrong``: another MAC
        (the first few, with the MAC seen); ``missing``: no entry with a MAC (never asked, or
        garbage-collected). With ``own_links`` every entry must be right.
        """
        count = self.machines if count is None else count
        out = self.run(["ip", "-j", "neigh", "show", "dev", SERVER_IF], self.srv, text=True).stdout
        seen = {entry["dst"]: entry.get("lladdr") for entry in json.loads(out or "[]") if entry.get("lladdr")}
        right, wrong, missing = 0, [], 0
        for index in range(count):
            mac = seen.get(machine_ip(index))
            if mac is None:
                missing += 1
            elif mac.lower() == machine_mac(index):
                right += 1
            else:
                wrong.append({"ip": machine_ip(index), "mac_seen": mac, "mac": machine_mac(index)})
        return {"machines": count, "right": right, "wrong": len(wrong), "wrong_first": wrong[:5], "missing": missing}

    def wrap(self, argv, ns, cpus=None):
        return ["ip", "netns", "exec", ns] + pinned(cpus, argv)

    def run(self, argv, ns, check=True, capture_output=True, **kwargs):
        return subprocess.run(["ip", "netns", "exec", ns] + list(argv), check=check, capture_output=capture_output, **kwargs)

    def close(self):
        for ns in (self.srv, self.cli):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout.split()
            for pid in pids:  # only processes inside our own namespaces
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


# ------------------------------------------------------------------ server processes


class ServerProcess:
    """A server child of the bench; ``stop()`` returns its own rusage figures."""

    def __init__(self, name, argv, log_path, ready):
        self.name = name
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.usage = None
        self.exit_code = None
        deadline = time.monotonic() + 30
        while not ready():
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited (%s) before it was ready:\n%s" % (name, self.proc.returncode, self.log_tail()))
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("%s was not ready after 30 s:\n%s" % (name, self.log_tail()))
            time.sleep(0.05)

    def log_tail(self, size=3000):
        with open(self.log_path, "rb") as handle:
            return handle.read()[-size:].decode("utf-8", "replace")

    def cpu_now(self):
        """utime + stime so far of the process and its descendants (pxe_server serves from a child), from /proc."""
        return _common.tree_cpu(self.proc.pid)

    def wait(self, timeout):
        """Wait for the process to end by itself; True if it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._reap(os.WNOHANG):
                return True
            time.sleep(0.05)
        return False

    def _reap(self, flags):
        if self.usage is not None:
            return True
        pid, status, usage = os.wait4(self.proc.pid, flags)
        if pid == 0:
            return False
        self.exit_code = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.exit_code
        # ru_maxrss is in KiB on Linux; wait4 counts the process and the children it reaped.
        self.usage = {"cpu_user_s": round(usage.ru_utime, 3), "cpu_system_s": round(usage.ru_stime, 3),
                      "cpu_s": round(usage.ru_utime + usage.ru_stime, 3), "peak_rss_mib": round(usage.ru_maxrss / 1024.0, 1)}
        return True

    def stop(self, timeout=15):
        """SIGTERM by PID, SIGKILL after ``timeout``; returns the rusage figures."""
        if self.usage is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            if not self.wait(timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self._reap(0)
        return dict(self.usage, exit_code=self.exit_code)


def write_hosts(path, count, with_ip=False):
    """A hosts.json of ``count`` machines; ``with_ip``: each with its address as ``ip`` (the addresses mode)."""
    hosts = {"rack%04d" % i: dict({"mac_address": machine_mac(i)}, **({"ip": machine_ip(i)} if with_ip else {}))
             for i in range(count)}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(hosts, handle)
    return path


def start_ours(rack, workdir, hosts, kernel, initrd, linger=1.0, tag="ours", peer_check=True, extra=None, with_ip=False):
    """Our server in the server namespace, started as pxe_server starts it (plan + run); ``peer_check`` is its option,
    ``extra`` more of its options, ``with_ip`` gives every host its ``ip``."""
    run_dir = os.path.join(workdir, "run-" + tag)
    params = {"hosts_file": write_hosts(os.path.join(workdir, "hosts.json"), hosts, with_ip), "kernel": kernel,
              "initrd": initrd, "interface": SERVER_IF, "address": SERVER_IP, "run_dir": run_dir,
              "max_duration": 3000, "idle_timeout": 600, "linger": linger, "http_port": HTTP_PORT,
              "ipxe_dir": IPXE_DIR, "peer_check": peer_check}
    params.update(extra or {})
    params_path = os.path.join(workdir, "params-%s.json" % tag)
    with open(params_path, "w", encoding="utf-8") as handle:
        json.dump(params, handle)
    result_path = os.path.join(workdir, "result-%s.json" % tag)
    argv = rack.wrap([sys.executable, os.path.abspath(__file__), "serve", params_path, result_path], rack.srv, rack.server_cpus)
    state = os.path.join(run_dir, "pxe_server.json")
    server = ServerProcess("nixie.metal", argv, os.path.join(workdir, "%s.log" % tag), lambda: os.path.exists(state))
    server.result_path = result_path
    return server


def read_result(server):
    try:
        with open(server.result_path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


DNSMASQ_CONF = """\
port=0
interface={iface}
bind-interfaces
dhcp-range={subnet},proxy,255.255.0.0
user=root
group=root
pid-file=
quiet-dhcp
enable-tftp
tftp-root={tftp_root}
tftp-max={tftp_max}
dhcp-userclass=set:ipxe,iPXE
pxe-prompt="nixie bench",0
pxe-service=tag:!ipxe,X86-64_EFI,"ipxe.efi",ipxe.efi
pxe-service=tag:ipxe,X86-64_EFI,"script",{script}
pxe-service=tag:!ipxe,BC_EFI,"ipxe.efi",ipxe.efi
pxe-service=tag:ipxe,BC_EFI,"script",{script}
log-facility={log}
"""


def start_dnsmasq(rack, workdir, tftp_max=256):
    """dnsmasq in proxy mode (+ TFTP of the same iPXE binaries), the anchor of the DHCP figures.

    OVMF's arch 7 is dnsmasq's BC_EFI; both x86-64 UEFI names are given, as in tests/lab.
    iPXE gets the fixed script URL nginx serves (dnsmasq cannot put the MAC in it).
    """
    log = os.path.join(workdir, "dnsmasq.log")
    conf = os.path.join(workdir, "dnsmasq.conf")
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write(DNSMASQ_CONF.format(iface=SERVER_IF, subnet="10.77.0.0", tftp_root=IPXE_DIR, tftp_max=tftp_max,
                                         script="http://%s:%d/boot.ipxe" % (SERVER_IP, HTTP_PORT), log=log))
    argv = rack.wrap(["dnsmasq", "-k", "--conf-file=" + conf], rack.srv, rack.server_cpus)

    def ready():
        return os.path.exists(log) and "TFTP root" in open(log, encoding="utf-8", errors="replace").read()
    return ServerProcess("dnsmasq", argv, os.path.join(workdir, "dnsmasq.out"), ready)


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 16384;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{
    worker_connections 8192;
}}
http {{
    sendfile on;
    access_log off;
    client_body_temp_path {work}/client_body;
    default_type application/octet-stream;
    server {{
        listen {ip}:{port} backlog=4096;
        root {www};
        location = /boot.ipxe {{ default_type text/plain; }}
        location ~ ^/boot/[^/]+/kernel$ {{ rewrite ^ /kernel break; }}
        location ~ ^/boot/[^/]+/initrd$ {{ rewrite ^ /initrd break; }}
        location = /api/v1/phone-home {{ default_type application/json; return 200 '{{"ok": true}}'; }}
    }}
}}
"""

# What the anchor's iPXE gets: dnsmasq hands every iPXE the same URL, so the MAC comes from
# iPXE's own ${net0/mac}, as in a hand-made dnsmasq + web server setup.
ANCHOR_SCRIPT = """#!ipxe
kernel http://{ip}:{port}/boot/${{net0/mac}}/kernel initrd=initrd nixie.api=http://{ip}:{port}/api/v1 \
nixie.token=anchor-token-0123456789 nixie.mac=${{net0/mac}}
initrd --name initrd http://{ip}:{port}/boot/${{net0/mac}}/initrd
boot
"""


def start_nginx(rack, workdir, kernel, initrd):
    """nginx (one worker, sendfile, no access log), the anchor of the HTTP figures."""
    binary = _common.ensure_nginx()
    work = os.path.join(workdir, "nginx")
    www = os.path.join(work, "www")
    os.makedirs(www, exist_ok=True)
    for name, source in (("kernel", kernel), ("initrd", initrd)):
        target = os.path.join(www, name)
        if not os.path.exists(target):
            os.link(source, target) if os.stat(source).st_dev == os.stat(www).st_dev else shutil.copy(source, target)
    with open(os.path.join(www, "boot.ipxe"), "w", encoding="utf-8") as handle:
        handle.write(ANCHOR_SCRIPT.format(ip=SERVER_IP, port=HTTP_PORT))
    for path in (workdir, work, www):
        os.chmod(path, 0o755)  # nginx's worker runs unprivileged
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write(NGINX_CONF.format(work=work, www=www, ip=SERVER_IP, port=HTTP_PORT))
    argv = rack.wrap([binary, "-p", work + "/", "-c", conf, "-e", os.path.join(work, "nginx-error.log")], rack.srv, rack.server_cpus)

    def ready():
        return rack.run(["curl", "-sf", "-o", "/dev/null", "http://%s:%d/boot.ipxe" % (SERVER_IP, HTTP_PORT)],
                        rack.srv, check=False).returncode == 0
    return ServerProcess("nginx", argv, os.path.join(work, "nginx.out"), ready)


def make_file(path, size, seed):
    """``size`` bytes of pseudo-random data (a fixed seed: both servers serve the same bytes)."""
    import random  # pylint: disable=import-outside-toplevel
    generator = random.Random(seed)
    block = generator.randbytes(1 << 20)
    with open(path, "wb") as handle:
        left = size
        while left > 0:
            handle.write(block[:min(left, len(block))])
            left -= len(block)
            block = block[1:] + block[:1]
    os.chmod(path, 0o644)
    return path


# ------------------------------------------------------------------ the trust check, on and off

PEER_CHECK_CHOICES = ("on", "off", "both")
UNCHECKED = "ours_unchecked"


def our_variants(peer_check):
    """[(name, peer_check option)] of our server for ``--peer-check on|off|both``.

    ``both`` runs our server twice per round, the check on (``ours``) and off
    (``ours_unchecked``), so its cost is read from the same run, the same
    namespaces and the same minutes.
    """
    if peer_check == "both":
        return [("ours", True), (UNCHECKED, False)]
    return [("ours", peer_check == "on")]


def add_peer_check_option(parser):
    parser.add_argument("--peer-check", choices=PEER_CHECK_CHOICES, default="on",
                        help="our server's peer_check option: on (default), off, or both (each round runs ours with "
                             "the check on and off, in alternating order: the check's cost, same run)")


def binding_kind(host):
    """How the server judged a host's phone-home, from its result row's ``binding``.

    ``arp_right``: checked in the neighbour table, which held the host's own MAC;
    ``arp_other``: checked, another MAC (never admitted: a defect if it shows);
    ``unchecked``: let in without the check (``peer_check: false``); ``none``: no phone-home.
    """
    binding = host.get("binding")
    if not binding:
        return "none"
    if not binding.get("checked"):
        return "unchecked"
    return "%s_%s" % (binding.get("method"), "right" if binding.get("mac_seen") == host.get("mac") else "other")


def check_outcome(server_summary, machines, peer_check):
    """Problems (a list of strings) with what our server recorded, given the check it ran with; [] when all is as it should be.

    With the check on, every machine must have phoned home checked against its own MAC
    and no request may have been refused; off, none may have been checked.
    """
    if not server_summary:
        return ["our server wrote no result"]
    problems = []
    if server_summary.get("peer_check") is not peer_check:
        problems.append("the server ran with peer_check %s, not %s" % (server_summary.get("peer_check"), peer_check))
    expected = {"arp_right": machines} if peer_check else {"unchecked": machines}
    if server_summary.get("bindings") != expected:
        problems.append("phone-homes judged %s, expected %s" % (server_summary.get("bindings"), expected))
    if any((server_summary.get("refused_requests") or {}).values()):
        problems.append("requests refused: %s" % server_summary["refused_requests"])
    if (server_summary.get("counters") or {}).get("peer_check_errors"):
        problems.append("%d neighbour lookups failed" % server_summary["counters"]["peer_check_errors"])
    return problems


# ------------------------------------------------------------------ our server's entry point


def serve(params_path, result_path):
    try:  # the collection on the Python path (tests), else this checkout through its link farm
        from ansible_collections.nixie.metal.plugins.module_utils import _pxe_server  # pylint: disable=import-outside-toplevel
    except ImportError:
        _common.use_collection()
        from ansible_collections.nixie.metal.plugins.module_utils import _pxe_server  # pylint: disable=import-outside-toplevel

    with open(params_path, encoding="utf-8") as handle:
        params = json.load(handle)
    options = _pxe_server.plan(params)
    result = _pxe_server.run(options, params["run_dir"])
    summary = {"stop_reason": result.get("stop_reason"), "counters": result.get("counters"),
               "peer_check": options.peer_check, "refused_requests": result.get("refused_requests"),
               "states": {}, "events": {}, "bindings": {}}
    for host in result.get("hosts", []):
        summary["states"][host["state"]] = summary["states"].get(host["state"], 0) + 1
        for event in host.get("events", []):
            summary["events"][event["event"]] = summary["events"].get(event["event"], 0) + 1
        kind = binding_kind(host)
        summary["bindings"][kind] = summary["bindings"].get(kind, 0) + 1
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        sys.exit(serve(sys.argv[2], sys.argv[3]))
    sys.exit("usage: python bench/_simnet.py serve PARAMS.json RESULT.json (the benches call it)")
