# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The molecule lab's impostor (tests/lab/nixielab/impostor.py, a test stand-in): what it sends and how verify reads it.

Its requests must be ones the server would accept from the machine itself, so that
a refusal in the molecule_lab run can only come from the check of who asked; and the
summary verify.yml asserts on must fail on any answer that is not a refusal.
"""

from __future__ import annotations

import json
import pathlib
import sys

from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import ipxe
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.agent_report import validate_report

REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "lab"))

from nixielab import impostor  # noqa: E402  pylint: disable=wrong-import-position,import-error

MAC1 = "52:54:00:12:34:01"
MAC2 = "52:54:00:12:34:02"
FINISHED = "nixie.metal: host node1 (52:54:00:12:34:01) is already phoned_home in this run; booting the next device"


def answer(mac=MAC1, route="script", status=403, time=100.0, token=None, body="refused", token_seen=False):
    return {"time": time, "mac": mac, "route": route, "token": token, "status": status, "code": None,
            "body": body, "token_seen": token_seen, "error": None if status else "ConnectionRefusedError"}


def server_host(mac, offered, phoned):
    return {"mac": mac, "events": [{"event": "offered", "time": offered}, {"event": "script_served", "time": offered + 1},
                                   {"event": "phoned_home", "time": phoned}]}


# ------------------------------------------------------------------ what it sends


def test_its_forged_report_is_one_the_server_would_accept_from_the_machine():
    report = impostor.forged_report(MAC1, impostor.DEFAULT_MAC, "10.77.0.50", impostor.made_up_host_key(b"x"))
    clean = validate_report(report)
    assert clean["mac"] == MAC1
    assert [a["address"] for a in clean["addresses"]] == ["10.77.0.50"]
    assert clean["ssh_host_keys"][0].startswith("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI")


def test_its_made_up_token_has_the_shape_of_a_real_one_and_differs_per_machine():
    assert ipxe.is_token_value(impostor.made_up_token(MAC1))
    assert impostor.made_up_token(MAC1) != impostor.made_up_token(MAC2)


def test_it_asks_for_the_macs_of_hosts_json():
    text = json.dumps({"node1": {"mac_address": "52:54:00:12:34:0A"}, "node2": {"mac_address": MAC2, "groups": ["lab"]}})
    assert impostor.macs_of_hosts_json(text) == ["52:54:00:12:34:0a", MAC2]


def test_it_takes_only_the_lab_machines_tokens_from_the_server_state():
    record = {"pid": 1, "tokens": {MAC1: "t" * 32, "52:54:00:99:99:99": "u" * 32, MAC2: None}}
    assert impostor.tokens_of_state(record, [MAC1, MAC2]) == {MAC1: "t" * 32}
    assert impostor.tokens_of_state({"pid": 1}, [MAC1]) == {}
    assert impostor.tokens_of_state(["not", "a", "record"], [MAC1]) == {}


# ------------------------------------------------------------------ how verify reads it


def test_a_refusal_is_a_403_or_the_404_of_a_machine_that_already_phoned_home():
    assert impostor.expected_refusal(answer(status=403))
    assert impostor.expected_refusal(answer(route="kernel", status=404, body=FINISHED))
    assert not impostor.expected_refusal(answer(status=200, body=None))
    assert not impostor.expected_refusal(answer(route="kernel", status=206, body=None))
    # any other 404 (an unknown MAC, nothing built) says the impostor was not refused for the right reason
    assert not impostor.expected_refusal(answer(status=404, body="nixie.metal: 52:54:00:12:34:01 is not a host of this run"))
    # a finished machine's phone-home is still judged by who sent it: a 404 or a 409 there is no refusal
    assert not impostor.expected_refusal(answer(route="phone_home", token="made_up", status=404, body=FINISHED))
    assert not impostor.expected_refusal(answer(route="phone_home", token="state_file", status=409, body="{}"))
    assert not impostor.expected_refusal(answer(status=403, token_seen=True))


def test_the_summary_counts_answers_per_machine_and_route_and_keeps_the_first_that_were_not_refusals():
    records = [{"event": "start"}, {"event": "tokens", "source": "state_file", "macs": [MAC1]},
               answer(time=1), answer(status=None, time=2), answer(route="kernel", time=3),
               answer(route="phone_home", token="made_up", time=4),
               answer(route="phone_home", token="state_file", time=5),
               answer(mac=MAC2, status=200, body=None, time=6, token_seen=True),
               answer(mac="52:54:00:99:99:99", status=200, time=7)]
    records[5]["code"] = "token_rejected"
    records[6]["code"] = "impostor"
    summary = impostor.summarize(records, [MAC1, MAC2])
    assert summary["real_token_macs"] == [MAC1]
    assert (summary["answered"], summary["errors"], summary["first"], summary["last"]) == (5, 1, 1, 6)
    one, two = summary["hosts"][MAC1], summary["hosts"][MAC2]
    assert one["answers"] == {"script": {"403": 1}, "kernel": {"403": 1}, "phone_home:made_up": {"403": 1},
                              "phone_home:state_file": {"403": 1}}
    assert one["codes"] == {"phone_home:made_up": {"token_rejected": 1}, "phone_home:state_file": {"impostor": 1}}
    assert (one["unexpected"], one["token_seen"]) == ([], 0)
    assert two["token_seen"] == 1
    assert [u["status"] for u in two["unexpected"]] == [200]


def test_the_summary_keeps_only_the_first_unexpected_answers():
    records = [answer(status=200, body=None, time=t) for t in range(20)]
    assert [u["time"] for u in impostor.summarize(records, [MAC1], max_unexpected=3)["hosts"][MAC1]["unexpected"]] == [0, 1, 2]


def test_the_longest_quiet_time_is_measured_from_the_first_dhcp_answer_to_the_phone_home():
    records = [answer(time=t) for t in (9.0, 10.5, 11.0, 14.0, 15.5, 30.0)]
    records.append(answer(route="kernel", time=12.9))    # only refused scripts count as asking for the boot
    records.append(answer(status=None, time=13.0))       # a connection error is not an answer
    summary = impostor.summarize(records, [MAC1, MAC2], {"hosts": [server_host(MAC1, 10.0, 16.0)]})
    host = summary["hosts"][MAC1]
    assert host["window"] == [10.0, 16.0]
    assert host["refused_in_window"] == 4                # 10.5, 11.0, 14.0, 15.5
    assert host["max_gap"] == 3.0                        # 11.0 -> 14.0
    # a machine the server never answered has no window: verify then fails on it
    assert summary["hosts"][MAC2]["window"] == [None, None]
    assert summary["hosts"][MAC2]["max_gap"] is None


def test_a_window_with_no_refusal_in_it_is_one_long_gap():
    summary = impostor.summarize([answer(time=1.0)], [MAC1], {"hosts": [server_host(MAC1, 10.0, 40.0)]})
    assert (summary["hosts"][MAC1]["refused_in_window"], summary["hosts"][MAC1]["max_gap"]) == (0, 30.0)


def test_a_log_line_cut_short_by_a_kill_is_skipped(tmp_path):
    log = tmp_path / "impostor.jsonl"
    log.write_text(json.dumps(answer()) + "\n" + '{"time": 2, "mac": "52:54', encoding="utf-8")
    assert impostor.read_log(log) == [answer()]
