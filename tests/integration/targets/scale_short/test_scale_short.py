# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rack benches, short, as regression tests with generous thresholds.

Each test runs one bench of bench/ with its --quick sizes (the server started
as the pxe_server module starts it, in private network namespaces, against
simulated clients that speak the real protocols) and reads its JSON result.
The thresholds are loose on time, because CI machines are shared and slow,
and strict on outcomes: every request answered, every machine booted, every
phone-home and long-poll answered. The server runs with its trust check on
(``peer_check``, the default): each simulated machine has its own MAC on the
link (bench/_simnet.py), the server's neighbour table must map every
machine's address to that MAC, and every phone-home must have been checked
against it, with nothing refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

COLLECTION = Path(os.environ.get("NIXIE_COLLECTION", Path(__file__).resolve().parents[4]))
BENCH = COLLECTION / "bench"


def run_bench(script, tmp_path, *args, timeout=240):
    result = tmp_path / (Path(script).stem + ".json")
    proc = subprocess.run([sys.executable, str(BENCH / script), "--quick", "--json", str(result), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)
    sys.stdout.write(proc.stdout)
    assert result.exists(), "%s wrote no result (exit %d):\n%s\n%s" % (script, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    return json.loads(result.read_text(encoding="utf-8"))


def test_dhcp_burst(tmp_path):
    data = run_bench("dhcp_burst.py", tmp_path)
    clients = data["args"]["clients"]
    ours = data["rounds"][0]["ours"]["phases"]
    anchor = data["rounds"][0]["dnsmasq"]["phases"]
    for phase in ("paced_discover", "paced_4011"):
        assert ours[phase]["answered"] == clients, (phase, ours[phase])
        assert ours[phase]["delay_ms"]["max"] < 1000, (phase, ours[phase]["delay_ms"])
    for phase in ("burst_discover", "burst_4011"):
        assert ours[phase]["answered"] == clients, (phase, ours[phase])   # everyone by the first retry
        assert ours[phase]["answered"] >= anchor[phase]["answered"], (phase, ours[phase], anchor[phase])
    assert data["rounds"][0]["ours"]["usage"]["exit_code"] == 0


def test_machines(tmp_path):
    data = run_bench("machines.py", tmp_path, "--servers", "ours")
    ours = data["rounds"][0]["ours"]
    assert ours["failed"] == 0 and ours["done"] == data["args"]["machines"], ours["failures"]
    assert ours["completion_s"] < 90, ours["completion_s"]
    assert ours["server_peak_rss_mib"] < 300, ours["usage"]
    assert ours["server"]["states"] == {"phoned_home": data["args"]["machines"]}, ours["server"]
    assert ours["server"]["stop_reason"] == "every host is done"
    assert_checked(data, ours, data["args"]["machines"])


def test_agent_api(tmp_path):
    data = run_bench("agent_api.py", tmp_path, "--servers", "ours")
    ours = data["rounds"][0]["ours"]
    hosts = data["args"]["hosts"]
    assert ours["phone_homes_ok"] == hosts, ours["phone_home_failures"]
    assert ours["long_polls_answered"] == hosts, ours["long_poll_failures"]
    assert ours["long_polls_early"] == 0          # no long-poll answered before its host's event
    assert ours["phone_home_ms"]["p99"] < 5000, ours["phone_home_ms"]
    assert_checked(data, ours, hosts)


def assert_checked(data, ours, machines):
    """The trust check was on and saw each machine as itself: its own MAC in the neighbour table, its phone-home checked."""
    assert data["args"]["peer_check"] == "on" and ours["peer_check"] is True, data["args"]
    assert ours["neighbours"] == {"machines": machines, "right": machines, "wrong": 0, "wrong_first": [], "missing": 0}, ours["neighbours"]
    assert ours["server"]["bindings"] == {"arp_right": machines}, ours["server"]["bindings"]
    assert not any(ours["server"]["refused_requests"].values()), ours["server"]["refused_requests"]
    assert ours["server"]["counters"]["peer_check_errors"] == 0, ours["server"]["counters"]
    assert ours["problems"] == [], ours["problems"]
