# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fuzz the server's parsers with atheris (coverage-guided libFuzzer), from seeds of real captured packets.

    python tests/fuzz/run.py                      # every target, 1,000,000 inputs each (the bench run)
    python tests/fuzz/run.py --seconds 8 tftp     # a time budget instead (CI runs this way)
    python tests/fuzz/run.py --results out.json   # also write the figures for docs/reliability.md

Targets (see targets.py): dhcp67, dhcp4011, tftp, api, api_http. Each runs in its own process, one after the
other. A target is clean when libFuzzer ran its inputs with no exception escaping, no broken
invariant, no input slower than --hang seconds and no memory over --rss-mb. A finding is kept under
tests/fuzz/crashes/<target>/ with the command that replays it; the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]

TARGETS = ("dhcp67", "dhcp4011", "tftp", "api", "api_http")
# Longest input worth trying: the DHCP socket drops datagrams over 4096 bytes, TFTP requests over
# 2048, and the API body limit is 64 KiB (8 KiB reaches every branch, deep JSON nesting included).
MAX_LEN = {"dhcp67": 4200, "dhcp4011": 4200, "tftp": 4096, "api": 8192, "api_http": 9000}
CRASHES = HERE / "crashes"
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.MULTILINE)
_PROGRESS = re.compile(r"cov: (\d+) ft: (\d+) corp: (\d+)/")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


def collection_pythonpath():
    """A directory holding ansible_collections/nixie/metal for this checkout (a link farm when the checkout is not inside one)."""
    if REPO.parent.name == "nixie" and REPO.parent.parent.name == "ansible_collections":
        return str(REPO.parents[2])
    root = REPO / "collections"
    link = root / "ansible_collections" / "nixie" / "metal"
    if not (link.exists() and link.resolve() == REPO.resolve()):
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to("../../..")
    return str(root)


sys.path[:0] = [collection_pythonpath(), str(HERE)]

from seeds import write_seeds  # noqa: E402  pylint: disable=wrong-import-position,import-error


def parse_output(text):
    """Figures from libFuzzer's output: executed inputs, speed, coverage, corpus, memory, finding."""
    stats = {name: int(value) for name, value in _STAT.findall(text)}
    progress = _PROGRESS.findall(text)
    cov, features, corpus = (int(x) for x in progress[-1]) if progress else (None, None, None)
    finding = None
    if "Uncaught Python exception" in text:
        finding = "exception"
    elif "ERROR: libFuzzer: timeout" in text:
        finding = "hang"
    elif "ERROR: libFuzzer: out-of-memory" in text or "ERROR: libFuzzer: malloc limit" in text:
        finding = "memory"
    elif "ERROR: libFuzzer" in text or "ERROR: AddressSanitizer" in text:
        finding = "crash"
    artifact = _ARTIFACT.search(text)
    return {
        "inputs": stats.get("number_of_executed_units"),
        "execs_per_second": stats.get("average_exec_per_sec"),
        "new_units": stats.get("new_units_added"),
        "slowest_input_seconds": stats.get("slowest_unit_time_sec"),
        "peak_rss_mb": stats.get("peak_rss_mb"),
        "coverage_edges": cov,
        "features": features,
        "corpus": corpus,
        "finding": finding,
        "artifact": artifact.group(1) if artifact else None,
    }


def fuzz(target, workdir, runs=None, seconds=None, hang=10, rss_mb=2048, seed=None):
    """Run one target in its own atheris process; return its figures."""
    seeds_dir = workdir / target / "seeds"
    corpus_dir = workdir / target / "corpus"
    artifacts = workdir / target / "findings"
    count = write_seeds(target, seeds_dir)
    corpus_dir.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    flags = ["-timeout=%d" % hang, "-rss_limit_mb=%d" % rss_mb, "-print_final_stats=1", "-max_len=%d" % MAX_LEN[target],
             "-artifact_prefix=%s/" % artifacts, "-close_fd_mask=1"]
    if runs is not None:
        flags.append("-runs=%d" % runs)
    if seconds is not None:
        flags.append("-max_total_time=%d" % seconds)
    if seed is not None:
        flags.append("-seed=%d" % seed)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [collection_pythonpath(), str(HERE), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, str(HERE / "fuzz_target.py"), target] + flags + [str(corpus_dir), str(seeds_dir)]
    started = time.monotonic()
    completed = subprocess.run(command, env=env, capture_output=True, text=True, errors="replace", check=False)
    elapsed = time.monotonic() - started
    output = completed.stdout + completed.stderr
    figures = parse_output(output)
    if figures["finding"] is None and completed.returncode != 0:
        figures["finding"] = "exit status %d" % completed.returncode
    figures.update(target=target, seeds=count, seconds=round(elapsed, 1), exit_status=completed.returncode,
                   seed=_int_after(output, "INFO: Seed: "))
    if figures["finding"]:
        figures["tail"] = output[-4000:]
        figures["kept"] = keep_finding(target, figures.get("artifact"), output)
    return figures


def _int_after(text, prefix):
    match = re.search(re.escape(prefix) + r"(\d+)", text)
    return int(match.group(1)) if match else None


def keep_finding(target, artifact, output):
    """Copy a finding out of the work directory, with its output and how to replay it."""
    if not artifact or not os.path.exists(artifact):
        return None
    destination = CRASHES / target
    destination.mkdir(parents=True, exist_ok=True)
    kept = destination / os.path.basename(artifact)
    shutil.copyfile(artifact, kept)
    kept.with_suffix(".txt").write_text(
        "replay: python tests/fuzz/replay.py %s %s\n\n%s" % (target, kept.relative_to(REPO), output[-8000:]), encoding="utf-8")
    return str(kept.relative_to(REPO))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("targets", nargs="*", metavar="target", help="some of %s (default: all)" % ", ".join(TARGETS))
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--runs", type=int, help="inputs per target (default 1000000)")
    budget.add_argument("--seconds", type=int, help="time per target instead of a number of inputs")
    parser.add_argument("--hang", type=int, default=10, help="seconds after which one input counts as a hang")
    parser.add_argument("--rss-mb", type=int, default=2048, help="memory limit of a fuzzing process")
    parser.add_argument("--seed", type=int, help="libFuzzer's random seed (default: random, printed)")
    parser.add_argument("--results", help="write the figures to this JSON file")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the corpus libFuzzer grew")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        parser.error("unknown target %s; the targets are %s" % (", ".join(unknown), ", ".join(TARGETS)))
    runs = args.runs if args.runs is not None or args.seconds is not None else 1_000_000
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="nixie-fuzz-"))
    results = []
    try:
        for target in args.targets or TARGETS:
            figures = fuzz(target, workdir, runs=runs, seconds=args.seconds, hang=args.hang, rss_mb=args.rss_mb, seed=args.seed)
            results.append(figures)
            print("%-9s %s: %s inputs in %ss (%s/s), %s coverage edges, corpus %s, peak %s MB" % (
                target, figures["finding"] or "clean", figures["inputs"], figures["seconds"], figures["execs_per_second"],
                figures["coverage_edges"], figures["corpus"], figures["peak_rss_mb"]), flush=True)
            if figures["finding"]:
                print(figures["tail"], file=sys.stderr)
    finally:
        if args.keep_workdir:
            print("work directory kept: %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.results:
        document = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "runs_asked": runs, "seconds_asked": args.seconds,
                    "python": sys.version.split()[0], "targets": results}
        pathlib.Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.results).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 1 if any(figures["finding"] for figures in results) else 0


if __name__ == "__main__":
    sys.exit(main())
