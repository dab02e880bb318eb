# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

# Provision bench: the overhead of the nixie.metal.provision playbook itself for N machines
# whose installers are simulated (tests/lab/nixielab/agent_sim.py), from the wake to every
# wait_for_agent having returned. No firmware and no QEMU: each simulated machine, woken
# by its magic packet on br0, waits a random 0.5-2 s ("boots"), fetches its iPXE script
# from the real server, takes the token and phones home as the agent would.
#
#   python bench/provision.py                 # 50 machines, forks 50
#   python bench/provision.py --hosts 10      # the runner's --quick
#   python bench/provision.py --forks 5       # ansible's default forks, for comparison
#
# The playbook runs inside the lab namespace (Lab(site_dhcp=False)) with the offline
# stand-ins: dummy kernel/initrd as nixie_installer, and a stand-in nixos-anywhere that
# refuses at once (bench/provision.py writes it; it installs nothing), so every machine
# fails at the install step by design and the playbook exits 2. What is measured:
#   wake -> all phoned home:        first magic packet received by the simulator ->
#                                   last phone-home answered 200 (simulator's log)
#   wake -> all wait_for_agent:     first "Wake the machine" task start -> last
#                                   "Follow the network boot until the installer phones home" task end
#                                   (ansible.posix.json callback, per host under strategy free)
#   playbook wall time              the whole ansible-playbook run
# Bar: wake -> all wait_for_agent returned <= 60 s (2-core machine), every machine's
# wait_for_agent returned phoned_home, and each failed only at the install step.

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
import _common  # noqa: E402

sys.path[:] = [path for path in sys.path if os.path.abspath(path or ".") != BENCH_DIR]

LAB_DIR = os.path.join(_common.REPO, "tests", "lab")
BAR_SECONDS = 60.0
# The json callback names a role's task "role : task".
WAKE_TASK = "nixie.metal.provision_machine : Wake the machine"
WAIT_TASK = "nixie.metal.provision_machine : Follow the network boot until the installer phones home"
INSTALL_FAILURE = "bench stand-in for nixos-anywhere"
STANDIN = """#!/bin/sh
# bench/provision.py stand-in for nixos-anywhere: the bench measures wake -> wait_for_agent
# only, so the install step must fail at once. It installs nothing and never claims success.
echo "%s: not installing (the bench stops at wait_for_agent)" >&2
exit 1
""" % INSTALL_FAILURE


def mac_for(index):
    return "52:54:00:be:%02x:%02x" % (index // 256, index % 256)


def write_inputs(workdir, count, forks):
    hosts = {}
    for index in range(1, count + 1):
        name = "sim%02d" % index
        hosts[name] = {"mac_address": mac_for(index), "system": "/nix/store/%s-nixos-system-%s" % ("0" * 32, name)}
    (workdir / "hosts.json").write_text(json.dumps(hosts, indent=1), encoding="utf-8")
    (workdir / "hosts.nixie.yml").write_text("plugin: nixie.metal.hosts\npath: hosts.json\n", encoding="utf-8")
    (workdir / "macs.txt").write_text("".join(host["mac_address"] + "\n" for host in hosts.values()), encoding="utf-8")
    for name in ("kernel", "initrd"):
        (workdir / name).write_bytes(b"bench/provision.py stand-in %s\n" % name.encode())
    standin = workdir / "nixos-anywhere-standin"
    standin.write_text(STANDIN, encoding="utf-8")
    standin.chmod(0o755)
    (workdir / "ansible.cfg").write_text("[defaults]\nforks = %d\nhost_key_checking = False\n" % forks, encoding="utf-8")
    return hosts


def iso_time(text):
    return datetime.datetime.fromisoformat(text.rstrip("Z")).replace(tzinfo=datetime.timezone.utc).timestamp()


def task_times(report, name):
    """host -> (start, end, result) of every run of the task ``name`` (one entry per host under strategy free)."""
    found = {}
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            if task["task"]["name"] != name:
                continue
            duration = task["task"]["duration"]
            for host, result in task["hosts"].items():
                found[host] = (iso_time(duration["start"]), iso_time(duration["end"]) if "end" in duration else None, result)
    return found


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def measure(args):
    from nixielab.net import Lab  # pylint: disable=import-outside-toplevel

    collections = _common.collection_pythonpath()
    venv_bin = os.path.dirname(sys.executable)
    with Lab(site_dhcp=False) as lab:
        workdir = lab.workdir
        hosts = write_inputs(workdir, args.hosts, args.forks)
        base = "http://%s:8080" % lab.controller_ip
        sim_log = workdir / "agent_sim.jsonl"
        env = dict(os.environ, PYTHONPATH=LAB_DIR)
        with open(workdir / "agent_sim.out", "wb") as out:
            sim = lab.popen([sys.executable, "-m", "nixielab.agent_sim", "--interface", lab.bridge, "--base", base,
                             "--macs", str(workdir / "macs.txt"), "--log", str(sim_log),
                             "--delay", str(args.delay[0]), str(args.delay[1]), "--seed", str(args.seed)],
                            env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not any(item["event"] == "listening" for item in read_jsonl(sim_log)):
            if sim.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("agent_sim did not start:\n" + (workdir / "agent_sim.out").read_text(errors="replace"))
            time.sleep(0.05)

        variables = {
            "nixie_installer": {"kernel": str(workdir / "kernel"), "initrd": str(workdir / "initrd")},
            "nixie_interface": lab.bridge,
            "nixie_address": lab.controller_ip,
            "nixie_nixos_anywhere": str(workdir / "nixos-anywhere-standin"),
            # No site flake to build the machines' systems from: the stand-in is run with --flake.
            "nixie_build": "flake",
            # No machine here has a disk (the installers are simulated): the disk guard checks none.
            "nixie_disks": [],
            # The bench stops at wait_for_agent: what the preflight says of the install step (a stand-in with no
            # version, no key) and of the site's DHCP server (none in this lab) does not concern it.
            "nixie_preflight_ignore": ["nixos-anywhere", "ssh-key", "site-dhcp"],
            "nixie_agent_timeout": args.agent_timeout,
            "nixie_server_budget": 1800,
        }
        (workdir / "vars.json").write_text(json.dumps(variables), encoding="utf-8")
        play_env = dict(os.environ)
        play_env.update({
            "ANSIBLE_CONFIG": str(workdir / "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": collections,
            "ANSIBLE_INVENTORY_ENABLED": "nixie.metal.hosts,host_list,auto,yaml,ini",
            "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true",
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_JSON_INDENT": "0",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
            "ANSIBLE_ASYNC_DIR": str(workdir / "async"),
            "PATH": venv_bin + os.pathsep + play_env.get("PATH", ""),
        })
        argv = [os.path.join(venv_bin, "ansible-playbook"), "nixie.metal.provision", "-i", str(workdir / "hosts.nixie.yml"),
                "-e", "@" + str(workdir / "vars.json"), "-f", str(args.forks)]
        started = time.time()
        play = subprocess.run(lab.wrap(argv), capture_output=True, text=True, env=play_env, cwd=str(workdir),
                              check=False, timeout=args.timeout)
        wall = time.time() - started
        time.sleep(0.2)
        sim_events = read_jsonl(sim_log)
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            for name in ("agent_sim.jsonl", "vars.json", "hosts.json"):
                if (workdir / name).exists():
                    (workdir / name).replace(os.path.join(args.keep, name))
            with open(os.path.join(args.keep, "playbook.json"), "w", encoding="utf-8") as handle:
                handle.write(play.stdout)
    try:
        report = json.loads(play.stdout[play.stdout.index("{"):])
    except ValueError:
        raise RuntimeError("ansible-playbook (exit %d) printed no JSON report:\n%s\n%s"
                           % (play.returncode, play.stdout[-3000:], play.stderr[-3000:])) from None
    return hosts, report, sim_events, wall, play.returncode, play.stderr


def last_item(result):
    """A loop task's result is its items' results; the wait's answer is the last item's."""
    return (result.get("results") or [result])[-1]


def analyse(args, hosts, report, sim_events, wall, returncode):
    names = sorted(hosts)
    wakes = task_times(report, WAKE_TASK)
    waits = task_times(report, WAIT_TASK)
    woken = {item["mac"]: item["time"] for item in sim_events if item["event"] == "wake"}
    phoned = {item["mac"]: item["time"] for item in sim_events if item["event"] == "phone_home" and item["status"] == 200}
    failures = []
    for name in names:
        mac = hosts[name]["mac_address"]
        if name not in wakes or wakes[name][2].get("failed"):
            failures.append("%s: Wake the machine did not succeed" % name)
        if mac not in woken:
            failures.append("%s: no magic packet reached the simulated machine" % name)
        if mac not in phoned:
            failures.append("%s: the simulated machine never phoned home" % name)
        wait = waits.get(name)
        if wait is None or wait[2].get("failed") or last_item(wait[2]).get("state") != "phoned_home":
            failures.append("%s: wait_for_agent did not return phoned_home: %s" % (name, wait and last_item(wait[2]).get("msg")))
    recap = report.get("stats", {})
    outcome_messages = []
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            if task["task"]["name"] == "Fail a machine that was not installed":
                for host, result in task["hosts"].items():
                    outcome_messages.append((host, result.get("msg", "")))
    unexpected = [(host, msg) for host, msg in outcome_messages if INSTALL_FAILURE not in msg]
    failures += ["%s failed elsewhere than the install step: %s" % item for item in unexpected]

    first_wake_task = min((start for start, dummy, dummy2 in wakes.values()), default=None)
    last_wait_end = max((end for dummy, end, dummy2 in waits.values() if end), default=None)
    first_magic = min(woken.values(), default=None)
    last_phone = max(phoned.values(), default=None)
    per_host_wait = [end - wakes[name][1] for name, (dummy, end, dummy2) in waits.items() if end and name in wakes and wakes[name][1]]
    lag = []  # phone-home answered -> that host's wait_for_agent task ended
    for name, (dummy, end, dummy2) in waits.items():
        mac = hosts.get(name, {}).get("mac_address")
        if end and mac in phoned:
            lag.append(end - phoned[mac])

    def span(start, end):
        return round(end - start, 2) if start is not None and end is not None else None

    figures = {
        "wake_to_all_phoned_home": span(first_magic, last_phone),
        "wake_to_all_wait_for_agent": span(first_wake_task, last_wait_end),
        "wake_tasks_spread": span(first_wake_task, max((start for start, dummy, dummy2 in wakes.values()), default=None)),
        "magic_packets_spread": span(first_magic, max(woken.values(), default=None)),
        "phone_home_to_wait_for_agent_return": {
            "median": round(statistics.median(lag), 2) if lag else None, "max": round(max(lag), 2) if lag else None},
        "wait_for_agent_task_after_wake_task": {
            "median": round(statistics.median(per_host_wait), 2) if per_host_wait else None,
            "max": round(max(per_host_wait), 2) if per_host_wait else None},
        "playbook_wall": round(wall, 2),
        "playbook_exit": returncode,
    }
    ok = not failures and figures["wake_to_all_wait_for_agent"] is not None \
        and figures["wake_to_all_wait_for_agent"] <= args.bar
    return {
        "bench": "provision",
        "hosts": len(names),
        "forks": args.forks,
        "forks_source": "-f %d on the ansible-playbook command line (also forks = %d in the run's ansible.cfg)" % (args.forks, args.forks),
        "delay": list(args.delay),
        "seed": args.seed,
        "bar_seconds": args.bar,
        "figures": figures,
        "pass": ok,
        "failures": failures,
        "recap": recap,
        "install_step": "stand-in nixos-anywhere that exits 1 at once (the bench stops at wait_for_agent)",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpus": os.cpu_count(),
    }


def main():
    parser = argparse.ArgumentParser(description="nixie.metal.provision overhead for N simulated machines")
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="10 machines")
    parser.add_argument("--forks", type=int, default=50, help="ansible forks (default %(default)s; ansible's own default is 5)")
    parser.add_argument("--delay", type=float, nargs=2, default=(0.5, 2.0), metavar=("MIN", "MAX"),
                        help="simulated boot time between wake and script fetch, seconds (default 0.5 2.0)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--agent-timeout", type=int, default=300)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds the whole playbook may take")
    parser.add_argument("--bar", type=float, default=BAR_SECONDS)
    parser.add_argument("--keep", metavar="DIR", help="keep the simulator log and the playbook's JSON report here")
    parser.add_argument("--json", default=os.path.join(_common.RESULTS, "provision.json"), help="result file (default %(default)s)")
    args = parser.parse_args()
    if args.quick:
        args.hosts = 10
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    sys.path.insert(0, LAB_DIR)
    hosts, report, sim_events, wall, returncode, stderr = measure(args)
    result = analyse(args, hosts, report, sim_events, wall, returncode)
    if result["failures"] and stderr.strip():
        result["stderr_tail"] = stderr[-2000:]
    _common.save_json(args.json, result)
    figures = result["figures"]
    print("provision: %d machines, forks %d: wake -> all phoned home %ss, wake -> all wait_for_agent returned %ss "
          "(bar %gs), playbook wall %ss -> %s" % (result["hosts"], args.forks, figures["wake_to_all_phoned_home"],
                                                  figures["wake_to_all_wait_for_agent"], args.bar, figures["playbook_wall"],
                                                  "PASS" if result["pass"] else "FAIL"))
    for failure in result["failures"][:20]:
        print("  " + failure)
    print("result: %s" % os.path.relpath(args.json, _common.REPO))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
