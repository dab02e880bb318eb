# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""BMC emulators for the lab: libvirt domains driven over Redfish and IPMI (tests only).

``BmcLab(lab, workdir, domains)`` adds, to a ``nixielab.net.Lab``:

* a private libvirtd in the lab namespace (``nixielab.libvirt.Libvirtd``) with the
  domains defined, shut off (SeaBIOS + QEMU's iPXE ROM, network first, then disk);
* a "bmc" namespace on the lab bridge at ``<subnet>.4``, where the BMCs listen,
  as a management network would be reached from the controller;
* ``sushy-emulator`` (sushy-tools) with its libvirt driver on port 8000, HTTP basic
  auth (bcrypt htpasswd), every domain a Redfish ComputerSystem;
* a second ``sushy-emulator`` on port 8001 with ``SUSHY_EMULATOR_IGNORE_BOOT_DEVICE``:
  it accepts boot overrides and ignores them (it always reports ``Hdd``), as a BMC
  without one-time boot support; it shows only the domains given as ``no_override``;
* one virtualbmc BMC (``virtualbmc.vbmc.VirtualBMC``, what ``vbmcd`` runs per domain)
  per IPMI domain, on UDP ports 6230, 6231, ...

Every emulator talks to the lab's libvirtd through its socket URI (never
qemu:///system), runs in the bmc namespace and is stopped by PID; the namespace
is deleted on ``stop()``.

One correction to virtualbmc, made only here: its RMCP+ server (pyghmi's
``ServerSession``) answers any Open Session request with cipher suite 3 (SHA-1)
but does not say that it ignored the client's proposal. pyghmi's client proposes
suite 17 (SHA-256) first and then fails to check the SHA-1 RAKP 2 answer
(``struct.error``). A BMC without suite 17 that follows IPMI 2.0 rejects the
proposal (RMCP+ status 0x04, invalid authentication algorithm), after which pyghmi
proposes suite 3 and logs in; ``python bmclab.py ipmi`` makes virtualbmc do that.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

HERE = Path(__file__).resolve().parent
COLLECTION = Path(os.environ.get("NIXIE_COLLECTION", HERE.parents[3]))
sys.path.insert(0, str(COLLECTION / "tests" / "lab"))

from nixielab.libvirt import Libvirtd, create_disk, domain_xml  # noqa: E402  pylint: disable=wrong-import-position
from nixielab.net import BRIDGE, stop_process, wait_for_file_text  # noqa: E402  pylint: disable=wrong-import-position

REDFISH_PORT = 8000
REDFISH_NO_OVERRIDE_PORT = 8001
IPMI_FIRST_PORT = 6230
USER = "admin"
# RMCP+ Open Session Response status: the proposed authentication algorithm is not supported.
RMCP_INVALID_AUTHENTICATION_ALGORITHM = 0x04
RAKP_HMAC_SHA1 = 0x01


class BmcLab:
    """libvirt domains behind Redfish and IPMI emulators, inside a lab (see the module docstring)."""

    def __init__(self, lab, workdir, domains, password, *, redfish=(), ipmi=(), no_override=()):
        """``domains``: ``[(name, mac), ...]``; ``redfish`` / ``ipmi`` / ``no_override``: names behind each kind of BMC."""
        self.lab = lab
        self.workdir = Path(workdir)
        self.domains = list(domains)
        self.password = password
        self.redfish_names = list(redfish)
        self.ipmi_names = list(ipmi)
        self.no_override_names = list(no_override)
        self.ns = "%s-bmc" % lab.id
        self.address = "%s.4" % lab.subnet
        self.libvirtd = None
        self.procs = []
        self.ipmi_ports = {name: IPMI_FIRST_PORT + index for index, name in enumerate(self.ipmi_names)}
        self._ns_made = False

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.libvirtd = Libvirtd(self.lab.lab_ns, self.workdir / "libvirt").start()
        for name, mac in self.domains:
            disk = create_disk(self.libvirtd.workdir / "domains" / ("%s.qcow2" % name))
            xml = domain_xml(name, mac, disk=disk, serial_log=self.libvirtd.workdir / "domains" / ("%s.serial.log" % name))
            if name in self.no_override_names:
                # The emulator that ignores boot devices writes <os><boot dev='fd'/>, which libvirt
                # refuses beside per-device boot orders: give that domain the <os> form.
                xml = os_boot_form(xml, "hd")
            self.libvirtd.define(xml)
        self._make_namespace()
        self._start_redfish("redfish", REDFISH_PORT, self.redfish_names, ignore_boot_device=False)
        if self.no_override_names:
            self._start_redfish("redfish-no-override", REDFISH_NO_OVERRIDE_PORT, self.no_override_names,
                                ignore_boot_device=True)
        if self.ipmi_names:
            self._start_ipmi()
        return self

    def stop(self):
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                stop_process(proc)
        self.procs.clear()
        if self._ns_made:
            out = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True, check=False).stdout
            for pid in (int(p) for p in out.split()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)
            self._ns_made = False
        if self.libvirtd is not None:
            self.libvirtd.stop()
            self.libvirtd = None

    # -- what tests use -------------------------------------------------------------

    @property
    def uri(self):
        return self.libvirtd.uri

    def redfish_url(self, port=REDFISH_PORT):
        return "http://%s:%d" % (self.address, port)

    def virsh(self, *args):
        return self.libvirtd.virsh(*args).stdout.strip()

    def domstate(self, name):
        return self.libvirtd.domstate(name)

    def domid(self, name):
        """libvirt's id of a running domain (a new one after every start), or '-'."""
        return self.virsh("domid", name)

    def first_boot_device(self, name):
        """What the domain's persistent definition boots first: 'network', 'hd' or None."""
        xml = self.virsh("dumpxml", "--inactive", name)
        return first_boot_device(xml)

    # -- internals -----------------------------------------------------------------

    def _ip(self, *args):
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def _make_namespace(self):
        self._ip("netns", "add", self.ns)
        self._ns_made = True
        self._ip("-n", self.ns, "link", "set", "lo", "up")
        self._ip("-n", self.lab.lab_ns, "link", "add", "bmc0", "type", "veth", "peer", "name", "eth0", "netns", self.ns)
        self._ip("-n", self.lab.lab_ns, "link", "set", "bmc0", "master", BRIDGE, "up")
        self._ip("-n", self.ns, "addr", "add", "%s/24" % self.address, "dev", "eth0")
        self._ip("-n", self.ns, "link", "set", "eth0", "up")

    def _popen(self, argv, log, env=None):
        with open(log, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], stdin=subprocess.DEVNULL,  # pylint: disable=consider-using-with
                                    stdout=out, stderr=subprocess.STDOUT, env=env, cwd=HERE)
        self.procs.append(proc)
        return proc

    def _start_redfish(self, name, port, systems, ignore_boot_device):
        import bcrypt  # sushy-tools' own dependency; the emulator checks passwords with it  pylint: disable=import-outside-toplevel

        htpasswd = self.workdir / ("%s.htpasswd" % name)
        # Four rounds: the emulator checks the password on every request, and this is a lab.
        hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4)).decode()
        htpasswd.write_text("%s:%s\n" % (USER, hashed), encoding="utf-8")
        config = self.workdir / ("%s.conf" % name)
        lines = [
            "SUSHY_EMULATOR_LIBVIRT_URI = %r" % self.uri,
            "SUSHY_EMULATOR_LISTEN_IP = %r" % self.address,
            "SUSHY_EMULATOR_LISTEN_PORT = %d" % port,
            "SUSHY_EMULATOR_AUTH_FILE = %r" % str(htpasswd),
            # By name and by UUID: the emulator's collection and action URLs use the UUID.
            "SUSHY_EMULATOR_ALLOWED_INSTANCES = %r" % [i for n in systems for i in (n, self.virsh("domuuid", n))],
            "SUSHY_EMULATOR_IGNORE_BOOT_DEVICE = %r" % ignore_boot_device,
        ]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        log = self.workdir / ("%s.log" % name)
        proc = self._popen([str(Path(sys.executable).parent / "sushy-emulator"), "--config", str(config)], log)
        wait_for_file_text(log, "Running on", 30, proc)

    def _start_ipmi(self):
        ready = self.workdir / "ipmi.ready"
        ready.unlink(missing_ok=True)
        argv = [sys.executable, str(Path(__file__).resolve()), "ipmi", "--address", self.address, "--uri", self.uri,
                "--ready", str(ready)]
        for name, port in self.ipmi_ports.items():
            argv += ["--bmc", "%s:%d" % (name, port)]
        env = dict(os.environ, BMCLAB_USER=USER, BMCLAB_PASSWORD=self.password)
        log = self.workdir / "ipmi.log"
        proc = self._popen(argv, log, env=env)
        deadline = time.monotonic() + 30
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the IPMI emulator did not start:\n" + log.read_text(errors="replace")[-2000:])
            time.sleep(0.05)


def os_boot_form(xml, device):
    """A domain definition with ``<os><boot dev=device/>`` instead of per-device boot orders."""

    tree = ElementTree.fromstring(xml)
    for element in tree.find("devices"):
        for boot in element.findall("boot"):
            element.remove(boot)
    ElementTree.SubElement(tree.find("os"), "boot", dev=device)
    return ElementTree.tostring(tree, encoding="unicode")


def first_boot_device(xml):
    """The device a libvirt domain definition boots first: 'network', 'hd', 'cdrom' or None.

    virtualbmc writes ``<os><boot dev=.../>``; sushy-emulator and the lab write
    ``<boot order=N/>`` on devices. Either way, the first one counts.
    """

    tree = ElementTree.fromstring(xml)
    os_boot = tree.find("os/boot")
    if os_boot is not None:
        return os_boot.get("dev")
    best = None
    for device in tree.find("devices"):
        boot = device.find("boot")
        if boot is None or not boot.get("order"):
            continue
        kind = "network" if device.tag == "interface" else {"disk": "hd", "cdrom": "cdrom"}.get(device.get("device"))
        if best is None or int(boot.get("order")) < best[0]:
            best = (int(boot.get("order")), kind)
    return best[1] if best else None


# -- `python bmclab.py ipmi`: virtualbmc BMCs in one process ---------------------------

def _sha1_only_open_session():
    """Make virtualbmc's RMCP+ server reject cipher suites it cannot do, as IPMI 2.0 says (see the docstring)."""
    from pyghmi.ipmi.private import serversession  # pylint: disable=import-outside-toplevel

    answer_with_suite_3 = serversession.ServerSession.create_open_session_response

    def create_open_session_response(self, request):
        # Open Session Request: tag, privilege, 2 reserved, console session id (4), then the
        # authentication payload, whose 5th byte is the algorithm.
        if len(request) > 12 and request[12] != RAKP_HMAC_SHA1:
            return bytearray([request[0], RMCP_INVALID_AUTHENTICATION_ALGORITHM, 0, 0]) + bytearray(request[4:8])
        return answer_with_suite_3(self, request)

    serversession.ServerSession.create_open_session_response = create_open_session_response


def serve_ipmi(args):
    from virtualbmc.vbmc import VirtualBMC  # pylint: disable=import-outside-toplevel

    _sha1_only_open_session()
    user = os.environ["BMCLAB_USER"]
    password = os.environ["BMCLAB_PASSWORD"]
    bmcs = []
    for spec in args.bmc:
        name, port = spec.rsplit(":", 1)
        bmcs.append(VirtualBMC(username=user, password=password, port=int(port), address=args.address,
                               domain_name=name, libvirt_uri=args.uri))
    Path(args.ready).write_text("ready\n", encoding="utf-8")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    VirtualBMC.listen(timeout=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description="BMC emulators for the lab (tests only)")
    sub = parser.add_subparsers(dest="command", required=True)
    ipmi = sub.add_parser("ipmi", help="virtualbmc BMCs for libvirt domains, in one process")
    ipmi.add_argument("--address", required=True)
    ipmi.add_argument("--uri", required=True)
    ipmi.add_argument("--bmc", action="append", default=[], help="DOMAIN:PORT")
    ipmi.add_argument("--ready", required=True)
    domain = sub.add_parser("domain", help="print a domain's state and what its persistent definition boots first")
    domain.add_argument("--uri", required=True)
    domain.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "domain":
        def virsh(*words):
            return subprocess.run(["virsh", "-q", "-c", args.uri, *words], capture_output=True, text=True,
                                  check=True).stdout.strip()
        print(json.dumps({"state": virsh("domstate", args.name),
                          "first_boot": first_boot_device(virsh("dumpxml", "--inactive", args.name))}))
        return 0
    serve_ipmi(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
