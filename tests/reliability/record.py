# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a reliability test measured, written where report.py finds it to regenerate docs/reliability.md.

A test calls :func:`record` once its assertions have passed, so a record is the last passing
measurement of its case. Records go to ``$NIXIE_RELIABILITY_RESULTS`` if set, else to
``tests/reliability/results`` of the collection the test runs from (a staged copy under
scripts/test, so only runs that point here, like report.py --run, change the committed figures).
"""

from __future__ import annotations

import json
import os
import pathlib
import time

HERE = pathlib.Path(__file__).resolve().parent


def results_dir():
    return pathlib.Path(os.environ.get("NIXIE_RELIABILITY_RESULTS") or HERE / "results")


def record(case, test, summary, **figures):
    """Write the result of ``case`` (an id of report.CASES): the proving ``test``, a one-line ``summary``, figures."""
    directory = results_dir()
    directory.mkdir(parents=True, exist_ok=True)
    document = {"case": case, "test": test, "summary": summary, "figures": figures,
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = directory / ("%s.json" % case)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path
