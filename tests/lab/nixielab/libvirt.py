# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt in the lab: a private libvirtd inside the lab namespace, and domains on br0.

Two layers:

``Libvirtd(lab_ns, workdir)``
    libvirtd started by hand (no systemd) inside the lab's network namespace.
    ``ip netns exec`` already gives it a private mount namespace; in it, before
    libvirtd starts, a small shell prologue bind-mounts

    * ``<workdir>/etc``   over ``/etc/libvirt``   (own libvirtd.conf and qemu.conf,
      persistent domain definitions stay private),
    * ``<workdir>/run``   over ``/run/libvirt``   (the client socket is
      ``<workdir>/run/libvirt-sock``, visible from every namespace),
    * ``<workdir>/lib``, ``log``, ``cache`` over ``/var/lib|log|cache/libvirt``,
    * an empty root-only file, mounted read-only, over ``/dev/kvm`` (KVM cannot
      run guests here; libvirt re-probes QEMU, ~30 s, on every lookup while
      /dev/kvm looks usable but the cached capabilities say "no KVM": with
      qemu running as root only a read-only mount makes it look unusable).

    qemu.conf says ``namespaces = [ ]``, user/group root, ``security_driver =
    "none"``, no cgroup controllers and ``stdio_handler = "file"`` (libvirtd
    writes QEMU's log itself, so no virtlogd is needed). Only domain type
    ``qemu`` (TCG) is offered. Clients use ``Libvirtd.uri`` =
    ``qemu+unix:///system?socket=<workdir>/run/libvirt-sock``; nothing collides
    with a system libvirtd. ``stop()`` destroys running domains, then stops
    libvirtd by PID and any QEMU left over by the PIDs libvirt recorded.

``domain_xml(...)``
    Pure builder of a domain: type qemu, SeaBIOS (QEMU's iPXE ROM) or OVMF
    (``<rom enabled='no'/>``: the firmware's own PXE), one virtio NIC
    ``<interface type='bridge'>`` on br0 with a fixed MAC, a small qcow2 disk (serial: the name,
    so /dev/disk/by-id/virtio-<name>), boot order network then disk (so a machine whose network boot is declined
    falls through to its disk), serial console to a file.

``LabSupervisor`` / CLI ``up`` / ``down``
    A whole lab that outlives the process that asked for it (what molecule's
    create and destroy playbooks need): ``python -m nixielab.libvirt up
    --state S.json --workdir DIR --vm node1,seabios,52:54:00:12:34:01 ...``
    starts a detached supervisor that holds a ``nixielab.net.Lab`` (lab + site
    namespaces, site dnsmasq), adds a "wol" namespace on the bridge where the
    Wake-on-LAN listener (``nixielab.wol_listener``) runs, starts libvirtd,
    writes the domains' XML and disks (and defines them with ``--define``),
    writes S.json and waits. With ``--impostor-hosts H`` it also puts the test
    stand-in impostor (``nixielab.impostor``) on the bridge, in its own "imp"
    namespace, asking for the boots of the machines of hosts.json H until the
    lab goes down. ``down --state S.json`` ends the supervisor by
    PID (it cleans up everything), falls back to killing the recorded PIDs and
    deleting the recorded namespaces if the supervisor is gone, and is a no-op
    when there is no state file, so it is safe to run twice.

Debian packages: ``libvirt-daemon-system libvirt-clients`` (+ the lab's QEMU/OVMF/ipxe).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.sax.saxutils import escape

from . import impostor as impostor_mod
from .net import BRIDGE, Lab, stop_process

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
QEMU_BINARY = "/usr/bin/qemu-system-x86_64"
FIRMWARES = ("seabios", "ovmf")
SOCKET_NAME = "libvirt-sock"
UNIX_PATH_MAX = 107

QEMU_CONF = """\
# nixielab: private qemu.conf, bind-mounted over /etc/libvirt/qemu.conf in libvirtd's mount namespace
namespaces = [ ]
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
stdio_handler = "file"
vnc_listen = "127.0.0.1"
"""

LIBVIRTD_CONF = """\
# nixielab: private libvirtd.conf; the socket directory is <workdir>/run (bind-mounted on /run/libvirt)
listen_tls = 0
listen_tcp = 0
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:{log}"
"""


def virsh_uri(socket_path: str | os.PathLike) -> str:
    """The client URI of a libvirtd listening on a private socket."""
    return f"qemu+unix:///system?socket={socket_path}"


# ------------------------------------------------------------------ domains
def domain_xml(name: str, mac: str, *, disk: str | os.PathLike, firmware: str = "seabios",
               bridge: str = BRIDGE, memory_mib: int = 512, vcpus: int = 1,
               nvram: str | os.PathLike | None = None, serial_log: str | os.PathLike | None = None,
               nic_model: str = "virtio", disk_serial: str | None = None) -> str:
    """A TCG domain (type qemu) that boots from the network first, then its disk.

    The disk's serial number is ``disk_serial`` (default: the domain's name), so a
    NixOS installer sees it as ``/dev/disk/by-id/virtio-<serial>``, the name the example
    site's ``hosts/<name>.nix`` gives ``site.disk``.

    ``firmware``: ``seabios`` (QEMU's iPXE ROM answers the network boot) or
    ``ovmf`` (``<rom enabled='no'/>``: OVMF's own PXE client; needs ``nvram``,
    the per-domain copy of the VARS file, created by libvirt from the template).
    """
    if firmware not in FIRMWARES:
        raise ValueError(f"unknown firmware {firmware!r}; one of {FIRMWARES}")
    mac = mac.lower()
    disk_serial = name if disk_serial is None else disk_serial
    # virtio-blk carries at most 20 bytes of serial; QEMU cuts the rest off silently, and
    # the by-id name would no longer be the one the site names.
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,20}", disk_serial):
        raise ValueError(f"disk serial {disk_serial!r}: 1 to 20 letters, digits, '_', '.' or '-'")
    lines = ["<domain type='qemu'>", f"  <name>{escape(name)}</name>",
             f"  <memory unit='MiB'>{memory_mib}</memory>", f"  <vcpu>{vcpus}</vcpu>"]
    if firmware == "ovmf":
        if nvram is None:
            raise ValueError("firmware 'ovmf' needs an nvram path")
        lines += [
            "  <os>",
            "    <type arch='x86_64' machine='q35'>hvm</type>",
            f"    <loader readonly='yes' type='pflash'>{OVMF_CODE}</loader>",
            f"    <nvram template='{OVMF_VARS}'>{escape(str(nvram))}</nvram>",
            "  </os>",
        ]
    else:
        lines += ["  <os>", "    <type arch='x86_64' machine='pc'>hvm</type>", "  </os>"]
    lines += [
        "  <features><acpi/><apic/></features>",
        "  <clock offset='utc'/>",
        "  <on_poweroff>destroy</on_poweroff>",
        "  <on_reboot>restart</on_reboot>",
        "  <on_crash>destroy</on_crash>",
        "  <devices>",
        f"    <emulator>{QEMU_BINARY}</emulator>",
        "    <disk type='file' device='disk'>",
        "      <driver name='qemu' type='qcow2'/>",
        f"      <source file='{escape(str(disk))}'/>",
        "      <target dev='vda' bus='virtio'/>",
        f"      <serial>{escape(disk_serial)}</serial>",
        "      <boot order='2'/>",
        "    </disk>",
        "    <interface type='bridge'>",
        f"      <source bridge='{escape(bridge)}'/>",
        f"      <mac address='{escape(mac)}'/>",
        f"      <model type='{escape(nic_model)}'/>",
        "      <boot order='1'/>",
    ]
    if firmware == "ovmf":
        lines.append("      <rom enabled='no'/>")
    lines.append("    </interface>")
    if serial_log is not None:
        lines += [
            "    <serial type='file'>",
            f"      <source path='{escape(str(serial_log))}'/>",
            "      <target port='0'/>",
            "    </serial>",
        ]
    lines += [
        "    <video><model type='none'/></video>",
        "    <memballoon model='none'/>",
        "  </devices>",
        "</domain>",
    ]
    return "\n".join(lines) + "\n"


def create_disk(path: str | os.PathLike, size: str = "64M") -> Path:
    """An empty qcow2 image (a machine with nothing installed yet)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path


# ----------------------------------------------------------------- libvirtd
class Libvirtd:
    """A private libvirtd in a network namespace (see the module docstring)."""

    def __init__(self, lab_ns: str, workdir: str | os.PathLike) -> None:
        self.lab_ns = lab_ns
        self.workdir = Path(workdir).resolve()
        self.socket = self.workdir / "run" / SOCKET_NAME
        if len(str(self.socket)) > UNIX_PATH_MAX:
            raise ValueError(f"socket path too long for a unix socket ({len(str(self.socket))} > {UNIX_PATH_MAX}): {self.socket}")
        self.uri = virsh_uri(self.socket)
        self.log = self.workdir / "libvirtd.log"
        self.pidfile = self.workdir / "libvirtd.pid"
        self.proc: subprocess.Popen | None = None

    # the shell prologue run inside `ip netns exec` (already a private mount namespace)
    def prologue(self) -> str:
        w = self.workdir
        mounts = [
            f"mount --bind {w}/etc /etc/libvirt",
            f"mount --bind {w}/run /run/libvirt",
            f"mount --bind {w}/lib /var/lib/libvirt",
            f"mount --bind {w}/log /var/log/libvirt",
            f"mount --bind {w}/cache /var/cache/libvirt",
        ]
        script = ["set -e",
                  # make sure nothing we mount propagates back to the host
                  "mount --make-rslave / 2>/dev/null || true"]
        for target in ("/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt"):
            script.append(f"mkdir -p {target}")
        script += mounts
        # Read-only: root's access(W_OK) then fails with EROFS, so libvirt judges KVM unusable
        # (a writable file looks usable to root, and every lookup re-probes QEMU for ~30 s).
        script.append(f"if [ -e /dev/kvm ]; then mount --bind {w}/no-kvm /dev/kvm && mount -o remount,bind,ro /dev/kvm; fi")
        script.append(f"exec libvirtd --pid-file {self.pidfile} --config {w}/etc/libvirtd.conf")
        return "\n".join(script) + "\n"

    def prepare(self) -> None:
        w = self.workdir
        for sub in ("etc/qemu", "run", "lib/qemu/nvram", "log/qemu", "cache", "domains"):
            (w / sub).mkdir(parents=True, exist_ok=True)
        (w / "etc" / "qemu.conf").write_text(QEMU_CONF)
        (w / "etc" / "libvirtd.conf").write_text(LIBVIRTD_CONF.format(log=self.log))
        nokvm = w / "no-kvm"
        nokvm.touch()
        nokvm.chmod(0o600)
        (w / "start-libvirtd.sh").write_text(self.prologue())

    def start(self, timeout: float = 60.0) -> "Libvirtd":
        """Start libvirtd (detached: its own session) and wait until virsh answers."""
        self.prepare()
        self.socket.unlink(missing_ok=True)
        out = open(self.workdir / "libvirtd.stdout", "ab")  # pylint: disable=consider-using-with
        try:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                ["ip", "netns", "exec", self.lab_ns, "sh", str(self.workdir / "start-libvirtd.sh")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"libvirtd exited ({self.proc.returncode}):\n" + self._tail())
            if self.socket.exists() and self.virsh("version", check=False).returncode == 0:
                return self
            time.sleep(0.1)
        raise TimeoutError(f"libvirtd did not answer on {self.socket} within {timeout}s:\n" + self._tail())

    def _tail(self) -> str:
        text = ""
        for path in (self.workdir / "libvirtd.stdout", self.log):
            if path.exists():
                text += f"--- {path}\n" + path.read_text(errors="replace")[-2000:]
        return text

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def virsh(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """virsh against this libvirtd (the socket works from any network namespace)."""
        return subprocess.run(["virsh", "-q", "-c", self.uri, *args], capture_output=True, text=True,
                              check=check, timeout=timeout)

    def define(self, xml: str | os.PathLike) -> None:
        """Define a domain from an XML file path or an XML string."""
        if isinstance(xml, str) and xml.lstrip().startswith("<"):
            path = self.workdir / "domains" / f"define-{time.monotonic_ns()}.xml"
            path.write_text(xml)
            xml = path
        self.virsh("define", str(xml))

    def domstate(self, name: str) -> str:
        return self.virsh("domstate", name).stdout.strip()

    def domains(self) -> list[str]:
        return [n for n in self.virsh("list", "--all", "--name").stdout.split() if n]

    def qemu_pids(self) -> list[int]:
        """PIDs of QEMU processes this libvirtd started (its own pid files)."""
        pids = []
        for pidfile in (self.workdir / "run" / "qemu").glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                pids.append(int(pidfile.read_text().strip()))
        return pids

    def stop(self, timeout: float = 10.0) -> None:
        """Destroy running domains, stop libvirtd by PID, then kill QEMU left over (by PID)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                for name in self.virsh("list", "--name", timeout=10).stdout.split():
                    self.virsh("destroy", name, check=False, timeout=20)
        leftovers = self.qemu_pids()
        if self.proc is not None:
            stop_process(self.proc, timeout)
            self.proc = None
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------ the whole lab
def parse_vm(spec: str) -> dict:
    """``name,firmware,mac`` (e.g. ``node1,seabios,52:54:00:12:34:01``)."""
    try:
        name, firmware, mac = spec.split(",", 2)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--vm wants name,firmware,mac; got {spec!r}") from exc
    if firmware not in FIRMWARES:
        raise argparse.ArgumentTypeError(f"firmware {firmware!r} not in {FIRMWARES}")
    return {"name": name, "firmware": firmware, "mac": mac.lower()}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class LabSupervisor:
    """Lab + wol namespace + libvirtd + domains + WoL listener, kept until SIGTERM."""

    def __init__(self, state: Path, workdir: Path, vms: list[dict], *, subnet: str = "10.77.0",
                 define: bool = False, disk_size: str = "64M", memory_mib: int = 512,
                 impostor_hosts: Path | None = None) -> None:
        self.state_path = state
        self.workdir = workdir
        self.vms = vms
        self.subnet = subnet
        self.define = define
        self.disk_size = disk_size
        self.memory_mib = memory_mib
        # The hosts.json whose machines a test stand-in impostor keeps asking for (nixielab.impostor); None: no impostor.
        self.impostor_hosts = impostor_hosts
        self.stopping = False

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        self.stopping = True

    def _write_state(self, state: dict) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_path)

    def serve(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.workdir.mkdir(parents=True, exist_ok=True)
        lab = Lab(self.subnet, workdir=self.workdir / "net", keep_workdir=True)
        wol_ns = f"{lab.id}-wol"
        state = {"status": "starting", "supervisor_pid": os.getpid(), "lab_ns": lab.lab_ns,
                 "site_ns": lab.site_ns, "wol_ns": wol_ns, "namespaces": [lab.lab_ns, lab.site_ns, wol_ns],
                 "workdir": str(self.workdir), "bridge": lab.bridge, "controller_ip": lab.controller_ip,
                 "site_ip": lab.site_ip, "subnet": lab.cidr, "pids": {}}
        # Record the names before creating anything, so `down` finds them even after a crash.
        self._write_state(state)
        libvirtd = None
        listener = None
        impostor = None
        try:
            lab.__enter__()  # pylint: disable=unnecessary-dunder-call
            state["pids"]["site_dnsmasq"] = lab.site_dnsmasq.pid if lab.site_dnsmasq else None
            self._add_wol_namespace(lab, wol_ns)
            libvirtd = Libvirtd(lab.lab_ns, self.workdir / "libvirt").start()
            state.update(uri=libvirtd.uri, socket=str(libvirtd.socket), libvirtd_log=str(libvirtd.log))
            state["pids"]["libvirtd"] = libvirtd.pid
            state["domains"] = self._domains(libvirtd)
            wol_log = self.workdir / "wol.jsonl"
            ready = self.workdir / "wol.ready"
            ready.unlink(missing_ok=True)
            here = Path(__file__).resolve().parent.parent
            listener = subprocess.Popen(  # pylint: disable=consider-using-with
                ["ip", "netns", "exec", wol_ns, sys.executable, "-m", "nixielab.wol_listener",
                 "--uri", libvirtd.uri, "--log", str(wol_log), "--ready", str(ready),
                 "--port", "9", "--port", "7"],
                cwd=here, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=open(self.workdir / "wol.stderr", "wb"))  # pylint: disable=consider-using-with
            deadline = time.monotonic() + 15
            while not ready.exists():
                if listener.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("WoL listener did not start:\n"
                                       + (self.workdir / "wol.stderr").read_text(errors="replace")[-2000:])
                time.sleep(0.05)
            state["pids"]["wol_listener"] = listener.pid
            state.update(wol_log=str(wol_log), wol_ip=f"{self.subnet}.3")
            if self.impostor_hosts is not None:
                impostor = self._start_impostor(lab, state, here)
            state["status"] = "ready"
            self._write_state(state)
            while not self.stopping:
                time.sleep(0.2)
                if libvirtd.proc.poll() is not None:
                    state["status"] = f"libvirtd exited ({libvirtd.proc.returncode})"
                    self._write_state(state)
                    break
        except BaseException as exc:
            state.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            self._write_state(state)
            raise
        finally:
            if impostor is not None:
                stop_process(impostor)
            if listener is not None:
                stop_process(listener)
            if libvirtd is not None:
                libvirtd.stop()
            lab.close()
            self._delete_ns(wol_ns)
            if state.get("status") != "failed":
                state["status"] = "stopped"
                self._write_state(state)

    def _add_wol_namespace(self, lab: Lab, ns: str) -> None:
        """A namespace on the bridge standing for the machines' NICs: magic packets must cross br0 to get here."""
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", lab.lab_ns, "link", "add", "wol0", "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("-n", lab.lab_ns, "link", "set", "wol0", "master", lab.bridge, "up")
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"],
                       check=False, capture_output=True)
        _ip("-n", ns, "addr", "add", f"{self.subnet}.3/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")

    def _start_impostor(self, lab: Lab, state: dict, here: Path) -> subprocess.Popen:
        """The test stand-in impostor (nixielab.impostor) on the bridge with its own MAC, asking until stopped.

        Its namespace is the lab's (deleted with it); it goes into the state file at once, so that
        ``down`` finds it even if the supervisor dies.
        """
        address = f"{self.subnet}.{impostor_mod.HOST_PART}"
        ns = lab.add_machine(impostor_mod.DEFAULT_MAC, address)
        state["namespaces"].append(ns)
        state["impostor"] = {"ns": ns, "ip": address, "mac": impostor_mod.DEFAULT_MAC,
                             "log": str(self.workdir / "impostor.jsonl"), "hosts_json": str(self.impostor_hosts)}
        self._write_state(state)
        ready = self.workdir / "impostor.ready"
        ready.unlink(missing_ok=True)
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            ["ip", "netns", "exec", ns, sys.executable, "-m", "nixielab.impostor", "run",
             "--base", f"http://{lab.controller_ip}:8080", "--hosts-json", str(self.impostor_hosts),
             "--log", str(self.workdir / "impostor.jsonl"), "--address", address, "--mac", impostor_mod.DEFAULT_MAC,
             "--server-netns", f"/run/netns/{lab.lab_ns}", "--ready", str(ready)],
            cwd=here, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "impostor.stderr", "wb"))  # pylint: disable=consider-using-with
        deadline = time.monotonic() + 15
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the impostor did not start:\n"
                                   + (self.workdir / "impostor.stderr").read_text(errors="replace")[-2000:])
            time.sleep(0.05)
        state["pids"]["impostor"] = proc.pid
        return proc

    @staticmethod
    def _delete_ns(ns: str) -> None:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout
        for pid in (int(p) for p in out.split()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

    def _domains(self, libvirtd: Libvirtd) -> list[dict]:
        result = []
        for vm in self.vms:
            name = vm["name"]
            disk = create_disk(libvirtd.workdir / "domains" / f"{name}.qcow2", self.disk_size)
            serial = libvirtd.workdir / "domains" / f"{name}.serial.log"
            nvram = libvirtd.workdir / "lib" / "qemu" / "nvram" / f"{name}_VARS.fd"
            xml = domain_xml(name, vm["mac"], disk=disk, firmware=vm["firmware"], nvram=nvram,
                             serial_log=serial, memory_mib=self.memory_mib)
            xml_path = libvirtd.workdir / "domains" / f"{name}.xml"
            xml_path.write_text(xml)
            if self.define:
                libvirtd.define(xml_path)
            result.append({**vm, "xml": str(xml_path), "disk": str(disk), "serial_log": str(serial)})
        return result


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def up(args: argparse.Namespace) -> int:
    state_path = Path(args.state).resolve()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if state_path.exists():
        old = json.loads(state_path.read_text())
        if old.get("status") == "ready" and _alive(int(old.get("supervisor_pid", 0) or 0)):
            print(json.dumps(old))
            return 0
        down_state(state_path)
    here = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "nixielab.libvirt", "_serve", "--state", str(state_path),
           "--workdir", str(workdir), "--subnet", args.subnet, "--disk-size", args.disk_size,
           "--memory", str(args.memory)]
    cmd += ["--define"] if args.define else []
    cmd += ["--impostor-hosts", str(Path(args.impostor_hosts).resolve())] if args.impostor_hosts else []
    for vm in args.vm:
        cmd += ["--vm", f"{vm['name']},{vm['firmware']},{vm['mac']}"]
    with open(workdir / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(cmd, cwd=here, stdin=subprocess.DEVNULL, stdout=log,  # pylint: disable=consider-using-with
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        if state.get("status") == "ready":
            print(json.dumps(state))
            return 0
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    tail = (workdir / "supervisor.log").read_text(errors="replace")[-4000:]
    print(f"lab did not come up (supervisor rc={proc.poll()}):\n{tail}", file=sys.stderr)
    down_state(state_path)
    return 1


def down_state(state_path: Path, timeout: float = 60.0) -> dict:
    """Tear down what a state file names; a no-op without one (safe to run twice)."""
    report = {"state": str(state_path), "found": state_path.exists(), "killed": [], "deleted_namespaces": []}
    if not state_path.exists():
        return report
    state = json.loads(state_path.read_text())
    sup = int(state.get("supervisor_pid") or 0)
    if sup and _alive(sup) and "nixielab.libvirt" in _cmdline(sup):
        os.kill(sup, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(sup) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(sup):
            os.kill(sup, signal.SIGKILL)
            report["killed"].append(sup)
    # Fallback for a supervisor that crashed or was killed: the recorded PIDs, then our namespaces.
    for name, pid in (state.get("pids") or {}).items():
        if pid and _alive(int(pid)) and str(state.get("workdir", "")) in _cmdline(int(pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
                report["killed"].append(f"{name}:{pid}")
    existing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    existing_names = {line.split()[0] for line in existing.splitlines() if line.split()}
    for ns in state.get("namespaces") or []:
        if ns in existing_names:
            LabSupervisor._delete_ns(ns)
            report["deleted_namespaces"].append(ns)
    state_path.unlink(missing_ok=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nixielab.libvirt", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "_serve"):
        p = sub.add_parser(name)
        p.add_argument("--state", required=True)
        p.add_argument("--workdir", required=True)
        p.add_argument("--vm", type=parse_vm, action="append", default=[])
        p.add_argument("--subnet", default="10.77.0")
        p.add_argument("--define", action="store_true", help="define the domains (else only write their XML)")
        p.add_argument("--disk-size", default="64M")
        p.add_argument("--memory", type=int, default=512)
        p.add_argument("--timeout", type=float, default=120)
        p.add_argument("--impostor-hosts", help="also run the test stand-in impostor (nixielab.impostor) on the bridge, "
                                                "asking for the boots of the machines of this hosts.json")
    p = sub.add_parser("down")
    p.add_argument("--state", required=True)
    p = sub.add_parser("xml", help="print a domain's XML")
    p.add_argument("name")
    p.add_argument("mac")
    p.add_argument("--firmware", choices=FIRMWARES, default="seabios")
    p.add_argument("--disk", required=True)
    p.add_argument("--nvram")
    p.add_argument("--serial-log")
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(args)
    if args.command == "_serve":
        LabSupervisor(Path(args.state).resolve(), Path(args.workdir).resolve(), args.vm, subnet=args.subnet,
                      define=args.define, disk_size=args.disk_size, memory_mib=args.memory,
                      impostor_hosts=Path(args.impostor_hosts) if args.impostor_hosts else None).serve()
        return 0
    if args.command == "down":
        print(json.dumps(down_state(Path(args.state).resolve())))
        return 0
    print(domain_xml(args.name, args.mac, firmware=args.firmware, disk=args.disk, nvram=args.nvram,
                     serial_log=args.serial_log), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
