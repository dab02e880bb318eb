# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The provision playbook's failure and lifecycle behaviour, run with ansible-playbook in a private namespace.

No machine ever boots here (there are no VMs): the netboot server runs for real on the lab bridge,
and the test stands in for what machines would do (or not do). Proven:

* check mode reports what would be installed and binds nothing;
* a missing nixos-anywhere, nix or ssh stops the run in its preflight, before any machine is woken;
* when every machine fails, each fails with wait_for_agent's diagnosis and the server stops;
* when one machine phones home and the other never does, the silent one fails alone with the
  diagnosis while the other goes on to the install step at once (strategy free), and a request for
  a machine's boot from another MAC is refused and shown on that machine's line of the report;
* an interrupted run (Ctrl-C) leaves no server behind.
* a server that starts but never answers its health check is stopped by the netboot_server role's
  rescue (not by its owner_pid watch), leaving no process, port or state file.

Each run gets its own /run/nixie-metal (a tmpfs mounted inside the run's mount namespace), so it never
meets a server of another run on this machine; the test reads it through /proc/<pid>/root.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

COLLECTION = Path(os.environ.get("NIXIE_COLLECTION", Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(COLLECTION / "tests" / "lab"))

from nixielab.net import Lab  # noqa: E402  pylint: disable=wrong-import-position
from nixielab.probes import SERVER_PORTS, bound_ports, wait_until  # noqa: E402  pylint: disable=wrong-import-position,import-error

sys.path.insert(0, str(COLLECTION / "tests" / "reliability"))
from record import record  # noqa: E402  pylint: disable=wrong-import-position,import-error

RUN_DIR = "/run/nixie-metal"   # pxe_server's default as root; the playbook does not change it
MACS = {"node1": "52:54:00:12:34:01", "node2": "52:54:00:12:34:02"}
SYSTEM = "/nix/store/00000000000000000000000000000000-nixos-system-%s-lab"
STANDIN = COLLECTION / "tests" / "integration" / "targets" / "role_nixos_anywhere" / "files" / "nixos-anywhere"
NO_DHCP = "no DHCP request from this MAC was seen"
INSTALLER_IP = "10.77.0.60"   # outside the site's DHCP range (nixielab.net: .100-.199)
BIN = Path(sys.executable).parent

# Runs the playbook inside the lab namespace's mount namespace (made by `ip netns exec`, a slave of
# the host's, so nothing mounted here leaks out) with a private run directory; then says how it
# ended and stays until its stdin closes, so the test can look at what the run left behind.
WRAPPER = r"""
mount -t tmpfs -o mode=0755,size=4m nixie-run "$0" || exit 97
trap : INT
"$@" < /dev/null
rc=$?
echo "NIXIE-PLAYBOOK-EXIT $rc"
read -r dummy
exit "$rc"
"""

# A UDP listener on the Wake-on-LAN ports, in the site namespace (across the bridge from the controller).
WOL_LISTENER = r"""
import json, selectors, socket, sys
log = open(sys.argv[1], "a", buffering=1)
sel = selectors.DefaultSelector()
for port in (7, 9):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    sel.register(s, selectors.EVENT_READ)
print("listening", flush=True)
while True:
    for key, _ in sel.select():
        data, peer = key.fileobj.recvfrom(2048)
        magic = data[:6] == b"\xff" * 6 and len(data) >= 102
        log.write(json.dumps({"peer": peer[0], "port": key.fileobj.getsockname()[1],
                              "mac": data[6:12].hex(":") if magic else None}) + "\n")
"""


class Run:
    """One ansible-playbook nixie.metal.provision inside the lab namespace."""

    def __init__(self, site, name, extra_vars=None, options=(), env=None):
        self.site = site
        self.name = name
        self.log = site.files / ("%s.log" % name)
        variables = dict(site.vars, **(extra_vars or {}))
        variables = {key: value for key, value in variables.items() if value is not None}
        vars_file = site.files / ("%s.vars.json" % name)
        vars_file.write_text(json.dumps(variables), encoding="utf-8")
        command = [str(BIN / "ansible-playbook"), "nixie.metal.provision", "-i", str(site.files / "hosts.nixie.yml"),
                   "-e", "@%s" % vars_file, *options]
        self.bound = set()
        self.saw_state_file = False
        self.server_pids = set()
        self.exit_code = None
        with open(self.log, "wb") as log:
            self.proc = site.popen(["sh", "-c", WRAPPER, RUN_DIR, *command], stdin=subprocess.PIPE, stdout=log,
                                   stderr=subprocess.STDOUT, env=dict(site.env, **(env or {})), start_new_session=True)
        self._watching = True
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self):
        """While the run lasts, note every server port bound and whether a state file appeared."""
        while self._watching:
            self.bound |= bound_ports(self.site)
            record = self.state_record()
            if record is not None:
                self.saw_state_file = True
                # the module's root process and its child that serves: neither may outlive the run
                self.server_pids.update(pid for pid in (record["pid"], record.get("server_pid")) if pid)
            time.sleep(0.1)

    def output(self):
        return self.log.read_text(encoding="utf-8", errors="replace")

    def playbook_pid(self):
        """The ansible-playbook process (the wrapper's child), or None once it has ended."""
        try:
            children = Path("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)).read_text(encoding="ascii").split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def run_dir_entries(self):
        """What is in the run's own /run/nixie-metal (seen through the wrapper's mount namespace)."""
        return sorted(os.listdir("/proc/%d/root%s" % (self.proc.pid, RUN_DIR)))

    def state_record(self):
        try:
            return json.loads(Path("/proc/%d/root%s/pxe_server.json" % (self.proc.pid, RUN_DIR)).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def wait_playbook(self, timeout):
        """Wait until ansible-playbook has ended; return its exit code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"^NIXIE-PLAYBOOK-EXIT (\d+)$", self.output(), re.MULTILINE)
            if found:
                self.exit_code = int(found.group(1))
                return self.exit_code
            if self.proc.poll() is not None:
                pytest.fail("the run's wrapper ended (%s) before the playbook reported:\n%s" % (self.proc.returncode, self.output()[-4000:]))
            time.sleep(0.2)
        pytest.fail("the playbook did not end within %ds:\n%s" % (timeout, self.output()[-4000:]))

    def finish(self):
        """Let the wrapper end; its mount namespace (and run directory) go with it."""
        self._watching = False
        self._watcher.join()
        if self.proc.poll() is None:
            if self.exit_code is None:   # the test failed before the playbook ended: stop it
                os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def leftover_processes(self):
        """Processes in the lab namespace other than the run's wrapper and the test's own helpers."""
        listing = subprocess.run(["ip", "netns", "pids", self.site.lab_ns], capture_output=True, text=True, check=True).stdout
        return {int(pid) for pid in listing.split()} - {self.proc.pid} - self.site.helper_pids

    def async_results(self):
        """The async job files of the run (the netboot server is the playbook's only async task)."""
        results = []
        for path in sorted(Path(self.site.async_dir).glob("*")):
            if path.is_file() and not path.name.endswith(".tmp"):
                try:
                    results.append(json.loads(path.read_text(encoding="utf-8")))
                except ValueError:
                    results.append({"unreadable": path.read_text(encoding="utf-8", errors="replace")})
        return results


def command_line(pid):
    try:
        return Path("/proc/%d/cmdline" % pid).read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return "(gone)"


def wol_packets(site):
    try:
        text = Path(site.wol_log).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def failures(output):
    """The per-host failures of the last play ("Fail a machine that was not installed")."""
    found = {}
    for match in re.finditer(r'^fatal: \[(\w+)\]: FAILED! => \{.*?"msg": "(.*?)"\}\s*$', output, re.MULTILINE):
        found[match.group(1)] = match.group(2)
    return found


def recap(output):
    """PLAY RECAP: host -> {ok, changed, unreachable, failed, skipped, rescued, ignored}."""
    rows = {}
    for line in output.split("PLAY RECAP", 1)[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line)
        if match:
            rows[match.group(1)] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return rows


def report_lines(output):
    """The lines of "Report every machine": host -> text."""
    lines = {}
    for match in re.finditer(r'"msg": "(node\d): (.*?)"', output.split("TASK [Report every machine]", 1)[-1]):
        lines.setdefault(match.group(1), match.group(2))
    return lines


@pytest.fixture
def site():
    os.makedirs(RUN_DIR, exist_ok=True)   # the mount point for each run's private tmpfs
    # Not pytest's tmp_path (under /tmp/pytest-of-root, root's only): the server reads the kernel and initrd as nobody.
    files = Path(tempfile.mkdtemp(prefix="nixie-provision-lifecycle-"))
    files.chmod(0o755)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, files)
        # With the site's DHCP server (dnsmasq, addresses only): the preflight asks for it before the run.
        lab = cleanup.enter_context(Lab())
        (files / "kernel").write_bytes(b"kernel")
        (files / "initrd").write_bytes(b"initrd")
        hosts = {name: {"mac_address": mac, "system": SYSTEM % name} for name, mac in MACS.items()}
        (files / "hosts.json").write_text(json.dumps(hosts, indent=2), encoding="utf-8")
        (files / "hosts.nixie.yml").write_text("plugin: nixie.metal.hosts\npath: hosts.json\n", encoding="utf-8")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lifecycle", "-f", str(files / "id_ed25519")], check=True)
        (files / "async").mkdir()
        lab.files = files
        lab.async_dir = str(files / "async")
        lab.vars = {
            "nixie_installer": {"kernel": str(files / "kernel"), "initrd": str(files / "initrd"), "cmdline": "console=ttyS0"},
            "nixie_interface": lab.bridge,
            "nixie_address": lab.controller_ip,
            "nixie_nixos_anywhere": str(STANDIN),
            # There is no site flake here to build the machines' systems from (hosts.json names them): the stand-in
            # nixos-anywhere is given --flake.
            "nixie_build": "flake",
            # The site flake here has no disko configuration to evaluate; no install gets as far as the disk guard.
            "nixie_disks": ["/dev/vda"],
            "nixie_ssh_key": str(files / "id_ed25519"),
            "nixie_agent_timeout": 5,
            "nixie_install_timeout": 60,
            # The site dnsmasq answers at once; the default 4 s of listening is for real segments.
            "nixie_preflight_dhcp_wait": 2,
        }
        lab.env = dict(
            os.environ,
            PATH="%s:%s" % (BIN, os.environ.get("PATH", "/usr/bin:/bin")),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_RETRY_FILES_ENABLED="0",
            ANSIBLE_HOST_KEY_CHECKING="0",
            ANSIBLE_ASYNC_DIR=lab.async_dir,
            ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
            # explicit: a test runner (ansible-test) may enable other inventory plugins
            ANSIBLE_INVENTORY_ENABLED="nixie.metal.hosts,host_list,auto,yaml,ini",
            ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="1",
            NIXOS_ANYWHERE_STANDIN_LOG=str(files / "nixos-anywhere.jsonl"),
        )
        lab.env.pop("ANSIBLE_CONFIG", None)
        lab.wol_log = str(files / "wol.jsonl")
        listener = lab.popen([sys.executable, "-c", WOL_LISTENER, lab.wol_log], ns=lab.site_ns, stdout=subprocess.PIPE)
        assert listener.stdout.readline().strip() == b"listening"
        lab.helper_pids = set()
        yield lab
        assert bound_ports(lab) == set(), "a server port is still bound after the test"


def start(site, name, **kwargs):
    return Run(site, name, **kwargs)


def assert_nothing_left(run):
    """After the playbook: no server port, no server process, an empty run directory."""
    wait_until(lambda: bound_ports(run.site) == set(), "server ports still bound: %s" % bound_ports(run.site), timeout=5)
    for pid in sorted(run.server_pids):
        wait_until(lambda pid=pid: not os.path.exists("/proc/%d" % pid), "the server (pid %d) outlived the run" % pid, timeout=5)
    # Ansible's async watchdog looks at its job every 5 s, so it may outlive the server by that long (more on a busy machine).
    seen = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        left = run.leftover_processes()
        if not left:
            break
        for pid in left:
            seen.setdefault(pid, command_line(pid))
        time.sleep(0.2)
    else:
        pytest.fail("processes left in the lab namespace: %s" % {pid: command for pid, command in seen.items() if pid in left})

    assert run.run_dir_entries() == [], "the run directory is not empty"


def test_check_mode_reports_and_binds_nothing(site):
    run = start(site, "check", options=["--check"])
    try:
        code = run.wait_playbook(120)
        out = run.output()
        assert code == 0, out
        assert_nothing_left(run)
    finally:
        run.finish()
    assert run.bound == set(), "check mode bound %s" % run.bound
    assert not run.saw_state_file, "check mode wrote a server state file"
    assert wol_packets(site) == [], "check mode woke a machine"
    assert run.async_results() == [], "check mode started an async job"
    # What would happen: the netboot server's settings are checked; per machine, the nixos-anywhere command and the outcome.
    assert "TASK [nixie.metal.netboot_server : Check the netboot server's settings]" in out
    for name in MACS:
        assert re.search(r"Would run, for %s: timeout --kill-after=30 60 %s --flake '?%s#%s'? --target-host 'root@<installer-address>' "
                         r"-i %s --phases disko,install,reboot \(host key checked against 1 expected key" % (
                             name, re.escape(str(STANDIN)), re.escape(str(site.files)), name, re.escape(str(site.files / "id_ed25519"))),
                         out), out
        assert re.search(r'"msg": "%s: would be installed in [\d.]+s\s*"' % name, out), out
    assert set(recap(out)) == {"localhost", *MACS}
    assert all(row["failed"] == 0 for row in recap(out).values()), recap(out)


# A stand-in site flake (NixOS cannot be built offline) in the shape the role builds: each machine's system and
# disko script are trivial derivations. Like a new site, it has no flake.lock, and its nixie-metal input is
# the example's GitHub URL, which cannot be fetched here.
SITE_FLAKE = """{
  description = "nixie.metal test stand-in: the lab machines' systems and disko scripts";
  inputs.nixpkgs.url = "path:%(nixpkgs)s";
  inputs.nixie-metal = { url = "github:nixie-metal/nixie.metal"; inputs.nixpkgs.follows = "nixpkgs"; };
  outputs = { nixie-metal, ... }:
    let
      machine = name: {
        config.system.build.toplevel = builtins.derivation {
          name = "nixos-system-${name}-test"; system = "%(system)s"; builder = "/bin/sh";
          args = [ "-c" "/bin/mkdir $out && /bin/cp ${nixie-metal}/nix/agent/nixie-agent $out/agent" ];
        };
        config.system.build.diskoScript = builtins.derivation {
          name = "disko-${name}-test"; system = "%(system)s"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ];
        };
      };
    in { nixosConfigurations = { node1 = machine "node1"; node2 = machine "node2"; }; };
}
"""


def test_check_mode_evaluates_the_systems_on_the_controller(site):
    """nixie_build controller (the default): in check mode the role evaluates each machine's system and disko script
    (nix build --dry-run, the running collection as nixie-metal, no flake.lock, no network) and shows nixos-anywhere's
    command line with their store paths; nothing is built, bound or woken."""
    (site.files / "nixpkgs").mkdir()
    (site.files / "nixpkgs" / "flake.nix").write_text("{ outputs = _: { }; }\n", encoding="utf-8")
    (site.files / "flake.nix").write_text(SITE_FLAKE % {"nixpkgs": site.files / "nixpkgs", "system": platform.machine() + "-linux"},
                                          encoding="utf-8")
    # No "system" in hosts.json: the systems are the flake's.
    hosts = {name: {"mac_address": mac} for name, mac in MACS.items()}
    (site.files / "hosts.json").write_text(json.dumps(hosts, indent=2), encoding="utf-8")
    store = site.files / "nixroot"
    (store / "conf").mkdir(parents=True)
    nix_env = {"NIX_STORE_DIR": str(store / "store"), "NIX_STATE_DIR": str(store / "var"), "NIX_LOG_DIR": str(store / "log"),
               "NIX_CONF_DIR": str(store / "conf"), "XDG_CACHE_HOME": str(store / "cache"),
               "NIX_CONFIG": "build-users-group =\nsubstituters =\nsandbox = false\n",
               # One host at a time: two nix 2.8 processes adding the same source to a private store without a daemon
               # race on its path lock ("getting status of ...-source.lock: No such file or directory", seen once in CI).
               # A controller's store with nix-daemon serialises that itself; this test is about check mode, not that.
               "ANSIBLE_FORKS": "1"}
    run = start(site, "check-controller", extra_vars={"nixie_build": None}, options=["--check"], env=nix_env)
    try:
        code = run.wait_playbook(180)
        out = run.output()
        assert code == 0, out
        assert_nothing_left(run)
    finally:
        run.finish()
    assert run.bound == set() and not run.saw_state_file and wol_packets(site) == []
    for name in MACS:
        found = re.search(r"Would run, for %s: timeout --kill-after=30 60 %s --store-paths (\S+) (\S+) "
                          r"--target-host 'root@<installer-address>' -i %s --phases disko,install,reboot --build-on local " % (
                              name, re.escape(str(STANDIN)), re.escape(str(site.files / "id_ed25519"))), out)
        assert found, out
        disko, system = found.groups()
        assert disko.startswith(str(store / "store") + "/") and disko.endswith("-disko-%s-test" % name), disko
        assert system.startswith(str(store / "store") + "/") and system.endswith("-nixos-system-%s-test" % name), system
        assert not os.path.exists(system), "check mode built %s" % system
    assert not (site.files / "flake.lock").exists()


@pytest.mark.parametrize("missing", ["nixos-anywhere", "nix", "ssh"])
def test_a_missing_tool_stops_the_run_before_any_machine_is_woken(site, missing):
    extra, env = {}, {}
    if missing == "nixos-anywhere":
        extra["nixie_nixos_anywhere"] = "/nonexistent/nixos-anywhere"
        expected = ["nixos-anywhere  FAIL    /nonexistent/nixos-anywhere not found", "install nixos-anywhere 1.6.0 or newer"]
    else:
        # A PATH that has everything but the tool (nix is needed only when the installer is built here).
        hidden = {"nix": {"nix"}, "ssh": {"ssh", "ssh-keyscan"}}[missing]
        sandbox = site.files / "path"
        sandbox.mkdir()
        for directory in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
            if os.path.isdir(directory):
                for entry in os.listdir(directory):
                    if entry not in hidden and not (sandbox / entry).exists():
                        (sandbox / entry).symlink_to(os.path.join(directory, entry))
        env["PATH"] = "%s:%s" % (BIN, sandbox)
        if missing == "nix":
            extra["nixie_installer"] = None
            expected = ["nix             FAIL    not found: nix not found on PATH", "-> install Nix (docs/nix.md"]
        else:
            expected = ["ssh-client      FAIL    ssh, ssh-keyscan not installed", "-> apt-get install openssh-client"]
    run = start(site, "missing-" + missing, extra_vars=extra, env=env)
    try:
        code = run.wait_playbook(120)
        out = run.output()
        assert code != 0, out
        assert_nothing_left(run)
    finally:
        run.finish()
    assert "TASK [Stop when a check failed]" in out, out
    assert "The run cannot start here: %s failed" % {"nixos-anywhere": "nixos-anywhere", "nix": "nix", "ssh": "ssh-client"}[missing] in out, out
    for text in expected:
        assert text in out, out
    for later in ("TASK [Find out whether the machine already runs its system]", "TASK [nixie.metal.netboot_server : Start the netboot server]",
                  "TASK [nixie.metal.provision_machine : Wake the machine]"):
        assert later not in out, out
    assert recap(out)["localhost"]["failed"] == 1, recap(out)
    assert run.bound == set() and not run.saw_state_file
    assert wol_packets(site) == [], "a machine was woken"
    assert run.async_results() == []


def test_every_machine_fails_with_the_diagnosis_and_the_server_stops(site):
    run = start(site, "all-fail")
    try:
        code = run.wait_playbook(150)
        out = run.output()
        assert code != 0, out
        assert_nothing_left(run)
    finally:
        run.finish()
    assert run.bound == SERVER_PORTS, "the server never served: %s" % run.bound
    assert run.saw_state_file
    # Each machine: woken (the packet crossed the bridge), then failed at wait_for_agent with the diagnosis.
    woken = {packet["mac"] for packet in wol_packets(site) if packet["peer"] == site.controller_ip}
    assert woken == set(MACS.values()), wol_packets(site)
    found = failures(out)
    assert set(found) == set(MACS), out
    for name in MACS:
        assert found[name].startswith("Follow the network boot until the installer phones home: "), found[name]
        assert NO_DHCP in found[name], found[name]
        assert re.match(r"failed in [\d.]+s - Follow the network boot until the installer phones home: .*%s" % NO_DHCP, report_lines(out)[name]), out
    rows = recap(out)
    assert set(rows) == {"localhost", *MACS}, rows
    assert rows["localhost"]["failed"] == 0 and all(rows[name]["failed"] == 1 for name in MACS), rows
    assert "node1" not in Path(site.files / "nixos-anywhere.jsonl").read_text(encoding="utf-8") \
        if (site.files / "nixos-anywhere.jsonl").exists() else True
    # The server job ended because the playbook stopped it, and it says where each machine got to.
    jobs = run.async_results()
    assert len(jobs) == 1 and jobs[0].get("finished", 1), jobs
    assert jobs[0]["stop_reason"] == "state=stopped", jobs[0]
    assert {host["name"]: host["state"] for host in jobs[0]["hosts"]} == {name: "known" for name in MACS}
    record("lifecycle.all_fail", "tests/integration/targets/provision_lifecycle/test_provision_lifecycle.py::"
           "test_every_machine_fails_with_the_diagnosis_and_the_server_stops",
           "both machines failed with the diagnosis; the server was stopped by the playbook; no process, port or state file left")


def test_an_interrupted_run_leaves_no_server(site):
    run = start(site, "interrupted", extra_vars={"nixie_agent_timeout": 300})
    try:
        # Serving, both machines woken, and their installers being waited for.
        wait_until(lambda: run.state_record() is not None and len(wol_packets(site)) >= 2,
                   "the run did not wake the machines:\n%s" % run.output()[-3000:], timeout=90)
        time.sleep(2)
        health = json.loads(site.run(["curl", "-sf", "http://%s:8080/api/v1/health" % site.controller_ip]).stdout)
        assert health["ok"] is True
        server_pid = run.state_record()["pid"]
        playbook = run.playbook_pid()
        assert playbook is not None
        # Ctrl-C: SIGINT to the foreground process group (the wrapper traps it and stays).
        interrupted = time.monotonic()
        os.killpg(run.proc.pid, signal.SIGINT)
        try:
            code = run.wait_playbook(20)
        except BaseException:
            os.killpg(run.proc.pid, signal.SIGINT)   # a second Ctrl-C, as an operator would
            code = run.wait_playbook(20)
        assert code != 0, run.output()
        wait_until(lambda: not os.path.exists("/proc/%d" % server_pid), "the server (pid %d) outlived the run" % server_pid, timeout=10)
        wait_until(lambda: bound_ports(site) == set(), "server ports still bound after the interruption", timeout=5)
        stopped_after = time.monotonic() - interrupted
        assert_nothing_left(run)
    finally:
        run.finish()
    assert stopped_after < 15, stopped_after
    assert wol_packets(site), "the machines were never woken"
    jobs = run.async_results()
    assert len(jobs) == 1, jobs
    assert jobs[0]["stop_reason"] == "the ansible-playbook run that started the server (pid %d) ended" % playbook, jobs[0]
    record("lifecycle.ctrl_c", "tests/integration/targets/provision_lifecycle/test_provision_lifecycle.py::test_an_interrupted_run_leaves_no_server",
           "Ctrl-C while serving: server gone and ports free %.1f s later; no process or state file left" % stopped_after,
           seconds=round(stopped_after, 1))


SSHD_CONFIG = """\
ListenAddress {address}:22
HostKey {host_key}
PidFile none
UsePAM no
StrictModes no
AuthorizedKeysFile none
PasswordAuthentication no
KbdInteractiveAuthentication no
"""


def start_sshd(site, ns, address):
    """An SSH server at ``address`` in namespace ``ns`` (the "installer" of node1), in a mount namespace of its own for /run/sshd."""
    host_key = site.files / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "installer", "-f", str(host_key)], check=True)
    config = site.files / "sshd_config"
    config.write_text(SSHD_CONFIG.format(address=address, host_key=host_key), encoding="utf-8")
    with open(site.files / "sshd.log", "wb") as log:
        site.popen(["sh", "-c", 'mount -t tmpfs tmpfs /run && mkdir -m 755 /run/sshd && exec /usr/sbin/sshd -D -e -f "$0"', str(config)],
                   ns=ns, stdout=log, stderr=subprocess.STDOUT)
    wait_until(lambda: ":22 " in site.run(["ss", "-Htln"], ns=ns).stdout, "sshd did not start: %s" % (
        site.files / "sshd.log").read_text(encoding="utf-8", errors="replace"), timeout=10)
    return host_key


def test_a_silent_machine_fails_alone_and_the_other_goes_on(site):
    if not os.path.exists("/usr/sbin/sshd"):
        subprocess.run(["apt-get", "install", "-y", "-q", "openssh-server"], check=True, capture_output=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    # node1's "installer": a namespace on the bridge with node1's own MAC (the server serves node1's script and
    # phone-home to nothing else), at an address of the segment that the site's DHCP range does not hand out.
    node1_ns, node1_ip = site.add_machine(MACS["node1"], INSTALLER_IP), INSTALLER_IP
    start_sshd(site, node1_ns, node1_ip)
    # node2's wait for its agent is all that ends node2; it must outlast node1's phone-home, its way to the install step
    # (under 2 s in recent runs, at most 15 s asserted below) and its refused host key. 25 s leaves that room; the
    # order of the two failures stays asserted below.
    run = start(site, "one-fails", extra_vars={"nixie_agent_timeout": 25})
    try:
        wait_until(lambda: run.state_record() is not None and wol_packets(site), "the run did not start serving:\n%s" % run.output()[-3000:],
                   timeout=90)
        # Another machine on the segment (the site's, its own MAC) asks for node1's script first: refused, and the run's
        # report says so on node1's line.
        mac = MACS["node1"]
        refused = site.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            "http://%s:8080/boot/%s/script.ipxe" % (site.controller_ip, mac)], ns=site.site_ns).stdout
        assert refused == "403", refused
        # node1's "installer" phones home from across the bridge with the token of its own iPXE script.
        script = site.run(["curl", "-sf", "http://%s:8080/boot/%s/script.ipxe" % (site.controller_ip, mac)], ns=node1_ns).stdout
        token = re.search(r"nixie\.token=(\S+)", script).group(1)
        # It reports another host key than the SSH server at its address offers: the install must stop there.
        host_key = (site.files / "id_ed25519.pub").read_text(encoding="utf-8").strip()
        report = {"mac": mac, "addresses": [{"ifname": "eth0", "mac": mac, "address": node1_ip, "prefix": 24}],
                  "ssh_host_keys": [host_key], "hostname": "nixos"}
        phoned = time.monotonic()
        answer = site.run(["curl", "-sS", "-H", "Authorization: Bearer " + token, "-H", "Content-Type: application/json",
                           "--data-binary", json.dumps(report), "http://%s:8080/api/v1/phone-home" % site.controller_ip],
                          ns=node1_ns).stdout
        assert json.loads(answer)["state"] == "phoned_home", answer
        # node1 is at its install step long before node2's wait for its agent runs out.
        wait_until(lambda: "nixie.metal.nixos_anywhere" in run.output(), "node1 did not go on to the install:\n%s" % run.output()[-3000:],
                   timeout=15)
        reached_install = time.monotonic() - phoned
        assert "fatal: [node2]" not in run.output().split("nixie.metal.nixos_anywhere", 1)[0]
        code = run.wait_playbook(150)
        out = run.output()
        assert code != 0, out
        assert_nothing_left(run)
    finally:
        run.finish()
    assert reached_install < 15, reached_install
    found = failures(out)
    assert set(found) == set(MACS), out
    # node2 never phoned home: it fails with the diagnosis, alone.
    assert found["node2"].startswith("Follow the network boot until the installer phones home: ") and NO_DHCP in found["node2"], found["node2"]
    # node1 got past wait_for_agent: its failure is the install's (the SSH server at its address offers another host key).
    assert "Follow the network boot" not in found["node1"], found["node1"]
    # Its boot's progress was shown as it happened: here the stand-in installer phoned home without booting.
    assert re.search(r"ok: \[node1 -> localhost\] => \(item=installer phoned home at \+[\d.]+ s\)", out), out
    assert "Stop, the target's host key is not one the installer reported" in found["node1"], found["node1"]
    assert "Nothing was sent" in found["node1"] or "nothing was sent" in found["node1"], found["node1"]
    assert node1_ip in out
    site_mac = json.loads(site.run(["ip", "-j", "link", "show", "dev", "eth0"], ns=site.site_ns).stdout)[0]["address"]
    assert re.search(r"- WARNING: node1: refused 1 request \(script\) from %s \(MAC %s\): another machine asked for its boot"
                     % (re.escape(site.site_ip), site_mac), report_lines(out)["node1"]), report_lines(out)["node1"]
    assert "WARNING" not in report_lines(out)["node2"], report_lines(out)["node2"]
    # node1's install failed (its first failure) before node2's wait ran out: it never waited for node2.
    assert out.index("fatal: [node1") < out.index("fatal: [node2"), "node1 waited for node2"
    jobs = run.async_results()
    assert len(jobs) == 1 and jobs[0]["stop_reason"] == "state=stopped", jobs
    states = {host["name"]: host["state"] for host in jobs[0]["hosts"]}
    assert states == {"node1": "phoned_home", "node2": "known"}, states
    record("lifecycle.one_fails", "tests/integration/targets/provision_lifecycle/test_provision_lifecycle.py::"
           "test_a_silent_machine_fails_alone_and_the_other_goes_on",
           "node2 failed alone; node1 reached its install step %.1f s after phoning home; the server stopped; nothing left" % reached_install,
           seconds_to_install_step=round(reached_install, 1))


def test_a_server_that_never_answers_its_health_check_is_stopped_by_the_rescue(site):
    """The netboot server starts (binds its ports, writes its state file) but its API never answers: a firewall rule in
    the run's namespace refuses the controller's own connections to the HTTP port (only on lo, the way the controller
    reaches itself, so the preflight's probes from the serving interface still pass). The netboot_server role's
    rescue must stop it (state=stopped: its API refuses that too, so by SIGTERM) and end the run with the health
    check's error, before any machine is woken; its owner_pid watch, which would end it once the playbook is gone,
    must not be what stopped it."""
    site.run(["nft", "add table inet nixie_health; add chain inet nixie_health input { type filter hook input priority 0; "
              "policy accept; }; add rule inet nixie_health input iifname lo tcp dport 8080 reject with tcp reset"])
    try:
        # The server binds and writes its state file within a second or two; 8 s of health checks leave it room on a
        # busy machine without the default 30 s.
        run = start(site, "no-health", extra_vars={"nixie_server_start_timeout": 8})
        try:
            code = run.wait_playbook(180)
            out = run.output()
            assert code != 0, out
            assert_nothing_left(run)
        finally:
            run.finish()
    finally:
        site.run(["nft", "delete table inet nixie_health"])
    # It did start: it bound its ports and wrote its state file, so there was a server to stop.
    assert run.saw_state_file and ("tcp", 8080) in run.bound, (run.saw_state_file, run.bound, out)
    assert "TASK [nixie.metal.netboot_server : Wait until the netboot server answers]" in out
    assert "TASK [nixie.metal.netboot_server : Stop a netboot server that started but does not answer]" in out
    stopped = re.search(r'^fatal: \[localhost\]: FAILED! => \{.*?"msg": "(.*?)"\}\s*$',
                        out.split("TASK [nixie.metal.netboot_server : Stop the run]", 1)[-1], re.MULTILINE)
    assert stopped and "Connection refused" in stopped.group(1), out
    assert wol_packets(site) == [], "a machine was woken although the server never answered"
    jobs = run.async_results()
    assert len(jobs) == 1 and jobs[0].get("finished", 1), jobs
    # SIGTERM from state=stopped in the rescue (the API refused), not "the ansible-playbook run ... ended".
    assert jobs[0]["stop_reason"] == "signal SIGTERM", jobs[0]
