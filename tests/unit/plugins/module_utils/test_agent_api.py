# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import urllib.error

import pytest

from ansible_collections.nixie.metal.plugins.module_utils import _agent_api
from ansible_collections.nixie.metal.plugins.module_utils._agent_api import AgentApiError, diagnose, host_url, wait_for_phone_home

API = "http://192.0.2.1:8080/api/v1"
MAC = "52:54:00:12:34:01"


def host(state, *events, **extra):
    listed = [{"seq": index + 1, "event": name} for index, name in enumerate(events)]
    return dict({"state": state, "events": listed, "last_seq": len(listed)}, **extra)


class Outage:
    """A poll that fails with ``error`` instead of answering."""

    def __init__(self, error):
        self.error = error


class FakeApi:
    """Answers long-polls from a script of host snapshots; time advances by each poll's wait."""

    def __init__(self, answers, now=0.0):
        self.answers = list(answers)
        self.now = now
        self.urls = []

    def clock(self):
        return self.now

    def fetch(self, url, timeout):
        self.urls.append(url)
        answer = self.answers.pop(0) if self.answers else {"host": self.last}
        if isinstance(answer, Outage):
            self.now += 1
            raise answer.error
        self.last = answer["host"]
        self.now += float(url.split("wait=")[1].split("&")[0])
        return answer


@pytest.fixture
def api(monkeypatch):
    def make(answers):
        fake = FakeApi(answers)
        monkeypatch.setattr(_agent_api, "fetch_json", fake.fetch)
        monkeypatch.setattr(_agent_api.time, "sleep", lambda seconds: setattr(fake, "now", fake.now + seconds))
        return fake
    return make


def test_host_url_quotes_the_mac():
    assert host_url(API, MAC, wait=25, after=3) == API + "/hosts/52%3A54%3A00%3A12%3A34%3A01?wait=25&after=3"


def test_returns_once_phoned_home_and_polls_after_the_last_event(api):
    fake = api([{"host": host("offered", "offered")},
                {"host": host("phoned_home", "offered", "phoned_home", address="192.0.2.57")}])
    result = wait_for_phone_home(API, MAC, timeout=100, poll=25, clock=fake.clock)
    assert result["address"] == "192.0.2.57"
    assert "after=0" in fake.urls[0] and "after=1" in fake.urls[1]


@pytest.mark.parametrize("state, events, cause", [
    ("known", (), "no DHCP request from this MAC was seen"),
    ("offered", ("offered",), "UDP 69"),
    ("ipxe_served", ("offered", "ipxe_served"), "TCP 8080"),
    ("initrd_served", ("initrd_served",), "the agent never phoned home"),
])
def test_timeout_names_the_last_event_and_the_likely_cause(api, state, events, cause):
    fake = api([{"host": host(state, *events)}])
    with pytest.raises(AgentApiError) as caught:
        wait_for_phone_home(API, MAC, timeout=50, poll=25, clock=fake.clock)
    message = str(caught.value)
    assert message.startswith("%s did not phone home within 50s" % MAC)
    assert ("last event: %s" % events[-1]) in message if events else "no event at all" in message
    assert cause in message


def test_a_failed_host_fails_at_once(api):
    fake = api([{"host": host("failed", "failed", failed_reason="disk on fire")}])
    with pytest.raises(AgentApiError, match="the host failed: disk on fire"):
        wait_for_phone_home(API, MAC, timeout=100, clock=fake.clock)


def test_a_stopping_server_ends_the_wait(api):
    fake = api([{"host": host("offered", "offered"), "stopping": True}])
    with pytest.raises(AgentApiError, match="the PXE server stopped before"):
        wait_for_phone_home(API, MAC, timeout=100, clock=fake.clock)


def test_an_unreachable_server_is_reported(api):
    fake = api([Outage(urllib.error.URLError("connection refused"))] * 40)
    with pytest.raises(AgentApiError, match="cannot be reached: connection refused; is the pxe_server job still running"):
        wait_for_phone_home(API, MAC, timeout=100, clock=fake.clock)


def test_a_brief_outage_is_ridden_out(api):
    fake = api([Outage(urllib.error.URLError("refused")), {"host": host("phoned_home", "phoned_home", address="192.0.2.9")}])
    assert wait_for_phone_home(API, MAC, timeout=100, clock=fake.clock)["address"] == "192.0.2.9"


def test_diagnose_without_host():
    assert diagnose(None) == "the server knows nothing of this host"


def test_a_refused_machine_is_explained():
    refused = host("known", "dhcp_refused")
    refused["events"][-1]["reason"] = "no-boot-file"
    assert "no iPXE binary for its firmware" in diagnose(refused)


def test_waits_until_a_boot_stage_is_reached_or_passed(api):
    fake = api([{"host": host("offered", "offered")},
                {"host": host("script_served", "offered", "script_served")}])
    # iPXE in ROM fetches the script directly: ipxe_served is passed, not visited.
    result = _agent_api.wait_for_phone_home(API, MAC, timeout=100, clock=fake.clock, until_state="ipxe_served")
    assert result["state"] == "script_served"
    assert len(fake.urls) == 2


def test_a_stage_timeout_names_the_stage(api):
    fake = api([{"host": host("offered", "offered")}])
    with pytest.raises(AgentApiError, match="did not reach kernel_served within 50s .*UDP 69"):
        _agent_api.wait_for_phone_home(API, MAC, timeout=50, clock=fake.clock, until_state="kernel_served")


@pytest.mark.parametrize("state, stage, expected", [
    ("known", "offered", False), ("offered", "offered", True), ("initrd_served", "kernel_served", True),
    ("kernel_served", "phoned_home", False), ("failed", "offered", False), (None, "offered", False),
])
def test_reached_compares_boot_order(state, stage, expected):
    assert _agent_api.reached({"state": state}, stage) is expected
