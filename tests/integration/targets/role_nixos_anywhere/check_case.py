# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks one case's outcome: check_case.py OUTCOME_JSON ok|failed [SUBSTRING...] [--argv JSON] [--standin-runs N]."""
from __future__ import annotations

import json
import os
import sys


def main() -> None:
    args = sys.argv[1:]
    argv = None
    runs = None
    standin_log = os.environ.get("NIXOS_ANYWHERE_STANDIN_LOG", "")
    if "--argv" in args:
        index = args.index("--argv")
        argv = json.loads(args[index + 1])
        del args[index:index + 2]
    if "--standin-runs" in args:
        index = args.index("--standin-runs")
        runs = int(args[index + 1])
        del args[index:index + 2]
    path, outcome = args[0], args[1]
    with open(path, encoding="utf-8") as handle:
        result = json.load(handle)
    problems = []
    if result["outcome"] != outcome:
        problems.append("outcome %s, expected %s (failure: %s)" % (result["outcome"], outcome, result["failure"]))
    for text in args[2:]:
        if text not in result["failure"]:
            problems.append("the failure does not say %r: %s" % (text, result["failure"]))
    if argv is not None and (result["result"] or {}).get("argv") != argv:
        problems.append("argv %s, expected %s" % (json.dumps((result["result"] or {}).get("argv")), json.dumps(argv)))
    if runs is not None:
        seen = []
        if standin_log and os.path.exists(standin_log):
            with open(standin_log, encoding="utf-8") as handle:
                seen = [json.loads(line) for line in handle if line.strip()]
        if len(seen) != runs:
            problems.append("the stand-in ran %d times, expected %d: %s" % (len(seen), runs, seen))
        elif argv is not None and runs and seen[-1]["argv"] != argv[1:]:
            problems.append("the stand-in received %s" % json.dumps(seen[-1]["argv"]))
    if problems:
        sys.stderr.write("FAILED %s:\n  %s\n" % (path, "\n  ".join(problems)))
        sys.exit(1)
    sys.stdout.write("ok %s %s\n" % (os.path.basename(path), result["failure"][:300]))


if __name__ == "__main__":
    main()
