# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent's report judged alone: what is refused, what is dropped, the one spelling it is kept in."""

from __future__ import annotations

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.agent_report import ReportInvalid, validate_report
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.netboot.agent_samples import KEY, MAC1, report


@pytest.mark.parametrize("body, message", [
    ([], "JSON object"),
    ({}, "mac"),
    ({"mac": "zz"}, "mac"),
    (report(addresses=[{"ifname": "eth0", "address": "192.0.2.1", "prefix": 24}] * 65), "limit"),
    (report(addresses=[{"ifname": "eth0", "address": "not-ip", "prefix": 24}]), "not an IPv4"),
    (report(addresses=[{"ifname": "eth0", "address": "192.0.2.1", "prefix": 33}]), "prefix"),
    (report(addresses=[{"ifname": "eth0", "address": "192.0.2.1", "prefix": True}]), "prefix"),
    (report(addresses=[{"ifname": "bad name", "address": "192.0.2.1", "prefix": 24}]), "ifname"),
    (report(addresses=[{"ifname": "eth0", "mac": "x", "address": "192.0.2.1", "prefix": 24}]), "mac"),
    (report(ssh_host_keys=[KEY] * 17), "limit"),
    (report(ssh_host_keys=["not a key"]), "OpenSSH"),
    (report(ssh_host_keys=["ssh-ed25519 " + "A" * 9000]), "at most"),
    (report(ssh_host_keys="ssh-ed25519 AAAA"), "list"),
    (report(uptime=-1), "uptime"),
    (report(uptime="soon"), "uptime"),
])
def test_validate_report_rejects(body, message):
    with pytest.raises(ReportInvalid, match=message):
        validate_report(body)


@pytest.mark.parametrize("hostname", ["(none)", "a" * 300, "bad host", 42])
def test_unusable_hostname_is_dropped_not_refused(hostname):
    # A refused report would leave the agent retrying forever over an informative field.
    assert validate_report(report(hostname=hostname))["hostname"] is None


def test_validate_report_normalises():
    clean = validate_report({
        "mac": "52-54-00-12-34-01",
        "addresses": [{"ifname": "eth0", "mac": "", "address": "FD77::0001", "prefix": "64"}],
        "ssh_host_keys": [KEY, KEY + " dup"],
        "hostname": "",
        "uptime": "3.5",
        "future_field": 1,
    })
    assert clean == {
        "mac": MAC1,
        "addresses": [{"ifname": "eth0", "mac": None, "address": "fd77::1", "prefix": 64}],
        "ssh_host_keys": [KEY],
        "hostname": None,
        "uptime": 3.5,
    }
