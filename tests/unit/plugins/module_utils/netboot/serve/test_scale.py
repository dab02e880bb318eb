# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine changes made for a rack booting at once (docs/performance.md), without sockets.

Each test pins down one property the rack benches (bench/dhcp_burst.py,
bench/machines.py, bench/agent_api.py) depend on: lookups that do not grow
with the inventory, a DHCP socket drained in bounded batches, long-polls
woken only by their own host, and the limits the server raises for itself.
"""

from __future__ import annotations

import asyncio
import resource
import socket

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host, normalize_mac
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state import registry as registry_module
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import runtime
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import dhcp_socket
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import server as server_module
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.agent_report import TokenRejected
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.registry import Registry

aiohttp = pytest.importorskip("aiohttp")

from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import api_service  # noqa: E402
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.api_service import ChangeNotifier  # noqa: E402


def _hosts(count):
    return [Host("rack%04d" % i, "52:54:00:5c:%02x:%02x" % (i // 256, i % 256)) for i in range(count)]


def _report(mac):
    return {"mac": mac, "addresses": [{"ifname": "eth0", "mac": mac, "address": "10.77.1.1", "prefix": 16}],
            "ssh_host_keys": [], "hostname": "nixos", "uptime": 1.0}


# -- registry --------------------------------------------------------------------------


def test_lookups_take_any_spelling_of_a_mac_normalised_where_it_enters():
    registry = Registry(_hosts(3))
    for spelling in ("52:54:00:5c:00:01", "52-54-00-5C-00-01", "5254.005c.0001", "5254005c0001"):
        mac = normalize_mac(spelling)
        assert registry.is_known(mac)
        assert registry.host_name(mac) == "rack0001"
        assert registry.token_for(mac) == registry.token_for("52:54:00:5c:00:01")
    for not_a_mac in (None, 7, "", "52:54:00:5c:00", ["52:54:00:5c:00:01"]):
        assert not registry.is_known(not_a_mac)
        assert registry.state(not_a_mac) is None


def test_all_done_counts_each_host_once():
    hosts = _hosts(3)
    registry = Registry(hosts)
    first, second, third = (host.mac for host in hosts)
    registry.fail(first, "disk")
    registry.fail(first, "again")            # already finished: not counted twice
    registry.record(first, "failed", reason="third time")
    assert not registry.all_done()
    registry.phone_home(registry.token_for(second), _report(second))
    registry.phone_home(registry.token_for(second), _report(second))  # an idempotent repeat
    assert not registry.all_done()
    registry.phone_home(registry.token_for(third), _report(third))
    assert registry.all_done()


def test_a_phone_home_compares_one_token_whatever_the_inventory(monkeypatch):
    registry = Registry(_hosts(1000))
    calls = []
    real = registry_module.hmac.compare_digest

    def counting(first, second):
        calls.append(1)
        return real(first, second)
    monkeypatch.setattr(registry_module.hmac, "compare_digest", counting)
    mac = "52:54:00:5c:03:e7"
    registry.phone_home(registry.token_for(mac), _report(mac))
    assert len(calls) == 1
    assert registry.state(mac) == "phoned_home"


def test_tokens_are_still_checked_against_the_report_and_the_run():
    registry = Registry(_hosts(2))
    first, second = "52:54:00:5c:00:00", "52:54:00:5c:00:01"
    with pytest.raises(TokenRejected):
        registry.phone_home(registry.token_for(first), _report(second))   # another host's token
    with pytest.raises(TokenRejected):
        registry.phone_home("not-a-token-of-this-run-0123456789", _report(first))
    with pytest.raises(TokenRejected):
        registry.phone_home("\udcff" * 20, _report(first))                # undecodable bytes from a header
    assert registry.state(first) == registry.state(second) == "known"


# -- the DHCP socket's transport ------------------------------------------------------------


class FakeLoop:
    def __init__(self):
        self.readers = {}

    def add_reader(self, fd, callback):
        self.readers[fd] = callback

    def remove_reader(self, fd):
        del self.readers[fd]


class FakeSocket:
    def __init__(self, queued):
        self.queued = list(queued)
        self.sent = []
        self.closed = 0
        self.options = []

    def fileno(self):
        return 7

    def recvfrom(self, size):
        if not self.queued:
            raise BlockingIOError()
        item = self.queued.pop(0)
        if isinstance(item, Exception):
            raise item
        return item[:size], ("0.0.0.0", 68)

    def sendto(self, data, address):
        self.sent.append((data, address))

    def close(self):
        self.closed += 1

    def setsockopt(self, level, option, value):
        if option == dhcp_socket.SO_RCVBUFFORCE:
            raise PermissionError("not root")
        self.options.append((level, option, value))


class Recorder:
    def __init__(self):
        self.transport = None
        self.received = []
        self.errors = []

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, address):
        self.received.append(data)

    def error_received(self, exc):
        self.errors.append(exc)


def test_a_burst_is_drained_in_bounded_batches():
    loop, sock, protocol = FakeLoop(), FakeSocket([b"%d" % i for i in range(10)]), Recorder()
    transport = dhcp_socket.BatchedDatagramTransport(loop, sock, protocol, batch=4)
    assert protocol.transport is transport
    loop.readers[7]()
    assert protocol.received == [b"0", b"1", b"2", b"3"]   # the loop gets control back after a batch
    loop.readers[7]()
    loop.readers[7]()
    assert len(protocol.received) == 10 and not sock.queued
    loop.readers[7]()                                       # nothing queued: returns at once
    assert len(protocol.received) == 10


def test_an_oversized_datagram_is_read_whole_enough_to_be_refused():
    big = b"x" * (dhcp_socket.MAX_DHCP_DATAGRAM + 500)
    loop, sock, protocol = FakeLoop(), FakeSocket([big]), Recorder()
    dhcp_socket.BatchedDatagramTransport(loop, sock, protocol)
    loop.readers[7]()
    assert len(protocol.received[0]) > dhcp_socket.MAX_DHCP_DATAGRAM


def test_socket_errors_go_to_the_protocol_and_sends_pass_through():
    loop, sock, protocol = FakeLoop(), FakeSocket([ConnectionRefusedError(), b"after"]), Recorder()
    transport = dhcp_socket.BatchedDatagramTransport(loop, sock, protocol)
    loop.readers[7]()
    assert isinstance(protocol.errors[0], ConnectionRefusedError) and protocol.received == []
    loop.readers[7]()
    assert protocol.received == [b"after"]
    transport.sendto(b"offer", ("255.255.255.255", 68))
    assert sock.sent == [(b"offer", ("255.255.255.255", 68))]
    transport.close()
    transport.close()
    assert sock.closed == 1 and not loop.readers


def test_receive_buffer_falls_back_when_it_cannot_be_forced():
    sock = FakeSocket([])
    dhcp_socket.set_receive_buffer(sock, 1 << 22)
    assert sock.options == [(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)]


# -- long-polls ------------------------------------------------------------------------------


def test_a_host_event_wakes_only_that_hosts_waiters_and_the_catch_all():
    async def scenario():
        notifier = ChangeNotifier()
        notifier.attach(asyncio.get_running_loop())
        checks = {"a": 0, "b": 0, "any": 0}
        news = {"a": False, "b": False, "any": False}

        def predicate(name):
            def check():
                checks[name] += 1
                return news[name]
            return check
        waiting = [asyncio.ensure_future(notifier.wait_for(predicate("a"), 5, key="52:54:00:00:00:0a")),
                   asyncio.ensure_future(notifier.wait_for(predicate("b"), 5, key="52:54:00:00:00:0b")),
                   asyncio.ensure_future(notifier.wait_for(predicate("any"), 5))]
        await asyncio.sleep(0)
        before = dict(checks)
        notifier({"mac": "52:54:00:00:00:0a", "event": "offered"})
        await asyncio.sleep(api_service.WAKE_QUIET * 3)
        assert checks["b"] == before["b"]                     # not woken by another host
        assert checks["a"] > before["a"] and checks["any"] > before["any"]
        news["a"] = news["any"] = True
        notifier({"mac": "52:54:00:00:00:0a", "event": "phoned_home"})
        assert await waiting[0] is True and await waiting[2] is True
        assert not waiting[1].done()
        notifier.close()                                      # stopping wakes everyone
        assert await waiting[1] is False
        assert notifier._waiters == {}  # pylint: disable=protected-access
    asyncio.run(scenario())


def test_waiters_are_woken_once_a_burst_of_events_pauses_and_never_much_later(monkeypatch):
    # A longer pause than the server's, so a busy test machine's late timers cannot look like one.
    monkeypatch.setattr(api_service, "WAKE_QUIET", 0.05)

    async def scenario():
        loop = asyncio.get_running_loop()
        checked_at = []  # when the waiter looked (it looks once at the start, then on each wake-up)

        def nothing_yet():
            checked_at.append(loop.time())
            return False
        notifier = ChangeNotifier()
        notifier.attach(loop)
        waiter = asyncio.ensure_future(notifier.wait_for(nothing_yet, 5, key="52:54:00:00:00:0a"))
        await asyncio.sleep(0)
        started = loop.time()
        # A burst: an event every 2 ms (phone-homes arriving) for 0.2 s; the waiter stays asleep.
        while loop.time() - started < 0.2:
            notifier({"mac": "52:54:00:00:00:0a", "event": "phoned_home"})
            await asyncio.sleep(0.002)
        burst_end = loop.time()
        assert len(checked_at) == 1, "woken in the middle of the burst"
        await asyncio.sleep(api_service.WAKE_QUIET * 5)
        assert len(checked_at) == 2 and checked_at[1] - burst_end < api_service.WAKE_QUIET * 4, "not woken soon after the burst"

        # Events that never pause: woken WAKE_MAX_DELAY after the first all the same.
        del checked_at[:]
        waiter2 = asyncio.ensure_future(notifier.wait_for(nothing_yet, 5))
        await asyncio.sleep(0)
        started = loop.time()
        while len(checked_at) < 2 and loop.time() - started < 3:
            notifier({"mac": "52:54:00:00:00:0b", "event": "offered"})
            await asyncio.sleep(0.002)
        assert len(checked_at) >= 2, "a steady stream of events kept the waiter asleep"
        assert api_service.WAKE_MAX_DELAY <= checked_at[1] - started < api_service.WAKE_MAX_DELAY + 0.3
        notifier.close()
        assert await waiter is False and await waiter2 is False
    asyncio.run(scenario())


def test_a_timed_out_waiter_leaves_nothing_behind():
    async def scenario():
        notifier = ChangeNotifier()
        notifier.attach(asyncio.get_running_loop())
        assert await notifier.wait_for(lambda: False, 0.05, key="52:54:00:00:00:0a") is False
        assert notifier._waiters == {}  # pylint: disable=protected-access
    asyncio.run(scenario())


# -- limits the server raises for itself -------------------------------------------------------


@pytest.mark.parametrize("soft, hard, wanted, expected", [
    (1024, 524288, 8192, 8192),
    (1024, 4096, 8192, 4096),
    (65536, 524288, 8192, 65536),          # never lowered
    (1024, resource.RLIM_INFINITY, 8192, 8192),
])
def test_open_files_limit_is_raised_within_the_hard_limit(monkeypatch, soft, hard, wanted, expected):
    applied = []
    monkeypatch.setattr(runtime.resource, "getrlimit", lambda which: (soft, hard))
    monkeypatch.setattr(runtime.resource, "setrlimit", lambda which, limits: applied.append(limits))
    assert runtime.raise_open_files_limit(wanted) == expected
    assert applied == ([] if expected == soft else [(expected, hard)])


def test_open_files_limit_refused_keeps_the_old_one(monkeypatch):
    def refuse(which, limits):
        raise ValueError("not allowed")
    monkeypatch.setattr(runtime.resource, "getrlimit", lambda which: (1024, 4096))
    monkeypatch.setattr(runtime.resource, "setrlimit", refuse)
    assert runtime.raise_open_files_limit(8192) == 1024


def test_rack_sized_bounds():
    # A rack of a few hundred machines fits every bound at once, and each bound is finite.
    assert 256 <= server_module.TFTP_MAX_TRANSFERS < server_module.OPEN_FILES
    assert 512 <= server_module.HTTP_BACKLOG <= 65535
    assert dhcp_socket.DHCP_READ_BATCH >= 16


def test_startup_objects_are_frozen_for_the_run_only():
    import gc  # pylint: disable=import-outside-toplevel
    import weakref  # pylint: disable=import-outside-toplevel

    class Node:
        pass
    kept = [{"startup": index} for index in range(1000)]
    with server_module.startup_objects_frozen():
        assert gc.get_freeze_count() >= len(kept)
        node = Node()
        node.itself = node          # a cycle made during the run is still collected
        ref = weakref.ref(node)
        del node
        gc.collect()
        assert ref() is None
    assert gc.get_freeze_count() == 0


# -- big files are sent in slices ------------------------------------------------------------


def _serve_file(tmp_path, monkeypatch, data, slice_size, requests):
    """Serve ``data`` as the initrd through the real app on loopback; return (answers, sendfile sizes)."""
    from aiohttp.test_utils import TestClient, TestServer  # pylint: disable=import-outside-toplevel
    from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import http as netboot_http  # pylint: disable=import-outside-toplevel

    monkeypatch.setattr(netboot_http, "SENDFILE_SLICE", slice_size)
    path = tmp_path / "initrd"
    path.write_bytes(data)
    mac = "52:54:00:5c:00:00"
    app = netboot_http.create_app(Registry(_hosts(1)), {"x86_64-linux": {"kernel": str(path), "initrd": str(path)}})

    async def scenario():
        loop = asyncio.get_running_loop()
        sizes = []
        real = loop.sendfile

        async def counting(transport, file, offset=0, count=None, **kwargs):
            sizes.append(count)
            return await real(transport, file, offset, count, **kwargs)
        loop.sendfile = counting
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        answers = []
        try:
            for headers in requests:
                response = await client.get("/boot/%s/initrd" % mac, headers=headers)
                answers.append((response.status, await response.read()))
        finally:
            await client.close()
        return answers, sizes
    return asyncio.run(scenario())


def test_a_big_file_goes_to_the_kernel_in_slices(tmp_path, monkeypatch):
    data = bytes(range(256)) * 400                      # 102,400 bytes, slices of 30,000
    answers, sizes = _serve_file(tmp_path, monkeypatch, data, 30000, [{}, {"Range": "bytes=1000-70999"}])
    assert answers[0] == (200, data)
    assert answers[1] == (206, data[1000:71000])
    assert sizes == [30000, 30000, 30000, 12400, 30000, 30000, 10000]


def test_a_small_file_is_one_sendfile(tmp_path, monkeypatch):
    data = b"initrd" * 1000
    answers, sizes = _serve_file(tmp_path, monkeypatch, data, 1 << 20, [{}])
    assert answers == [(200, data)] and sizes == [len(data)]
