# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import copy
import json

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host, hosts_from_option
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state import host_state
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.agent_report import AlreadyFinished, ReportInvalid, TokenMissing, TokenRejected
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.api import status_of
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.registry import Registry
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.netboot.agent_samples import KEY, MAC1, report

MAC2 = "52:54:00:12:34:02"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        self.now += 1
        return self.now


def tokens():
    counter = iter(range(1000))
    return lambda: "token-%016d" % next(counter)


@pytest.fixture
def registry():
    # Other spellings are normalised where they enter (hosts_from_option), never by the registry.
    hosts = [*hosts_from_option([{"name": "node1", "mac": "52-54-00-12-34-01"}]),
             *hosts_from_option([{"name": "arm1", "mac": "5254.0012.3402", "arch": "aarch64-linux"}])]
    return Registry(hosts, clock=Clock(), token_factory=tokens())


def test_build_from_hosts(registry):
    assert registry.macs() == [MAC1, MAC2]
    assert registry.arch(MAC1) == "x86_64-linux"
    assert registry.arch(MAC2) == "aarch64-linux"
    assert registry.state(MAC1) == "known"
    assert registry.host_name("52:54:00:12:34:02") == "arm1"
    assert registry.seq == 0
    assert not registry.all_done()


def test_default_tokens_are_distinct_and_secret():
    r = Registry([Host("a", MAC1), Host("b", MAC2)])
    t1, t2 = r.token_for(MAC1), r.token_for(MAC2)
    assert t1 != t2 and len(t1) >= 32
    dumped = json.dumps(r.snapshot())
    assert t1 not in dumped and t2 not in dumped


@pytest.mark.parametrize("hosts, message", [
    (lambda: [Host("a", MAC1), Host("b", MAC1)], "already used"),
    (lambda: [Host("a", MAC1), Host("a", MAC2)], "twice"),
    (lambda: [Host("a", "nope")], "not a MAC"),
    (lambda: [Host("a", "52-54-00-12-34-01")], "not a MAC address in the one spelling"),
    (lambda: [Host("", MAC1)], "name"),
    (lambda: ["junk"], "Host record"),
    (lambda: [{"name": "a", "mac": MAC1}], "Host record"),
])
def test_bad_hosts(hosts, message):
    with pytest.raises(ValueError, match=message):
        Registry(hosts())


def test_another_spelling_is_not_a_host():
    """The contract: the registry takes MACs as Hosts hold them and does not normalise again."""
    r = Registry([Host("a", MAC1)])
    assert r.is_known(MAC1) and not r.is_known("52-54-00-12-34-01") and not r.is_known("5254.0012.3401")


def test_progress_and_events(registry):
    seen = []
    registry.add_listener(seen.append)
    for event in ("offered", "ipxe_served", "script_served", "kernel_served", "initrd_served"):
        registry.record(MAC1, event, peer="192.0.2.10")
        assert registry.state(MAC1) == event
    events = registry.host_snapshot(MAC1)["events"]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    assert events[0]["peer"] == "192.0.2.10" and events[0]["host"] == "node1"
    assert [e["event"] for e in seen] == ["offered", "ipxe_served", "script_served", "kernel_served", "initrd_served"]
    # a late DHCP offer does not move the state back, but is on the timeline
    registry.record(MAC1, "offered")
    assert registry.state(MAC1) == "initrd_served"
    assert registry.last_seq(MAC1) == 6
    # informational events are recorded without a state change
    registry.record(MAC1, "tftp_error", reason="timeout")
    assert registry.state(MAC1) == "initrd_served"
    assert [e["event"] for e in registry.events_after(5)] == ["offered", "tftp_error"]
    assert registry.events_after(0, MAC2) == []


def test_record_rejects_bad_names(registry):
    with pytest.raises(ValueError):
        registry.record(MAC1, "Bad Name")
    with pytest.raises(ValueError):
        registry.record(MAC1, "phoned_home")


def test_details_never_carry_tokens_and_are_bounded(registry):
    event = registry.record(MAC1, "offered", token="secret", auth_token="x", note="y" * 10000, obj=object())
    assert "token" not in event and "auth_token" not in event
    assert len(event["note"]) == host_state.MAX_DETAIL_STRING
    assert isinstance(event["obj"], str)


def test_unknown_macs_are_counted_with_a_cap():
    r = Registry([Host("a", MAC1)], max_ignored_macs=3)
    seen = []
    r.add_listener(seen.append)
    for i in range(10):
        for dummy in range(5):
            assert r.record("02:00:00:00:00:%02x" % i, "offered") is None
    r.record("garbage", "offered")
    ignored = r.ignored_snapshot()
    assert len(ignored["macs"]) == 3
    assert ignored["macs"]["02:00:00:00:00:00"]["count"] == 5
    assert ignored["macs"]["02:00:00:00:00:00"]["events"] == {"offered": 5}
    assert ignored["overflow"] == 7 * 5 + 1
    assert seen == [] and r.seq == 0


def test_events_per_host_are_bounded():
    r = Registry([Host("a", MAC1)], max_events_per_host=5)
    for dummy in range(12):
        r.record(MAC1, "offered")
    snap = r.host_snapshot(MAC1)
    assert len(snap["events"]) == 5 and snap["events_dropped"] == 7
    assert snap["events"][-1]["seq"] == 12 == snap["last_seq"]


def test_phone_home_accepted(registry):
    registry.record(MAC1, "initrd_served")
    answer = registry.phone_home(registry.token_for(MAC1), report(), "192.0.2.10")
    assert answer == {"host": "node1", "mac": MAC1, "state": "phoned_home", "address": "192.0.2.10",
                      "seq": 2, "repeat": False}
    snap = registry.host_snapshot(MAC1)
    assert snap["state"] == "phoned_home" and snap["finished"]
    assert snap["ssh_host_keys"] == [KEY]  # comment dropped
    assert snap["addresses"][0]["address"] == "192.0.2.10"
    assert snap["hostname"] == "nixos"
    assert snap["events"][-1]["event"] == "phoned_home"
    assert registry.is_finished(MAC1) and not registry.all_done()
    registry.fail(MAC2, "no DHCP answer in 10 minutes")
    assert registry.all_done()
    assert registry.host_snapshot(MAC2)["failed_reason"] == "no DHCP answer in 10 minutes"


def _frozen(registry):
    snap = registry.snapshot()
    snap.pop("rejected_phone_homes")
    return copy.deepcopy(snap)


@pytest.mark.parametrize("token", [None, ""])
def test_phone_home_missing_token(registry, token):
    before = _frozen(registry)
    with pytest.raises(TokenMissing) as info:
        registry.phone_home(token, report(), "192.0.2.10")
    assert status_of(info.value.code) == 401
    assert _frozen(registry) == before


def test_phone_home_wrong_token(registry):
    before = _frozen(registry)
    with pytest.raises(TokenRejected) as info:
        registry.phone_home("token-9999999999999999", report(), "192.0.2.10")
    assert status_of(info.value.code) == 403
    assert registry.token_for(MAC1) not in info.value.message
    assert _frozen(registry) == before
    assert registry.snapshot()["rejected_phone_homes"]["token_rejected"] == 1


def test_phone_home_with_another_hosts_token(registry):
    before = _frozen(registry)
    with pytest.raises(TokenRejected, match="does not belong"):
        registry.phone_home(registry.token_for(MAC2), report(MAC1), "192.0.2.10")
    assert _frozen(registry) == before


def test_phone_home_repeat_is_idempotent(registry):
    token = registry.token_for(MAC1)
    first = registry.phone_home(token, report(), "192.0.2.10")
    seq = registry.seq
    seen = []
    registry.add_listener(seen.append)
    before = _frozen(registry)
    again = registry.phone_home(token, report(uptime=99.0), "192.0.2.10")
    assert again == dict(first, repeat=True)
    assert registry.seq == seq and seen == []
    assert _frozen(registry) == before


def test_phone_home_replay_with_other_report_after_finish_changes_nothing(registry):
    token = registry.token_for(MAC1)
    registry.phone_home(token, report(), "192.0.2.10")
    before = _frozen(registry)
    with pytest.raises(AlreadyFinished) as info:
        registry.phone_home(token, report(hostname="evil"), "198.51.100.1")
    assert status_of(info.value.code) == 409
    assert _frozen(registry) == before


def test_phone_home_after_failed(registry):
    registry.fail(MAC1, "timeout")
    before = _frozen(registry)
    with pytest.raises(AlreadyFinished, match="failed"):
        registry.phone_home(registry.token_for(MAC1), report(), "192.0.2.10")
    assert _frozen(registry) == before
    # and a finished host keeps its state on later events
    registry.record(MAC1, "offered")
    assert registry.state(MAC1) == "failed"


def test_phone_home_invalid_report_changes_nothing(registry):
    before = _frozen(registry)
    with pytest.raises(ReportInvalid):
        registry.phone_home(registry.token_for(MAC1), {"mac": MAC1, "addresses": "nope"}, "192.0.2.10")
    assert _frozen(registry) == before


def test_listener_errors_do_not_break_recording(registry):
    def broken(_event):
        raise RuntimeError("boom")
    remove = registry.add_listener(broken)
    assert registry.record(MAC1, "offered")["seq"] == 1
    assert registry.listener_errors == 1 and "boom" in registry.last_listener_error
    remove()
    registry.record(MAC1, "offered")
    assert registry.listener_errors == 1


def test_snapshot_is_json_and_counts(registry):
    registry.record(MAC1, "offered")
    registry.record("02:00:00:00:00:01", "offered")
    snap = json.loads(json.dumps(registry.snapshot()))
    assert snap["counts"]["offered"] == 1 and snap["counts"]["known"] == 1
    assert snap["seq"] == 1 and snap["all_done"] is False
    assert "02:00:00:00:00:01" in snap["ignored"]["macs"]


def test_no_hosts_is_all_done():
    assert Registry([]).all_done()
