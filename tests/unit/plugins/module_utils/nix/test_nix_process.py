# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_nix.process: running nix in its own process group, stopped on timeout."""

from __future__ import annotations

import os
import time

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._nix import errors as nix_errors, process as nix_process


def test_run_timeout_kills_the_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = "sleep 60 & echo $! > %s; echo started >&2; wait" % pidfile
    started = time.monotonic()
    with pytest.raises(nix_errors.NixTimeout, match="ran out of time after 1 seconds"):
        nix_process.run(["/bin/sh", "-c", script], timeout=1)
    assert time.monotonic() - started < 15
    child = int(pidfile.read_text(encoding="utf-8"))
    for dummy in range(50):
        if not os.path.exists("/proc/%d" % child) or " Z " in open("/proc/%d/stat" % child, encoding="utf-8").read():
            break
        time.sleep(0.1)
    else:
        pytest.fail("the grandchild sleep survived the timeout")


def test_run_missing_executable():
    with pytest.raises(nix_errors.NixNotFound, match="apt-get install nix-bin"):
        nix_process.run(["/nonexistent/nix", "--version"])
