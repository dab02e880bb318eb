# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Regenerate the table of docs/reliability.md from what the tests last measured.

    sudo .venv/bin/python tests/reliability/report.py            # the table from tests/reliability/results
    sudo .venv/bin/python tests/reliability/report.py --run      # measure everything first (~25 min, root)
    sudo .venv/bin/python tests/reliability/report.py --run reliability_paths fuzz-ci

Each case of issue 6 is a row: what is proved, the test that proves it, and its last measured
figure. The figures come from the JSON files the tests write when their assertions have passed
(tests/reliability/record.py) and from the fuzz runs (tests/fuzz/run.py); a case nothing has
measured yet says so. --run runs the integration targets' tests directly (not through
ansible-test) with the results going to tests/reliability/results, then the fuzz bench.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = HERE / "results"
DOC = REPO / "docs" / "reliability.md"
BEGIN = "<!-- BEGIN generated table: tests/reliability/report.py rewrites this part; do not edit it by hand -->"
END = "<!-- END generated table -->"
TARGETS = REPO / "tests" / "integration" / "targets"

T_PATHS = "reliability_paths"
T_BOOT = "reliability_boot"
T_PXE = "pxe_server_lifecycle"
T_PROVISION = "provision_lifecycle"
T_TRUST = "netboot_trust"


def _t(target, test):
    return "`%s` %s" % (target, test)


# (case id, area, what is proved, the test that proves it)
CASES = [
    ("fuzz.dhcp67", "Parsers under fuzzing", "proxyDHCP on port 67: decode, classify, policy, registry, encode; a reply only ever to an "
     "unfinished inventory MAC", "`tests/fuzz/run.py dhcp67` (1,000,000 inputs); CI: `reliability_fuzz`"),
    ("fuzz.dhcp4011", "Parsers under fuzzing", "proxyDHCP on port 4011, the same path and invariants",
     "`tests/fuzz/run.py dhcp4011`; CI: `reliability_fuzz`"),
    ("fuzz.tftp", "Parsers under fuzzing", "TFTP request parsing, file-name checks, option negotiation and the transfer state machine: "
     "only registered files, never a write, DATA is the file's bytes, a silent client ends the transfer",
     "`tests/fuzz/run.py tftp`; CI: `reliability_fuzz`"),
    ("fuzz.api", "Parsers under fuzzing", "agent API handlers (phone-home, host, stop): Authorization header, query, MAC in the path, "
     "JSON body, and what the kernel says about the peer (its route, the MAC of its neighbour entry); no 500, only a host's own "
     "token from the host's own MAC changes it, no token in an answer or a log line",
     "`tests/fuzz/run.py api`; CI: `reliability_fuzz`"),
    ("fuzz.api_http", "Parsers under fuzzing", "the API's own HTTP/1.1 request reader (every API connection's first bytes), then the "
     "answer's encoding: never raises, takes only GET/HEAD/POST under /api/ within its head and body limits, the same head "
     "however the bytes are split, no token on the wire", "`tests/fuzz/run.py api_http`; CI: `reliability_fuzz`"),
    ("fuzz.regressions", "Parsers under fuzzing", "every input a fuzz run found stays harmless",
     "`tests/unit/plugins/module_utils/netboot/serve/test_reliability_regressions.py` (inputs in `tests/fuzz/crashes/`)"),
    ("storm.boot", "Hostile traffic while serving", "a storm of malformed and random UDP on 67, 4011, 69 and junk HTTP from another "
     "host while a QEMU machine boots: it phones home, the server's memory stays bounded",
     _t(T_BOOT, "test_power_cycle_then_a_storm_and_nothing_for_strangers")),
    ("storm.half_sent_http", "Hostile traffic while serving", "connections that send half a request (headers or body) and wait are "
     "closed by the server, not held", _t(T_PATHS, "test_half_sent_requests_do_not_hold_connections")),
    ("storm.tftp_abandoned", "Hostile traffic while serving", "a host that opens TFTP transfers by the thousand and abandons them "
     "cannot take the slots of the machines that are booting", _t(T_PATHS, "test_abandoned_transfers_from_one_host_leave_room_for_the_others")),
    ("paths.tftp", "Nothing outside the registered files", "TFTP read requests with ../, absolute paths, %2e%2e, NUL, backslashes, "
     "symlinks out of the directory, overlong names, sent as raw UDP", _t(T_PATHS, "test_tftp_serves_nothing_outside_the_registered_files")),
    ("paths.tftp_write", "Nothing outside the registered files", "TFTP write requests are refused and write nothing",
     _t(T_PATHS, "test_tftp_refuses_writes_and_writes_nothing")),
    ("paths.http", "Nothing outside the registered files", "HTTP raw request lines with the same tricks (and %252e, absolute-form, "
     "header tricks)", _t(T_PATHS, "test_http_serves_nothing_outside_the_registered_files")),
    ("owned.no_offer_to_strangers", "Only the machines we own", "no DHCP answer to a MAC outside the inventory, checked on the wire "
     "with a capture of a whole run under a storm of stranger requests", _t(T_BOOT, "test_power_cycle_then_a_storm_and_nothing_for_strangers")),
    ("owned.phone_home", "Only the machines we own", "a phone-home with no token, a wrong one, another host's, the host's own from "
     "another MAC, or replayed after the host finished changes nothing", _t(T_PATHS, "test_only_a_hosts_own_token_changes_it")),
    ("owned.impostor", "Only the machines we own", "a client with another MAC on the segment gets neither a host's script, kernel "
     "nor phone-home, even holding the host's token (IPv4 and IPv6); a clone of the host's MAC at another address cannot take a "
     "boot the host claimed; the host itself is let in, and the run warns",
     _t(T_TRUST, "test_server_trust.py (the real server, the real kernel, namespaces)")),
    ("owned.tokens_not_shown", "Only the machines we own", "tokens never appear in Ansible's output or results (and never in a log "
     "line: the api fuzz target checks every line it makes)", _t(T_BOOT, "test_power_cycle_then_a_storm_and_nothing_for_strangers")),
    ("faults.loss_reorder", "Faults", "10% packet loss and reordering on the machine's link (netem's job; this kernel has no netem, "
     "so a user-space relay does it): the machine still boots", _t(T_BOOT, "test_ten_percent_loss_and_reordering")),
    ("faults.tftp_vanish", "Faults", "a TFTP client that vanishes mid-transfer gives its socket back",
     _t(T_PATHS, "test_a_vanishing_tftp_client_gives_its_socket_back")),
    ("faults.agent_restart", "Faults", "the agent keeps retrying while the server is killed and started again, and succeeds after",
     _t(T_PATHS, "test_the_agent_retries_while_the_server_restarts_and_succeeds_after")),
    ("faults.power_cycle", "Faults", "a machine powered off mid-boot and on again is served again in the same run",
     _t(T_BOOT, "test_power_cycle_then_a_storm_and_nothing_for_strangers")),
    ("lifecycle.success", "Lifecycle", "after a run where every machine phoned home: no process, no port, the next run starts cleanly",
     _t(T_BOOT, "test_power_cycle_then_a_storm_and_nothing_for_strangers")),
    ("lifecycle.stop_clean", "Lifecycle", "after state=stopped: no process, no port, no state file; the next run starts cleanly",
     _t(T_PATHS, "test_after_the_run_nothing_is_left_and_tokens_were_never_shown")),
    ("lifecycle.one_fails", "Lifecycle", "a run where one host fails: the other goes on, the server stops, nothing is left",
     _t(T_PROVISION, "test_a_silent_machine_fails_alone_and_the_other_goes_on")),
    ("lifecycle.all_fail", "Lifecycle", "a run where every host fails: the server stops, nothing is left",
     _t(T_PROVISION, "test_every_machine_fails_with_the_diagnosis_and_the_server_stops")),
    ("lifecycle.ctrl_c", "Lifecycle", "a run interrupted with Ctrl-C: no server, no port left", _t(T_PROVISION, "test_an_interrupted_run_leaves_no_server")),
    ("lifecycle.sigkill", "Lifecycle", "the async timeout's SIGKILL: ports released by the kernel, the next run recovers the stale state",
     _t(T_PXE, "test_sigkill_leaves_a_stale_state_that_the_next_run_recovers_from")),
    ("lifecycle.second_run_refused", "Lifecycle", "a second run while one is serving is refused with a clear message and binds nothing",
     _t(T_PXE, "test_state_stopped_ends_a_running_server_and_a_second_run_is_refused")),
    ("privileges.dropped", "Privileges", "started as root only to bind: the process that parses the network is a child that, once "
     "bound, runs as nobody (no group, no capability at all: effective, permitted, bounding, ambient; no_new_privs); the root "
     "parent keeps the state file and never touches the network",
     _t(T_PATHS, "test_the_server_runs_as_nobody_with_no_privilege_once_bound")),
]


def load_results(directory=RESULTS):
    results = {}
    for path in sorted(pathlib.Path(directory).glob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if path.name.startswith("fuzz-"):
            results[path.stem] = document
        elif isinstance(document, dict) and "case" in document:
            results[document["case"]] = document
    return results


def _fuzz_figure(results, target):
    parts = []
    for run, label in (("fuzz-bench", "bench"), ("fuzz-ci", "CI")):
        document = results.get(run)
        if not document:
            continue
        for figures in document.get("targets", []):
            if figures.get("target") != target:
                continue
            findings = "1 finding" if figures.get("finding") else "0 findings"
            parts.append("%s: %s inputs in %ss, %s, %s coverage edges, peak %s MB (%s)" % (
                label, "{:,}".format(figures.get("inputs") or 0), figures.get("seconds"), findings,
                figures.get("coverage_edges"), figures.get("peak_rss_mb"), document.get("when", "")[:10]))
    return "; ".join(parts)


def figure(case, results, crashes_dir=REPO / "tests" / "fuzz" / "crashes"):
    """The last measured figure of a case, as one line of text."""
    if case.startswith("fuzz.") and case != "fuzz.regressions":
        return _fuzz_figure(results, case.split(".", 1)[1]) or "not measured yet"
    if case == "fuzz.regressions":
        kept = [p for p in sorted(pathlib.Path(crashes_dir).glob("*/*")) if p.suffix not in (".txt", ".md")]
        return "%d kept input(s): %s" % (len(kept), ", ".join("%s/%s" % (p.parent.name, p.name) for p in kept)) if kept else "none kept"
    document = results.get(case)
    if not document:
        return "not measured yet"
    return "%s (%s)" % (document["summary"], document.get("when", "")[:10])


def _cell(text):
    """A figure as a table cell: pipes escaped, URLs as code (a bare URL is a Markdown lint error)."""
    return re.sub(r"(https?://[^\s,;)\"]+)", r"`\1`", text.replace("|", "\\|"))


def render_table(results):
    lines = ["| area | case | proved by | last measured |", "| --- | --- | --- | --- |"]
    for case, area, what, test in CASES:
        lines.append("| %s | %s | %s | %s |" % (area, what.replace("|", "\\|"), test, _cell(figure(case, results))))
    return "\n".join(lines)


def rewrite(document, table):
    """``document`` with the text between the markers replaced by ``table``."""
    if BEGIN not in document or END not in document:
        raise ValueError("%s lacks the markers of the generated table" % DOC)
    head, rest = document.split(BEGIN, 1)
    dummy, tail = rest.split(END, 1)
    return "%s%s\n%s\n%s%s" % (head, BEGIN, table, END, tail)


def run_measurements(which):
    """Run the tests that measure, with their results going to tests/reliability/results."""
    sys.path.insert(0, str(REPO / "tests" / "fuzz"))
    from run import collection_pythonpath  # pylint: disable=import-outside-toplevel,import-error
    env = dict(os.environ, NIXIE_RELIABILITY_RESULTS=str(RESULTS), ANSIBLE_COLLECTIONS_PATH=collection_pythonpath(),
               PATH="%s:%s" % (pathlib.Path(sys.executable).parent, os.environ.get("PATH", "")))
    failed = []
    for name in which:
        print("=== %s" % name, flush=True)
        if name == "fuzz-bench":
            command = [sys.executable, str(REPO / "tests" / "fuzz" / "run.py"), "--results", str(RESULTS / "fuzz-bench.json")]
        elif name == "fuzz-ci":
            command = [str(TARGETS / "reliability_fuzz" / "runme.sh")]
        else:
            command = [str(TARGETS / name / "runme.sh")]
        if subprocess.run(command, env=env, cwd=str(REPO), check=False).returncode != 0:
            failed.append(name)
    return failed


MEASUREMENTS = (T_PATHS, T_BOOT, T_PXE, T_PROVISION, T_TRUST, "fuzz-ci", "fuzz-bench")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--run", nargs="*", metavar="what", help="measure first: some of %s (default: all)" % ", ".join(MEASUREMENTS))
    parser.add_argument("--check", action="store_true", help="only say whether docs/reliability.md is up to date (exit 1 if not)")
    args = parser.parse_args(argv)
    failed = []
    if args.run is not None:
        unknown = sorted(set(args.run) - set(MEASUREMENTS))
        if unknown:
            parser.error("cannot measure %s; choose from %s" % (", ".join(unknown), ", ".join(MEASUREMENTS)))
        failed = run_measurements(args.run or MEASUREMENTS)
    current = DOC.read_text(encoding="utf-8")
    updated = rewrite(current, render_table(load_results()))
    if args.check:
        if updated != current:
            print("%s is not up to date with %s; run %s" % (DOC, RESULTS, pathlib.Path(__file__).relative_to(REPO)))
            return 1
        return 0
    if updated != current:
        DOC.write_text(updated, encoding="utf-8")
        print("rewrote the table of %s" % DOC.relative_to(REPO))
    if failed:
        print("these measurements failed (their old figures stay): %s" % ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
