# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/reliability.md's table is what tests/reliability/report.py makes of the recorded results."""

from __future__ import annotations

import json
import pathlib
import re
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "reliability"))

import record  # noqa: E402  pylint: disable=wrong-import-position,import-error
import report  # noqa: E402  pylint: disable=wrong-import-position,import-error


def test_the_committed_table_is_up_to_date():
    document = report.DOC.read_text(encoding="utf-8")
    assert report.rewrite(document, report.render_table(report.load_results())) == document, \
        "docs/reliability.md is stale: run python tests/reliability/report.py"


def test_every_case_names_a_test_that_exists():
    ids = [case for case, dummy, dummy2, dummy3 in report.CASES]
    assert len(ids) == len(set(ids))
    for case, dummy, dummy2, test in report.CASES:
        named = re.match(r"^`(\w+)` (test_\w+)$", test)
        if named:
            source = (report.TARGETS / named.group(1)).glob("test_*.py")
            assert any("def %s(" % named.group(2) in path.read_text(encoding="utf-8") for path in source), (case, test)


def test_every_recorded_case_is_a_row():
    ids = {case for case, dummy, dummy2, dummy3 in report.CASES}
    for case in report.load_results():
        assert case in ids or case.startswith("fuzz-"), "%s is recorded but has no row in report.CASES" % case


def test_record_then_render(tmp_path, monkeypatch):
    monkeypatch.setenv("NIXIE_RELIABILITY_RESULTS", str(tmp_path))
    record.record("paths.tftp", "some::test", "28 refused", requests=28)
    (tmp_path / "fuzz-bench.json").write_text(json.dumps({"when": "2026-11-26T12:00:00", "targets": [
        {"target": "tftp", "inputs": 1000000, "seconds": 60, "finding": None, "coverage_edges": 136, "peak_rss_mb": 100}]}), encoding="utf-8")
    table = report.render_table(report.load_results(tmp_path))
    assert "28 refused (" in table
    assert "bench: 1,000,000 inputs in 60s, 0 findings, 136 coverage edges" in table
    assert table.count("not measured yet") == len(report.CASES) - 3   # paths.tftp, fuzz.tftp and fuzz.regressions have figures


def test_rewrite_needs_the_markers():
    with pytest.raises(ValueError):
        report.rewrite("no markers here", "| table |")
    assert report.rewrite("a\n%s\nold\n%s\nb" % (report.BEGIN, report.END), "new") == "a\n%s\nnew\n%s\nb" % (report.BEGIN, report.END)
