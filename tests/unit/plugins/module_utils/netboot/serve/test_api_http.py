# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The API's own HTTP/1.1 reader: which requests it takes (pure), and what a client sees on a real socket."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

aiohttp = pytest.importorskip("aiohttp")

from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import api as agent_api  # noqa: E402
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import api_http, binding  # noqa: E402
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import http as nhttp  # noqa: E402
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.neighbours import Entry  # noqa: E402
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.netlink import Route  # noqa: E402
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.registry import Registry  # noqa: E402
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.netboot.agent_samples import MAC1 as MAC, REPORT, phone_home  # noqa: E402


# -- on a real socket, behind http.Listeners -----------------------------------------------------


class Served:
    """The app served as the netboot server serves it, on an ephemeral loopback port."""

    def __init__(self, **kwargs):
        self.registry = Registry([Host("node1", MAC)])
        self.app = nhttp.create_app(self.registry, {}, base_url="http://127.0.0.1:8080", admin_token="admin-0123456789abcdef",
                                    **kwargs)
        self.runner = nhttp.create_runner(self.app)
        self.listeners = None
        self.port = None

    async def __aenter__(self):
        await self.runner.setup()
        self.listeners = nhttp.Listeners(self.runner)
        await self.listeners.listen("127.0.0.1", 0, 128)
        self.port = self.listeners.addresses[0][1]
        return self

    async def __aexit__(self, *exc):
        self.listeners.stop_accepting()
        await self.runner.cleanup()
        await self.listeners.close()

    async def exchange(self, *pieces, pause=0.0):
        """Send ``pieces`` (a pause between them) and read until the server closes; the whole answer."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                if pause:
                    await asyncio.sleep(pause)
            return await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()


def answers(raw):
    """Status codes and JSON bodies of every response in ``raw`` (Content-Length framed)."""
    found = []
    while raw:
        head, rest = raw.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:])}
        length = int(headers.get("content-length", 0))
        status = int(lines[0].split()[1])
        found.append((status, headers, json.loads(rest[:length]) if length and status != 100 else None))
        raw = rest[length:] if status != 100 else rest
    return found


@pytest.mark.asyncio
async def test_a_phone_home_is_answered_in_front_of_aiohttp_and_closed():
    async with Served() as served:
        raw = await served.exchange(phone_home(served.registry.token_for(MAC)) + b"GET /api/v1/health HTTP/1.1\r\n\r\n")
        (status, headers, body), = answers(raw)  # the pipelined second request is not answered: Connection: close
        assert status == 200 and body["ok"] and body["mac"] == MAC
        assert headers["server"] == "nixie.metal" and headers["connection"] == "close"
        assert served.registry.state(MAC) == "phoned_home"
        assert served.listeners.connections.answered_at_once == 1  # whole when accepted: no transport made
        assert not served.listeners.connections.live


@pytest.mark.asyncio
async def test_a_request_in_pieces_and_a_body_after_expect_100_continue():
    async with Served() as served:
        data = phone_home(served.registry.token_for(MAC), extra="Expect: 100-continue\r\n")
        head_end = data.index(b"\r\n\r\n") + 4
        raw = await served.exchange(data[:7], data[7:head_end], data[head_end:], pause=0.05)
        (continue_status, dummy, dummy), (status, dummy, body) = answers(raw)
        assert continue_status == 100 and status == 200 and body["ok"]
        assert served.listeners.connections.answered_at_once == 0  # read piece by piece by its transport


@pytest.mark.asyncio
async def test_what_the_reader_does_not_take_aiohttp_answers_with_the_same_api():
    async with Served() as served:
        chunked = (b"POST /api/v1/phone-home HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + served.registry.token_for(MAC).encode()
                   + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                   + b"%x\r\n" % len(REPORT) + REPORT + b"\r\n0\r\n\r\n")
        (status, headers, body), = answers(await served.exchange(chunked))
        assert status == 200 and body["mac"] == MAC and "aiohttp" in headers["server"]
        # A keep-alive connection that began with a boot request stays with aiohttp for its API request.
        raw = await served.exchange(b"GET /boot/52:54:00:12:34:09/script.ipxe HTTP/1.1\r\nHost: x\r\n\r\n"
                                    b"GET /api/v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 404") and b'"code": "not_found"' in raw


@pytest.mark.asyncio
async def test_late_heads_and_bodies(monkeypatch):
    monkeypatch.setattr(api_http, "HEAD_TIMEOUT", 0.2)
    monkeypatch.setattr(api_http, "SWEEP_INTERVAL", 0.1)
    monkeypatch.setattr(agent_api, "BODY_TIMEOUT", 0.2)
    async with Served() as served:
        assert await served.exchange(b"GET /api/v1/hea") == b""  # closed, nothing said
        data = phone_home(served.registry.token_for(MAC))
        (status, dummy, body), = answers(await served.exchange(data[:-5]))
        assert status == 408 and body["code"] == "body_timeout"
        assert served.registry.state(MAC) == "known" and not served.listeners.connections.live


@pytest.mark.asyncio
async def test_a_waiting_long_poll_is_answered_at_shutdown_and_a_vanished_one_forgotten():
    served = Served()
    async with served:
        last = served.registry.last_seq(MAC)
        vanishing = socket.create_connection(("127.0.0.1", served.port))
        vanishing.sendall(b"GET /api/v1/hosts/%s?wait=30&after=%d HTTP/1.1\r\n\r\n" % (MAC.encode(), last))
        waiting = asyncio.ensure_future(served.exchange(b"GET /api/v1/hosts/%s?wait=30&after=%d HTTP/1.1\r\n\r\n" % (MAC.encode(), last)))
        await asyncio.sleep(0.2)
        notifier = served.app[nhttp.STATE_KEY].api.notifier
        assert sum(len(w) for w in notifier._waiters.values()) == 2  # pylint: disable=protected-access
        vanishing.close()
        await asyncio.sleep(0.2)
        assert sum(len(w) for w in notifier._waiters.values()) == 1  # pylint: disable=protected-access
    (status, dummy, body), = answers(await waiting)
    assert status == 200 and body["stopping"] is True and body["timed_out"] is True


@pytest.mark.asyncio
async def test_connections_beyond_the_limit_are_reset_and_the_port_serves_again_once_some_close():
    async with Served() as served:
        served.listeners.connections.max_connections = 3
        held = [socket.create_connection(("127.0.0.1", served.port)) for dummy in range(2)]
        for each in held:  # half a request: accepted (the kernel holds a silent one back) and kept open
            each.sendall(b"GET /api/v1/hea")
        boot = socket.create_connection(("127.0.0.1", served.port))  # a boot request: held by aiohttp
        boot.sendall(b"GET /boot/52:54:00:12:34:09/script.ipxe HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"GET /api/v1/health HTTP/1.1\r\n\r\n")
        try:
            assert await asyncio.wait_for(reader.read(), 5) == b"", "a connection over the limit was answered"
        except ConnectionResetError:
            pass
        writer.close()
        assert served.listeners.connections.refused == 1
        held.pop().close()
        await asyncio.sleep(0.2)
        (status, dummy, body), = answers(await served.exchange(b"GET /api/v1/health HTTP/1.1\r\n\r\n"))
        assert status == 200 and body["ok"]
        for each in held + [boot]:
            each.close()


# -- the check in front of the script, kernel, initrd and phone-home ------------------------------
# The kernel's route and neighbour answers come from KernelTable, a table the test fills (on
# loopback every peer is 127.0.0.1, which the real kernel calls local). The netboot_trust
# integration target does the same with real namespaces and the real kernel.

OTHER = "02:00:00:bb:00:02"


class KernelTable:
    """What the kernel would answer: 127.0.0.1 is on-link on br0, its neighbour entry is ``mac`` (or none yet)."""

    def __init__(self, mac, resolves_to=None, fails=False):
        self.mac = mac
        self.resolves_to = resolves_to
        self.fails = fails
        self.resolved = []
        self.closed = False

    def route(self, ip):
        if self.fails:
            raise OSError(95, "Operation not supported")
        return Route(kind="unicast", ifindex=7, gateway=None)

    def neighbour(self, ip, ifindex):
        assert ifindex == 7
        return None if self.mac is None else Entry(ip=ip, dev="br0", mac=self.mac, state="REACHABLE")

    def resolve(self, ip):
        self.resolved.append(ip)
        self.mac = self.resolves_to

    def drain(self):
        pass

    def ifname(self, ifindex):
        return "br0"

    def close(self):
        self.closed = True


async def get(served, path):
    return await served.exchange(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path.encode())


def status_and_text(raw):
    head, body = raw.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), body.decode()


@pytest.mark.asyncio
async def test_another_mac_gets_neither_the_script_nor_the_phone_home():
    segment = binding.SegmentCheck(lookup=KernelTable(OTHER))
    async with Served(segment=segment) as served:
        status, text = status_and_text(await get(served, "/boot/%s/script.ipxe" % MAC))
        assert status == 403 and "127.0.0.1 is MAC %s" % OTHER in text and "nixie.token" not in text
        assert served.registry.token_for(MAC) not in text
        (status, dummy, body), = answers(await served.exchange(phone_home(served.registry.token_for(MAC))))
        assert (status, body["code"]) == (403, "impostor") and "node1" in body["error"]
        host = served.registry.host_snapshot(MAC)
        assert host["state"] == "known"
        [row] = host["impostors"]
        assert (row["mac"], row["routes"], row["count"]) == (OTHER, ["phone_home", "script"], 2)
        status, dummy = status_and_text(await get(served, "/boot/%s/kernel" % MAC))
        assert status == 403


@pytest.mark.asyncio
async def test_the_host_itself_gets_its_script_and_phones_home():
    segment = binding.SegmentCheck(lookup=KernelTable(MAC))
    async with Served(segment=segment) as served:
        status, text = status_and_text(await get(served, "/boot/%s/script.ipxe" % MAC))
        assert status == 200 and "nixie.token=%s" % served.registry.token_for(MAC) in text
        assert served.registry.claimed_by(MAC) == "127.0.0.1"
        (status, dummy, body), = answers(await served.exchange(phone_home(served.registry.token_for(MAC))))
        assert status == 200 and body["address"] == "127.0.0.1"
        assert served.registry.host_snapshot(MAC)["binding"]["mac_seen"] == MAC


@pytest.mark.asyncio
async def test_a_peer_without_an_entry_is_resolved_once_then_judged():
    kernel = KernelTable(None, resolves_to=MAC)
    async with Served(segment=binding.SegmentCheck(lookup=kernel)) as served:
        (status, dummy, body), = answers(await served.exchange(phone_home(served.registry.token_for(MAC))))
        assert status == 200 and kernel.resolved == ["127.0.0.1"]
    kernel = KernelTable(None, resolves_to=None)
    async with Served(segment=binding.SegmentCheck(lookup=kernel, resolve_wait=0.2)) as served:
        status, text = status_and_text(await get(served, "/boot/%s/script.ipxe" % MAC))
        assert status == 403 and "cannot tell which MAC 127.0.0.1 is (no neighbour entry on br0)" in text
        assert served.registry.host_snapshot(MAC)["impostors"][0]["reason"] == "unverified"


@pytest.mark.asyncio
async def test_a_kernel_that_cannot_answer_fails_closed():
    segment = binding.SegmentCheck(lookup=KernelTable(MAC, fails=True), resolve_wait=0.1)
    async with Served(segment=segment) as served:
        (status, dummy, body), = answers(await served.exchange(phone_home(served.registry.token_for(MAC))))
        assert (status, body["code"]) == (403, "unverified")
    assert segment.errors >= 1


@pytest.mark.asyncio
async def test_with_the_check_off_everyone_is_served_and_the_host_says_so():
    async with Served(segment=binding.SegmentCheck(enabled=False)) as served:
        status, dummy = status_and_text(await get(served, "/boot/%s/script.ipxe" % MAC))
        assert status == 200
        events = [e["event"] for e in served.registry.events_after(0)]
        assert events[0] == "binding_unchecked"
        assert served.registry.events_after(0)[0]["scope"] == binding.NOT_CHECKED
