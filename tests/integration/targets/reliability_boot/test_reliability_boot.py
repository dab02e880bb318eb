# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real firmware boots through pxe_server (started by Ansible) while things go wrong.

Two server runs, each in its own lab (network namespaces, a bridge, dnsmasq as the site's DHCP
server), each proving separate things so a failure names its cause:

1. One run, two machines, one after the other:
   * a SeaBIOS/iPXE machine is powered off (QEMU killed) once it has fetched the kernel, powered on
     again, and is served again in the same run until it phones home;
   * then a storm of hostile UDP (67, 4011, 69) and junk HTTP from another host on the segment runs
     while the second machine boots: it still phones home, and the server's memory stays bounded;
   * a capture of the whole run shows no DHCP answer to any MAC outside the inventory;
   * no token appears in anything Ansible printed or kept;
   * the server stops by itself once both are done, leaves no process, port or state file, and the
     next run starts cleanly.
2. 10% loss and 25% reordering, both ways, on one machine's link (user-space, see impair.py: this
   kernel has no netem): the machine still boots and phones home.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

COLLECTION = Path(os.environ.get("NIXIE_COLLECTION", Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(COLLECTION / "tests" / "lab"))
sys.path.insert(0, str(COLLECTION / "tests" / "reliability"))

from nixielab import installer as lab_installer  # noqa: E402  pylint: disable=wrong-import-position,import-error
from nixielab import vm as lab_vm  # noqa: E402  pylint: disable=wrong-import-position,import-error
from nixielab.net import Lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
from nixielab.vm import VM  # noqa: E402  pylint: disable=wrong-import-position,import-error
from nixielab.probes import bound_ports, wait_until  # noqa: E402  pylint: disable=wrong-import-position,import-error
from record import record  # noqa: E402  pylint: disable=wrong-import-position,import-error

HERE = Path(__file__).resolve().parent
TEST = "tests/integration/targets/reliability_boot/test_reliability_boot.py::"
AGENT_TIMEOUT = 180
TOKEN = re.compile(r"nixie\.token=(\S+)")
STORM_SECONDS_MAX = 120
MEMORY_GROWTH_LIMIT_KB = 64 * 1024
#: Seeds of the lossy link's pattern (impair.py draws per flow, so these fates are fixed):
#: 1 -- the first copy of our first proxy offer is lost, the next one arrives;
#: 10 -- iPXE's first DISCOVER is lost, its second is answered;
#: 136 -- our offers' first two frames are lost (with one offer per DISCOVER, as before
#: policy.OFFER_REPEATS, those were the answers to both DISCOVERs: "Nothing to boot").
#: tests/reliability/loss_sweep boots with random ones.
LOSS_SEEDS = [int(seed) for seed in os.environ.get("NIXIE_LOSS_SEEDS", "1,10,136").split(",")]


@pytest.fixture(scope="module")
def installer():
    return lab_installer.build(str(COLLECTION / "nix" / "agent" / "nixie-agent"))


class Play:
    """serve.yml running in the lab namespace."""

    def __init__(self, lab, installer, hosts):
        self.lab = lab
        self.run_dir = lab.workdir / "run"
        self.async_dir = lab.workdir / "async"
        self.result_file = lab.workdir / "result.json"
        self.log = lab.workdir / "play.log"
        hosts_file = lab.workdir / "hosts.json"
        hosts_file.write_text(json.dumps({name: {"mac_address": mac} for name, mac in hosts.items()}), encoding="utf-8")
        self.variables = {
            "hosts_file": str(hosts_file), "kernel": str(installer.kernel), "initrd": str(installer.initrd),
            "cmdline": installer.cmdline(), "interface": lab.bridge, "run_dir": str(self.run_dir),
            "api_url": "http://%s:8080/api/v1" % lab.controller_ip, "expect_macs": list(hosts.values()),
            "agent_timeout": AGENT_TIMEOUT, "result_file": str(self.result_file), "ansible_python_interpreter": sys.executable,
        }
        (lab.workdir / "vars.json").write_text(json.dumps(self.variables), encoding="utf-8")
        self.env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_ASYNC_DIR=str(self.async_dir))
        with open(self.log, "wb") as log:
            self.proc = lab.popen(["ansible-playbook", "-v", "-i", "localhost,", "-c", "local", "-e", "@%s" % (lab.workdir / "vars.json"),
                                   str(HERE / "serve.yml")], stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.server_pid = wait_until(self._server_pid, "the server did not come up:\n%s" % self.output, timeout=90)

    @property
    def output(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _server_pid(self):
        if self.proc.poll() is not None:
            pytest.fail("the play ended before the server came up:\n" + self.output[-3000:])
        try:
            record_ = json.loads((self.run_dir / "pxe_server.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        ok = self.lab.run(["curl", "-sf", "-o", "/dev/null", self.variables["api_url"] + "/health"], check=False).returncode == 0
        # The process that serves (and whose memory the storm must not grow): the module's child, not the root parent.
        return record_["server_pid"] if ok else None

    def host(self, mac):
        out = self.lab.run(["curl", "-sf", "%s/hosts/%s" % (self.variables["api_url"], mac)], check=False).stdout
        return json.loads(out)["host"] if out else None

    def wait_state(self, mac, states, timeout=AGENT_TIMEOUT, vm=None):
        def reached():
            if vm is not None and vm.proc.poll() is not None:
                pytest.fail("QEMU of %s ended:\n%s" % (mac, vm.serial()[-2000:]))
            host = self.host(mac)
            return host if host and host["state"] in states else None

        def message():
            return "%s never reached %s (lab directory %s); serial:\n%s" % (mac, states, self.lab.workdir, vm.serial()[-2000:] if vm else "")
        return wait_until(reached, message, timeout=timeout, interval=0.1)

    def finish(self, timeout=AGENT_TIMEOUT + 60):
        self.proc.wait(timeout=timeout)
        assert self.result_file.exists(), "the play wrote no result:\n" + self.output[-4000:]
        return json.loads(self.result_file.read_text(encoding="utf-8"))


def rss_kb(pid):
    for line in Path("/proc/%d/status" % pid).read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class MemoryWatch(threading.Thread):
    """Samples the server's resident memory twice a second."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples = []
        self.running = True

    def run(self):
        while self.running:
            try:
                self.samples.append(rss_kb(self.pid))
            except OSError:
                return
            time.sleep(0.5)

    def stop(self):
        self.running = False
        self.join()
        return self.samples


def replies_on_the_wire(pcap, server_ip):
    """(chaddr MAC, source port) of every DHCP answer the server sent, and the stranger requests seen.

    Read from the raw UDP payload (chaddr is bytes 28-33 of a BOOTP message): scapy decodes BOOTP
    only between ports 67 and 68, and both the storm's requests and the 4011 answers use others.
    """
    from scapy.all import IP, UDP, rdpcap  # pylint: disable=import-outside-toplevel,no-name-in-module
    replies, stranger_requests = [], 0
    for frame in rdpcap(str(pcap)):
        if IP not in frame or UDP not in frame:
            continue
        udp = frame[UDP]
        payload = bytes(udp.payload)
        if len(payload) < 34 or payload[0] not in (1, 2):
            continue
        mac = payload[28:34].hex(":")
        if frame[IP].src == server_ip and udp.sport in (67, 4011):
            replies.append((mac, udp.sport))
        elif payload[0] == 1 and udp.dport in (67, 4011) and mac.startswith("02:ba:d0"):
            stranger_requests += 1
    return replies, stranger_requests


def test_power_cycle_then_a_storm_and_nothing_for_strangers(installer):
    cycled, stormed = "52:54:00:12:34:41", "52:54:00:12:34:42"
    with Lab() as lab:
        capture = lab.capture(lab.workdir / "run.pcap", "udp port 67 or udp port 68 or udp port 4011").start()
        play = Play(lab, installer, {"cycle1": cycled, "storm1": stormed})
        pid = play.server_pid

        # 1. Powered off once it has the kernel, then on again: served again, in the same run.
        first = VM(lab, "seabios-ipxe", mac=cycled).start()
        play.wait_state(cycled, ("kernel_served", "initrd_served"), vm=first)
        os.kill(first.pid, signal.SIGKILL)          # the power goes, nothing is told
        first.proc.wait()
        assert play.host(cycled)["state"] != "phoned_home"
        second = VM(lab, "seabios-ipxe", mac=cycled).start()
        host = play.wait_state(cycled, ("phoned_home",), vm=second)
        power_on_to_home = time.monotonic() - second.started_at
        served = [event["event"] for event in host["events"]]
        assert served.count("script_served") >= 2 and served.count("kernel_served") >= 2, served

        # 2. A storm from another host on the segment while the second machine boots.
        baseline = rss_kb(pid)
        memory = MemoryWatch(pid)
        memory.start()
        stats_file = lab.workdir / "storm.json"
        storm = lab.popen([sys.executable, str(HERE / "storm.py"), lab.controller_ip, str(STORM_SECONDS_MAX), str(stats_file), "1000"],
                          ns=lab.site_ns)
        time.sleep(2)                               # the storm is on before the machine powers on
        booting = VM(lab, "seabios-ipxe", mac=stormed).start()
        play.wait_state(stormed, ("phoned_home",), vm=booting)
        boot_seconds = time.monotonic() - booting.started_at
        storm.send_signal(signal.SIGTERM)
        storm.wait(timeout=30)
        samples = memory.stop()
        storm_stats = json.loads(stats_file.read_text(encoding="utf-8"))

        result = play.finish()
        capture.stop()
        server = result["server"]
        for agent in result["agents"]:
            assert not agent.get("failed"), agent.get("msg")
        assert server["stop_reason"] == "every host is done", server["stop_reason"]
        # A whole boot served as nobody imported nothing after the switch (pxe_server warns when it does).
        assert "after it switched" not in play.output, play.output[-3000:]

        # Memory stayed bounded, and so did the table of strangers.
        peak = max(samples)
        assert peak - baseline < MEMORY_GROWTH_LIMIT_KB, (baseline, peak)
        ignored = server["ignored"]
        assert len(ignored["macs"]) <= ignored["max_macs"], ignored["max_macs"]
        assert storm_stats["udp_total"] > 10000 and storm_stats["http_total"] > 100, storm_stats

        # On the wire: answers only to the two machines of the inventory.
        replies, stranger_requests = replies_on_the_wire(capture.path, lab.controller_ip)
        assert replies, "the capture holds no answer at all; it proves nothing"
        strangers_answered = sorted({mac for mac, dummy in replies if mac not in (cycled, stormed)})
        assert not strangers_answered, strangers_answered
        assert stranger_requests > 1000, stranger_requests

        # No token in anything Ansible printed or kept (the serial consoles show what they were).
        tokens = set(TOKEN.findall(first.serial() + second.serial() + booting.serial()))
        assert len(tokens) == 2, tokens
        shown = play.output + json.dumps(result)
        for path in play.async_dir.rglob("*"):
            if path.is_file():
                shown += path.read_text(errors="replace")
        leaked = [token for token in tokens if token in shown]
        assert not leaked, "a host token appears in Ansible's output or async results"

        # The run is over: nothing left, and the next run starts cleanly.
        wait_until(lambda: not os.path.exists("/proc/%d" % pid), "the server process outlived the run", timeout=10)
        assert bound_ports(lab) == set()
        assert not (play.run_dir / "pxe_server.json").exists()
        again = lab.run(["ansible", "localhost", "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable,
                         "-m", "nixie.metal.pxe_server", "-a", json.dumps(dict(
                             {k: play.variables[k] for k in ("hosts_file", "kernel", "initrd", "interface", "run_dir")}, idle_timeout=1))],
                        check=False, env=play.env)
        assert again.stdout.startswith("localhost | CHANGED => "), again.stdout[-2000:]
        assert '"stop_reason": "idle_timeout' in again.stdout and '"recovered"' not in again.stdout, again.stdout[-2000:]
        assert bound_ports(lab) == set()

    test = TEST + "test_power_cycle_then_a_storm_and_nothing_for_strangers"
    record("faults.power_cycle", test,
           "SeaBIOS/iPXE powered off after kernel_served and on again: served again (script %dx, kernel %dx), "
           "phoned home %.0f s after power-on" % (served.count("script_served"), served.count("kernel_served"), power_on_to_home),
           seconds_after_power_on=round(power_on_to_home, 1), events=served)
    storm_summary = ("%d hostile UDP datagrams (67/4011/69) and %d junk HTTP requests in %.0f s; the machine phoned home in %.0f s; "
                     "server RSS %d -> peak %d KiB (+%d)")
    storm_summary %= (storm_stats["udp_total"], storm_stats["http_total"], storm_stats["seconds"], boot_seconds, baseline, peak, peak - baseline)
    record("storm.boot", test, storm_summary,
           storm=storm_stats, boot_seconds=round(boot_seconds, 1), rss_kb={"baseline": baseline, "peak": peak},
           ignored_macs=len(ignored["macs"]), ignored_overflow=ignored["overflow"], counters=server.get("counters"))
    record("owned.no_offer_to_strangers", test,
           "capture of the run: %d DHCP answers, all to the 2 inventory MACs; %d requests from stranger MACs answered 0 times"
           % (len(replies), stranger_requests), replies=len(replies), stranger_requests=stranger_requests)
    record("owned.tokens_not_shown", test,
           "the 2 host tokens (read from the machines' consoles) appear nowhere in ansible-playbook -v output, "
           "the job's result or the async directory", tokens_checked=len(tokens))
    record("lifecycle.success", test,
           "after a run where every machine phoned home: the server stopped by itself ('every host is done'), "
           "no process, no bound port, no state file; the next run started cleanly")


class ImpairedVM(VM):
    """A VM whose NIC reaches its tap through impair.py instead of directly (both sides captured)."""

    def __init__(self, lab, kind, mac, loss, reorder, seed):
        super().__init__(lab, kind, mac=mac)
        self.loss = loss
        self.reorder = reorder
        self.seed = seed
        self.stats_file = lab.workdir / ("impair-%s.json" % mac.replace(":", ""))
        self.capture_prefix = lab.workdir / ("impair-%s" % mac.replace(":", ""))
        self.relay = None

    def start(self):
        relay_port, qemu_port = 40000 + len(self.lab.taps), 41000 + len(self.lab.taps)
        original = lab_vm.qemu_argv

        def argv(*args, **kwargs):
            out = original(*args, **kwargs)
            index = out.index("tap,id=n0,ifname=%s,script=no,downscript=no" % kwargs["tap"])
            out[index] = ("dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=%d,"
                          "remote.type=inet,remote.host=127.0.0.1,remote.port=%d" % (qemu_port, relay_port))
            self.relay = self.lab.popen([sys.executable, str(HERE / "impair.py"), kwargs["tap"], str(relay_port), str(qemu_port),
                                         str(self.stats_file), str(self.loss), str(self.reorder), str(self.seed),
                                         str(self.capture_prefix)])
            return out

        lab_vm.qemu_argv = argv
        try:
            return super().start()
        finally:
            lab_vm.qemu_argv = original

    def relay_stats(self):
        self.relay.send_signal(signal.SIGTERM)
        self.relay.wait(timeout=10)
        return json.loads(self.stats_file.read_text(encoding="utf-8"))


@pytest.mark.parametrize("seed", LOSS_SEEDS)
def test_ten_percent_loss_and_reordering(installer, seed):
    mac = "52:54:00:12:34:51"
    with Lab() as lab:
        play = Play(lab, installer, {"lossy1": mac})
        machine = ImpairedVM(lab, "seabios-ipxe", mac, loss=0.10, reorder=0.25, seed=seed).start()
        host = play.wait_state(mac, ("phoned_home",), vm=machine)
        seconds = time.monotonic() - machine.started_at
        stats = machine.relay_stats()
        result = play.finish()
        assert result["server"]["stop_reason"] == "every host is done"
        for direction in ("to_machine", "from_machine"):
            counted = stats[direction]
            assert counted["frames"] > 500, stats
            assert 0.07 < counted["dropped"] / counted["frames"] < 0.13, stats
            assert counted["reordered"] > 20, stats
    frames = sum(stats[d]["frames"] for d in ("to_machine", "from_machine"))
    dropped = sum(stats[d]["dropped"] for d in ("to_machine", "from_machine"))
    reordered = sum(stats[d]["reordered"] for d in ("to_machine", "from_machine"))
    record("faults.loss_reorder", TEST + "test_ten_percent_loss_and_reordering",
           "SeaBIOS/iPXE with 10%% loss + 25%% reordering both ways (user-space, no netem in this kernel), relay seed %d: %d frames, "
           "%d dropped (%.1f%%), %d reordered; phoned home in %.0f s" % (seed, frames, dropped, 100.0 * dropped / frames, reordered, seconds),
           impairment=stats, seconds=round(seconds, 1), events=[event["event"] for event in host["events"]])
