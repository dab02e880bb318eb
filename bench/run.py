# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bench runner: run the selected benches, collect their JSON results, regenerate bench/README.md's table.

    python bench/run.py                      # every bench, default parameters
    python bench/run.py --quick              # every bench, short parameters (CI)
    python bench/run.py http tftp            # only these
    python bench/run.py --readme-only        # rebuild the table from the last results

Each bench writes its own JSON result under bench/results/; this runner
records, per bench, the exact command it ran, when, and its exit code in
bench/results/runs.json, then rebuilds the table between the markers
``<!-- results:start -->`` and ``<!-- results:end -->`` of bench/README.md
from those files. A bench with no result on this machine keeps the rows the
README already has (results are not in git, so a checkout that ran two
benches does not drop the others' rows). Every figure in the table comes
from the same run as its anchor (each bench measures both, interleaved);
each row names the commit it measured. Exit status: 0 when every bench that
ran passed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

REPO = _common.REPO
RESULTS = _common.RESULTS
README = os.path.join(REPO, "bench", "README.md")
RUNS = os.path.join(RESULTS, "runs.json")
START, END = "<!-- results:start -->", "<!-- results:end -->"

# name -> script, extra arguments for the default and the --quick run, where the result lands.
BENCHES = {
    "inventory": {
        "script": "bench/inventory.py",
        "default": [],
        "quick": ["--hosts", "1000", "--rounds", "3", "--commands", "1"],
        "json_arg": "bench/results/inventory.json",
    },
    "tftp": {
        "script": "bench/tftp.py",
        "default": [],
        "quick": ["--reps", "5", "--rounds", "1"],
        "glob": "bench/results/tftp-*.json",
    },
    "http": {
        "script": "bench/http_throughput.py",
        "default": [],
        "quick": ["--quick"],
        "json_arg": "bench/results/http.json",
    },
    "e2e": {
        "script": "bench/e2e.py",
        "default": ["--rounds", "5"],
        "quick": ["--quick"],
        "json_arg": "bench/results/e2e.json",
    },
    "ipv6": {
        "script": "bench/ipv6.py",
        "default": [],
        "quick": ["--quick"],
        "json_arg": "bench/results/ipv6.json",
    },
    "provision": {
        "script": "bench/provision.py",
        "default": [],
        "quick": ["--quick"],
        "json_arg": "bench/results/provision.json",
    },
    "dhcp_burst": {
        "script": "bench/dhcp_burst.py",
        "default": [],
        "quick": ["--quick"],
        "json_arg": "bench/results/dhcp_burst.json",
    },
    "dhcp_addresses": {
        "script": "bench/dhcp_addresses.py",
        "default": [],
        "quick": ["--quick"],
        "json_arg": "bench/results/dhcp_addresses.json",
    },
    "machines": {
        "script": "bench/machines.py",
        "default": ["--peer-check", "both"],
        "quick": ["--quick"],
        "json_arg": "bench/results/machines.json",
    },
    "machines_full": {
        "script": "bench/machines.py",
        "default": ["--full"],
        "quick": ["--quick"],
        "json_arg": "bench/results/machines_full.json",
    },
    "agent_api": {
        "script": "bench/agent_api.py",
        "default": ["--peer-check", "both"],
        "quick": ["--quick"],
        "json_arg": "bench/results/agent_api.json",
    },
}


def display_python():
    exe = sys.executable
    return os.path.relpath(exe, REPO) if exe.startswith(REPO + os.sep) else exe


def commit():
    """The checkout's commit (short), with ``+changes`` when tracked files differ from it; None outside git."""
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


def run_bench(name, quick):
    spec = BENCHES[name]
    args = list(spec["quick"] if quick else spec["default"])
    if "json_arg" in spec:
        args += ["--json", spec["json_arg"]]
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # ansible-inventory of this venv
    shown_env = []
    if name == "inventory":
        env["ANSIBLE_COLLECTIONS_PATH"] = _common.collection_pythonpath()
        shown_env = ["ANSIBLE_COLLECTIONS_PATH=" + os.path.relpath(env["ANSIBLE_COLLECTIONS_PATH"], REPO)]
    command = " ".join(shown_env + [display_python(), spec["script"]] + [shlex.quote(a) for a in args])
    before = set(glob.glob(os.path.join(REPO, spec["glob"]))) if "glob" in spec else set()
    print("== %s: %s" % (name, command), flush=True)
    date = time.strftime("%Y-%m-%d %H:%M %Z")
    measured = commit()  # before the run: what the bench ran, whatever is edited while it runs
    started = time.monotonic()
    code = subprocess.call([sys.executable, os.path.join(REPO, spec["script"])] + args, cwd=REPO, env=env)
    seconds = time.monotonic() - started
    if "json_arg" in spec:
        result = os.path.join(REPO, spec["json_arg"])
        if not os.path.exists(result) or os.path.getmtime(result) < time.time() - seconds - 1:
            result = None  # a stale file from an earlier run is not this run's figure
    else:
        new = sorted(set(glob.glob(os.path.join(REPO, spec["glob"]))) - before, key=os.path.getmtime)
        result = new[-1] if new else None
    print("== %s: exit %d after %.0f s, result %s" % (name, code, seconds, result and os.path.relpath(result, REPO)), flush=True)
    return {"command": command, "date": date, "exit_code": code, "seconds": round(seconds, 1), "quick": quick,
            "result": os.path.relpath(result, REPO) if result else None, "commit": measured}


# ------------------------------------------------------------------ table rows


def _median(values):
    return statistics.median(values) if values else float("nan")


def rows_inventory(data):
    hosts = data["hosts"]
    parse = {k: _median(v) for k, v in data["parse_seconds"].items()}
    whole = {k: _median(v) for k, v in data["command_seconds"].items()}
    rounds = len(data["parse_seconds"]["nixie.metal.hosts"])
    runs = len(data["command_seconds"]["nixie.metal.hosts"])
    limit = data.get("bar", 1.5)
    return [
        {"figure": "parse %d hosts, s (median of %d rounds; lower is better)" % (hosts, rounds),
         "anchor": "ansible.builtin.yaml", "anchor_value": "%.3f s" % parse["ansible.builtin.yaml"],
         "ours": "%.3f s" % parse["nixie.metal.hosts"], "ratio": data["parse_ratio"], "bar": "<= %.1f" % limit,
         "pass": data["parse_ratio"] <= limit},
        {"figure": "`ansible-inventory --list`, %d hosts, s (median of %d runs)" % (hosts, runs),
         "anchor": "ansible.builtin.yaml", "anchor_value": "%.3f s" % whole["ansible.builtin.yaml"],
         "ours": "%.3f s" % whole["nixie.metal.hosts"], "ratio": data["command_ratio"], "bar": "none",
         "pass": None},
    ]


def rows_tftp(data):
    args = data["args"]
    clean = not any(data["failures"].values())
    ratios = data["ratios_ours_over_dnsmasq"]
    bars = data["bars"]
    kib = data["size"] / 1024
    return [
        {"figure": "1 client, %.0f KiB, blksize %d windowsize %d, MB/s (median of %d)"
                   % (kib, args["blksize"], args["windowsize"], args["reps"]),
         "anchor": "dnsmasq (windowsize %d)" % data["window"]["dnsmasq"]["windowsize"],
         "anchor_value": "%.1f MB/s" % data["window"]["dnsmasq"]["median"],
         "ours": "%.1f MB/s" % data["window"]["ours"]["median"], "ratio": ratios["window"],
         "bar": ">= %.1f" % bars["window"], "pass": clean and ratios["window"] >= bars["window"]},
        {"figure": "%d clients at once, %.0f KiB, blksize %d, aggregate MB/s (median of %d)"
                   % (args["clients"], kib, args["plain_blksize"], args["rounds"]),
         "anchor": "dnsmasq", "anchor_value": "%.1f MB/s" % data["concurrent"]["dnsmasq"]["median"],
         "ours": "%.1f MB/s" % data["concurrent"]["ours"]["median"], "ratio": ratios["concurrent"],
         "bar": ">= %.1f" % bars["concurrent"], "pass": clean and ratios["concurrent"] >= bars["concurrent"]},
    ]


def rows_http(data):
    clean = not any(data["failures"].values())
    return [
        {"figure": "%d MiB x %d clients (curl), aggregate MB/s (median of %d rounds)"
                   % (data["size"] >> 20, data["clients"], data["rounds"]),
         "anchor": "nginx %s (sendfile, %d workers)" % (data["versions"]["nginx"], data.get("cpus") or 0),
         "anchor_value": "%.0f MB/s" % data["servers"]["nginx"]["median"],
         "ours": "%.0f MB/s" % data["servers"]["ours"]["median"], "ratio": data["ratio_ours_over_nginx"],
         "bar": ">= %.1f" % data["bar"], "pass": clean and data["ratio_ours_over_nginx"] >= data["bar"]},
    ]


def rows_e2e(data):
    rows = []
    for kind, ratio in sorted(data["ratios_ours_over_dnsmasq"].items()):
        result = data["results"][kind]
        limit = data["bars"].get(kind)
        clean = not data["failures"]["ours"] and not data["failures"]["dnsmasq"]
        rows.append({
            "figure": "QEMU %s, start to phone-home, s (median of %d boots)" % (kind, len(result["ours"]["all"])),
            "anchor": "dnsmasq proxy + TFTP", "anchor_value": "%.2f s" % result["dnsmasq"]["median"],
            "ours": "%.2f s" % result["ours"]["median"], "ratio": ratio,
            "bar": "<= %.2f" % limit if limit else "none", "pass": (clean and ratio <= limit) if limit else None})
    return rows


def rows_ipv6(data):
    results = data["results"]
    clean = not data["failures"]
    rows = []
    for anchor, what in (("ipv4-only", "IPv4 single-stack"), ("ipv4", "IPv4, lab's dual-stack segment")):
        ratio = data["ratios"]["ipv6/" + anchor]
        barred = data["bar"]["ratio"] == "ipv6/" + anchor
        rows.append({
            "figure": "QEMU OVMF PXE over IPv6 single-stack, start to phone-home, s (median of %d boots)" % len(results["ipv6"]["all"]),
            "anchor": "same server and firmware, %s" % what, "anchor_value": "%.2f s" % results[anchor]["median"],
            "ours": "%.2f s" % results["ipv6"]["median"], "ratio": ratio,
            "bar": "<= %.1f" % data["bar"]["max"] if barred else "none",
            "pass": (clean and ratio is not None and ratio <= data["bar"]["max"]) if barred else None})
    return rows


def rows_provision(data):
    figures = data["figures"]
    reached = figures["wake_to_all_wait_for_agent"]
    machines = figures["wake_to_all_phoned_home"]
    limit = data["bar_seconds"]

    def seconds(value):
        return "n/a" if value is None else "%.2f s" % value
    return [
        {"figure": "nixie.metal.provision, %d simulated machines (boot %g-%g s), forks %d: wake -> every wait_for_agent returned, s"
                   % (data["hosts"], data["delay"][0], data["delay"][1], data["forks"]),
         "anchor": "the machines themselves (wake -> last phone-home answered)",
         "anchor_value": seconds(machines),
         "ours": "%s (playbook wall %.0f s)" % (seconds(reached), figures["playbook_wall"]),
         "ratio": reached / machines if reached and machines else float("nan"),
         "bar": "<= %g s" % limit, "pass": bool(data["pass"])},
    ]


def _ratio(ours, anchor):
    return ours / anchor if ours is not None and anchor else float("nan")


def rows_dhcp_burst(data):
    args, figures, bars = data["args"], data["figures"], data["bars"]
    ours, anchor = figures["ours"], figures["dnsmasq"]
    rows = []
    for phase, what in (("paced_discover", "DISCOVER"), ("paced_4011", "REQUEST to 4011")):
        rows.append({
            "figure": "%d PXE clients (arch 7), %s paced at %d/s: answered, slowest request -> answer, ms (median of %d rounds)"
                      % (args["clients"], what, args["rate"], args["rounds"]),
            "anchor": data["anchor"],
            "anchor_value": "%s answered, max %s ms" % (anchor[phase]["answered"], anchor[phase]["delay_max_ms"]),
            "ours": "%s answered, max %s ms" % (ours[phase]["answered"], ours[phase]["delay_max_ms"]),
            "ratio": _ratio(ours[phase]["delay_max_ms"], anchor[phase]["delay_max_ms"]),
            "bar": "all answered, max <= 10 ms", "pass": bars[phase]["pass"]})
    for phase, what in (("burst_discover", "DISCOVER"), ("burst_4011", "REQUEST to 4011")):
        rows.append({
            "figure": "%d PXE clients, %s all at once: answered by the first retry (%g s; first try) (median of %d rounds)"
                      % (args["clients"], what, args["retry_after"], args["rounds"]),
            "anchor": data["anchor"],
            "anchor_value": "%s (%s)" % (anchor[phase]["answered"], anchor[phase]["answered_first_try"]),
            "ours": "%s (%s)" % (ours[phase]["answered"], ours[phase]["answered_first_try"]),
            "ratio": _ratio(ours[phase]["answered"], anchor[phase]["answered"]),
            "bar": "all %d, >= anchor" % args["clients"], "pass": bars[phase]["pass"]})
    return rows


def rows_dhcp_addresses(data):
    args, figures, bars = data["args"], data["figures"], data["bars"]
    ours, anchor = figures["ours"], figures["dnsmasq"]
    return [{
        "figure": "%d machines, dhcp=addresses, %s paced at %d/s: leased their own address, slowest request -> answer, ms "
                  "(median of %d rounds)" % (args["clients"], what, args["rate"], args["rounds"]),
        "anchor": data["anchor"],
        "anchor_value": "%s answered, max %s ms" % (anchor[phase]["answered"], anchor[phase]["delay_max_ms"]),
        "ours": "%s answered, max %s ms" % (ours[phase]["answered"], ours[phase]["delay_max_ms"]),
        "ratio": _ratio(ours[phase]["delay_max_ms"], anchor[phase]["delay_max_ms"]),
        "bar": "all leased, max <= 10 ms", "pass": bars[phase]["pass"]}
        for phase, what in (("discover", "DISCOVER -> OFFER"), ("request", "REQUEST -> ACK"))]


def rows_machines(data):
    args, figures = data["args"], data["figures"]
    ours, anchor = figures.get("ours"), figures.get("anchor")
    small = data["bars"].get("completion_bar_applies", not args.get("full"))
    return [{
        "figure": "%d simulated machines (DHCP, 4011, TFTP ipxe.efi, iPXE DHCP, script, kernel %g MiB, initrd %g MiB, phone-home; "
                  "power-on spread %g s): first power-on -> last phone-home, s (median of %d rounds)"
                  % (args["machines"], args["kernel_mib"], args["initrd_mib"], args["spread"], args["rounds"]),
        "anchor": data["anchor"],
        "anchor_value": "%s s" % anchor["completion_s"] if anchor else "not run",
        "ours": "%s s (slowest machine %s s, %s failed, server CPU %s s, peak RSS %s MiB)" % (
            ours["completion_s"], ours["slowest_machine_s"], ours["failed"], ours["server_cpu_s"], ours["server_peak_rss_mib"]),
        "ratio": data.get("ratio_completion_ours_over_anchor") or float("nan"),
        "bar": "< 30 s, 0 failed, < 300 MiB" if small else "0 failed, < 300 MiB (no time bar)",
        "pass": data["pass"]}] + rows_peer_check(data, "completion_s", "first power-on -> last phone-home, s", "s",
                                                 "slowest machine %s s / %s s" % _on_off(data, "slowest_machine_s"))


def _on_off(data, key):
    cost = data["peer_check_cost"][key] if data.get("peer_check_cost") else {}
    return cost.get("on"), cost.get("off")


def rows_peer_check(data, key, what, unit, more):
    """The trust check's cost, when the bench ran ours with the check on and off (--peer-check both): one row."""
    cost = data.get("peer_check_cost")
    if not cost:
        return []
    on, off = cost[key]["on"], cost[key]["off"]
    cpu_on, cpu_off = _on_off(data, "server_cpu_s")
    return [{
        "figure": "trust check's cost (peer_check on vs off, same run, %d interleaved pairs): %s" % (cost["pairs"], what),
        "anchor": "same server, peer_check off",
        "anchor_value": "%s %s" % (off, unit),
        "ours": "%s %s (%s; server CPU %s s / %s s)" % (on, unit, more, cpu_on, cpu_off),
        "ratio": cost[key]["ratio"] or float("nan"),
        "bar": "none", "pass": None}]


def rows_agent_api(data):
    args, figures = data["args"], data["figures"]
    ours, anchor = figures["ours"], figures.get("nginx")
    return [{
        "figure": "%d concurrent phone-homes (new connections) while %d long-polls wait: phone-home p99, ms (median of %d rounds)"
                  % (args["hosts"], args["hosts"], args["rounds"]),
        "anchor": data["anchor"],
        "anchor_value": "%s ms" % anchor["phone_home_p99_ms"] if anchor else "not run",
        "ours": "%s ms (%s/%d ok; long-poll answered p99 %s ms after its phone-home)" % (
            ours["phone_home_p99_ms"], ours["phone_homes_ok"], args["hosts"], ours["long_poll_delivery_p99_ms"]),
        "ratio": data.get("ratio_p99_ours_over_nginx") or float("nan"),
        "bar": "all ok, p99 < 200 ms", "pass": data["pass"]}] + rows_peer_check(
            data, "phone_home_p99_ms", "phone-home p99, ms", "ms", "p50 %s ms / %s ms" % _on_off(data, "phone_home_p50_ms"))


ROWS = {"inventory": rows_inventory, "tftp": rows_tftp, "http": rows_http, "e2e": rows_e2e, "ipv6": rows_ipv6, "provision": rows_provision,
        "dhcp_burst": rows_dhcp_burst, "dhcp_addresses": rows_dhcp_addresses, "machines": rows_machines, "machines_full": rows_machines,
        "agent_api": rows_agent_api}


def kept_rows(text):
    """bench name -> its rows (lines) in the README's current table."""
    rows = {}
    if START not in text or END not in text:
        return rows
    for line in text.split(START, 1)[1].split(END, 1)[0].splitlines():
        cells = line.split("|")
        if len(cells) > 2 and line.startswith("| ") and cells[1].strip() in BENCHES:
            rows.setdefault(cells[1].strip(), []).append(line)
    return rows


def table(runs, kept=None):
    kept = kept or {}
    lines = [
        "| Bench | Figure | Anchor | Anchor figure | Ours | Ratio ours/anchor | Bar | Result | Date (commit) | Command |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in BENCHES:
        run = runs.get(name)
        path = run and run.get("result") and os.path.join(REPO, run["result"])
        if (run is None or not path or not os.path.exists(path)) and name in kept:
            lines.extend(kept[name])  # measured elsewhere; this machine has no result of its own
            continue
        if run is None:
            continue
        command = "`%s`" % run["command"].replace("|", "\\|")
        date = "%s (%s)" % (run["date"], run["commit"]) if run.get("commit") else run["date"]
        if not path or not os.path.exists(path):
            lines.append("| %s | (no result: the bench exited %s) | | | | | | FAIL | %s | %s |"
                         % (name, run["exit_code"], date, command))
            continue
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        for row in ROWS[name](data):
            verdict = "info" if row["pass"] is None else ("PASS" if row["pass"] else "FAIL")
            lines.append("| %s | %s | %s | %s | %s | %.2f | %s | %s | %s | %s |" % (
                name, row["figure"], row["anchor"], row["anchor_value"], row["ours"], row["ratio"], row["bar"],
                verdict, date, command))
    return "\n".join(lines)


def regenerate_readme(runs):
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    block = "\n".join([
        START,
        "<!-- generated by bench/run.py from bench/results/*.json; do not edit by hand -->",
        "",
        table(runs, kept_rows(text)),
        "",
        END,
    ])
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n## Results\n\n" + block + "\n"
    with open(README, "w", encoding="utf-8") as handle:
        handle.write(text)


def load_runs():
    if os.path.exists(RUNS):
        with open(RUNS, encoding="utf-8") as handle:
            return json.load(handle)
    return {}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benches", nargs="*", metavar="BENCH",
                        help="benches to run: %s (default: all)" % ", ".join(BENCHES))
    parser.add_argument("--quick", action="store_true", help="short parameters (CI)")
    parser.add_argument("--readme-only", action="store_true", help="run nothing; rebuild the table from the last results")
    args = parser.parse_args()
    unknown = [name for name in args.benches if name not in BENCHES]
    if unknown:
        parser.error("unknown bench %s; choose from %s" % (", ".join(unknown), ", ".join(BENCHES)))
    runs = load_runs()
    codes = []
    if not args.readme_only:
        for name in args.benches or list(BENCHES):
            runs[name] = run_bench(name, args.quick)
            codes.append(runs[name]["exit_code"])
            os.makedirs(RESULTS, exist_ok=True)
            with open(RUNS, "w", encoding="utf-8") as handle:
                json.dump(runs, handle, indent=2, sort_keys=True)
                handle.write("\n")
    regenerate_readme(runs)
    print("bench/README.md: results table regenerated from %s" % os.path.relpath(RUNS, REPO))
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
