# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rack benches' network and servers: two private namespaces, our server, the anchors.

::

    netns <id>-srv                         netns <id>-cli
    srv0 10.77.0.1/16  ------- veth ------- cli0 10.77.0.2/16 + one address per machine
    one server at a time, pinned           simulated clients (AF_PACKET frames for DHCP,
    to CPU 0: ours (pxe_server's plan +    the kernel's stack for 4011 replies, TFTP and
    run), dnsmasq (proxy + TFTP), nginx    HTTP), pinned to the other CPU

Each machine's address is on cli0, so the client namespace's kernel answers
the server's ARP like the machines' own firmware would. Servers are children
of the bench; when one ends, ``os.wait4`` gives its own rusage (CPU seconds
and peak RSS). Everything is removed on exit, whatever happens.

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
    """The two namespaces, the veth between them and ``machines`` client addresses."""

    def __init__(self, machines, tag="rack"):
        self.machines = machines
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
        _ip("-n", self.srv, "link", "add", SERVER_IF, "type", "veth", "peer", "name", CLIENT_IF, "netns", self.cli)
        _ip("-n", self.srv, "addr", "add", "%s/%d" % (SERVER_IP, PREFIX), "dev", SERVER_IF)
        lines = ["addr add %s/%d dev %s" % (CLIENT_GATEWAY_IP, PREFIX, CLIENT_IF)]
        lines += ["addr add %s/%d dev %s" % (machine_ip(i), PREFIX, CLIENT_IF) for i in range(self.machines)]
        _ip("-n", self.cli, "-batch", "-", stdin="\n".join(lines) + "\n")
        for ns, dev in ((self.srv, SERVER_IF), (self.cli, CLIENT_IF)):
            _ip("-n", ns, "link", "set", dev, "up")

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


def write_hosts(path, count):
    hosts = {"rack%04d" % i: {"mac_address": machine_mac(i)} for i in range(count)}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(hosts, handle)
    return path


def start_ours(rack, workdir, hosts, kernel, initrd, linger=1.0, tag="ours"):
    """Our server in the server namespace, started as pxe_server starts it (plan + run)."""
    run_dir = os.path.join(workdir, "run-" + tag)
    params = {"hosts_file": write_hosts(os.path.join(workdir, "hosts.json"), hosts), "kernel": kernel,
              "initrd": initrd, "interface": SERVER_IF, "address": SERVER_IP, "run_dir": run_dir,
              "max_duration": 3000, "idle_timeout": 600, "linger": linger, "http_port": HTTP_PORT,
              "ipxe_dir": IPXE_DIR}
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
               "states": {}, "events": {}}
    for host in result.get("hosts", []):
        summary["states"][host["state"]] = summary["states"].get(host["state"], 0) + 1
        for event in host.get("events", []):
            summary["events"][event["event"]] = summary["events"].get(event["event"], 0) + 1
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        sys.exit(serve(sys.argv[2], sys.argv[3]))
    sys.exit("usage: python bench/_simnet.py serve PARAMS.json RESULT.json (the benches call it)")
