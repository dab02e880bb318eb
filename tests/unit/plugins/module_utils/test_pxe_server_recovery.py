# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run that replaces a server that died keeps that server's per-host tokens (no sockets)."""

from __future__ import annotations

from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import ipxe
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.options import ServerOptions
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.server import NetbootServer
from ansible_collections.nixie.metal.plugins.module_utils._pxe_server import tokens_to_keep

HOSTS = (Host("node1", "52:54:00:12:34:01"), Host("node2", "52:54:00:12:34:02"))
TOKEN1 = "A" * 32
TOKEN_GONE = "B" * 32


def test_only_well_formed_tokens_of_this_runs_hosts_are_kept():
    record = {"tokens": {"52:54:00:12:34:01": TOKEN1, "52:54:00:12:34:99": TOKEN_GONE, "52:54:00:12:34:02": "short"}}
    assert tokens_to_keep(record, HOSTS) == {"52:54:00:12:34:01": TOKEN1}


def test_a_token_is_never_given_to_two_hosts():
    record = {"tokens": {"52:54:00:12:34:01": TOKEN1, "52:54:00:12:34:02": TOKEN1}}
    assert list(tokens_to_keep(record, HOSTS).values()) == [TOKEN1]


def test_nothing_to_keep_from_an_old_or_broken_record():
    for record in (None, {}, {"tokens": None}, {"tokens": ["x"]}, {"tokens": {"52:54:00:12:34:01": 5}}):
        assert tokens_to_keep(record, HOSTS) == {}


def test_the_new_server_answers_with_the_kept_token_and_a_fresh_one_for_the_others():
    server = NetbootServer(ServerOptions(hosts=HOSTS, server_ip="192.0.2.1", artifacts={}, tokens={"52:54:00:12:34:01": TOKEN1}))
    assert server.registry.token_for("52:54:00:12:34:01") == TOKEN1
    fresh = server.registry.token_for("52:54:00:12:34:02")
    assert fresh != TOKEN1 and ipxe.is_token_value(fresh)


def test_without_kept_tokens_every_token_is_fresh():
    first = NetbootServer(ServerOptions(hosts=HOSTS, server_ip="192.0.2.1", artifacts={}))
    second = NetbootServer(ServerOptions(hosts=HOSTS, server_ip="192.0.2.1", artifacts={}))
    assert first.registry.token_for("52:54:00:12:34:01") != second.registry.token_for("52:54:00:12:34:01")
