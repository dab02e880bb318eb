# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The aiohttp app through aiohttp's test client (loopback only)."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
import time
import types

import pytest

aiohttp = pytest.importorskip("aiohttp")
pytest_asyncio = pytest.importorskip("pytest_asyncio")

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host, HostNetwork
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import http as nhttp  # noqa: E402
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.registry import Registry  # noqa: E402

pytestmark = pytest.mark.asyncio

MAC1 = "52:54:00:12:34:01"
MAC2 = "52:54:00:12:34:02"
ARM = "52:54:00:12:34:03"
ADMIN = "admin-token-0123456789abcdef"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAwq+EfnD2DZmIrGP9ja8hP2GBrvXDwB95xkcbYRkgxX"
KERNEL = bytes(range(256)) * 40
INITRD = b"\x07\x07\x01" + b"I" * 4997


def _report(mac=MAC1, **extra):
    body = {"mac": mac, "addresses": [{"ifname": "eth0", "mac": mac, "address": "127.0.0.1", "prefix": 8}],
            "ssh_host_keys": [KEY], "hostname": "nixos", "uptime": 5.0}
    body.update(extra)
    return body


async def _start(tmp_path, http_client=None, hosts=None, **kwargs):
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(KERNEL)
    initrd = tmp_path / "initrd"
    initrd.write_bytes(INITRD)
    (tmp_path / "initrd.gz").write_bytes(b"not the initrd")  # must never be served instead
    ipxe_dir = tmp_path / "ipxe"
    ipxe_dir.mkdir()
    (ipxe_dir / "ipxe.efi").write_bytes(b"MZ" + b"\0" * 1000)
    (tmp_path / "secret").write_bytes(b"secret")
    registry = Registry(hosts or [Host("node1", MAC1), Host("node2", MAC2), Host("arm1", ARM, arch="aarch64-linux")])
    events = []
    options = dict(
        artifacts={"x86_64-linux": {"kernel": kernel, "initrd": initrd}},
        ipxe_files=nhttp.ipxe_files_from_dir(str(ipxe_dir)),
        extra_cmdline="console=ttyS0,115200",
        on_event=events.append,
        admin_token=ADMIN,
        max_wait=2.0,
        run_id="run-1",
    )
    options.update(kwargs)
    app = nhttp.create_app(registry, **options)
    client = http_client(app, host="127.0.0.1") if http_client else TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return types.SimpleNamespace(client=client, registry=registry, events=events, app=app)


@pytest_asyncio.fixture
async def env(tmp_path, http_client):
    ns = await _start(tmp_path, http_client)
    yield ns
    await ns.client.close()


def frozen(registry):
    snap = registry.snapshot()
    snap.pop("rejected_phone_homes")
    return copy.deepcopy(snap)


async def eventually(predicate, timeout=2.0):
    """Artifact events are recorded once the body has left the server, just after the client has it."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return predicate()


def bearer(token):
    return {"Authorization": "Bearer " + token}


# -- iPXE script ---------------------------------------------------------------


async def test_script_for_known_host(env):
    resp = await env.client.get("/boot/%s/script.ipxe" % MAC1)
    assert resp.status == 200
    text = await resp.text()
    port = env.client.server.port
    assert text.startswith("#!ipxe\n")
    assert "kernel http://127.0.0.1:%d/boot/%s/kernel initrd=initrd console=ttyS0,115200 " % (port, MAC1) in text
    assert "nixie.api=http://127.0.0.1:%d/api/v1 " % port in text
    assert "nixie.token=%s " % env.registry.token_for(MAC1) in text
    assert env.registry.state(MAC1) == "script_served"
    assert env.events[-1]["event"] == "script_served" and env.events[-1]["mac"] == MAC1


async def test_a_static_network_reaches_only_its_hosts_script(tmp_path):
    static = HostNetwork("10.20.0.50/24", MAC1, gateway="10.20.0.1", nameservers=("10.20.0.53",), vlan=20)
    ns = await _start(tmp_path, hosts=[Host("node1", MAC1, network=static), Host("node2", MAC2)])
    try:
        mine = await (await ns.client.get("/boot/%s/script.ipxe" % MAC1)).text()
        other = await (await ns.client.get("/boot/%s/script.ipxe" % MAC2)).text()
    finally:
        await ns.client.close()
    assert (" console=ttyS0,115200 ifname=nixie0:%s vlan=nixie0.20:nixie0 ip=10.20.0.50::10.20.0.1:255.255.255.0:node1:nixie0.20:none "
            "nameserver=10.20.0.53 nixie.api=" % MAC1) in mine
    assert "ip=" not in other.replace("nixie.api=", "") and "nixie0" not in other


async def test_each_architecture_boots_its_own_init(tmp_path):
    arm_kernel = tmp_path / "Image"
    arm_kernel.write_bytes(b"arm")
    ns = await _start(tmp_path, artifacts={
        "x86_64-linux": {"kernel": tmp_path / "bzImage", "initrd": tmp_path / "initrd", "cmdline": "init=/nix/store/x86-system/init"},
        "aarch64-linux": {"kernel": arm_kernel, "initrd": tmp_path / "initrd", "cmdline": "init=/nix/store/arm-system/init"},
    })
    try:
        x86 = await (await ns.client.get("/boot/%s/script.ipxe" % MAC1)).text()
        arm = await (await ns.client.get("/boot/%s/script.ipxe" % ARM)).text()
    finally:
        await ns.client.close()
    assert "initrd=initrd init=/nix/store/x86-system/init console=ttyS0,115200 " in x86 and "arm-system" not in x86
    assert "initrd=initrd init=/nix/store/arm-system/init console=ttyS0,115200 " in arm and "x86-system" not in arm


async def test_script_head_records_nothing(env):
    resp = await env.client.head("/boot/%s/script.ipxe" % MAC1)
    assert resp.status == 200
    assert env.registry.state(MAC1) == "known" and env.events == []


async def test_script_mac_spelling_is_normalised(env):
    resp = await env.client.get("/boot/52-54-00-12-34-01/script.ipxe")
    assert resp.status == 200
    assert env.registry.state(MAC1) == "script_served"


async def test_script_for_unknown_mac(env):
    resp = await env.client.get("/boot/02:00:00:00:00:09/script.ipxe")
    assert resp.status == 404
    assert "not a host of this run" in await resp.text()
    assert env.registry.ignored_snapshot()["macs"]["02:00:00:00:00:09"]["events"] == {"script_requested": 1}


async def test_script_for_bad_mac(env):
    resp = await env.client.get("/boot/nonsense/script.ipxe")
    assert resp.status == 400
    assert "not a MAC address" in await resp.text()


async def test_script_refused_once_finished(env):
    env.registry.phone_home(env.registry.token_for(MAC1), _report(), "127.0.0.1")
    resp = await env.client.get("/boot/%s/script.ipxe" % MAC1)
    assert resp.status == 404
    assert "already phoned_home" in await resp.text()
    env.registry.fail(MAC2, "gave up")
    resp = await env.client.get("/boot/%s/kernel" % MAC2)
    assert resp.status == 404


async def test_configured_base_url(tmp_path):
    ns = await _start(tmp_path, base_url="http://192.0.2.1:8080/")
    try:
        text = await (await ns.client.get("/boot/%s/script.ipxe" % MAC1)).text()
        assert "kernel http://192.0.2.1:8080/boot/%s/kernel" % MAC1 in text
        assert "nixie.api=http://192.0.2.1:8080/api/v1 " in text
    finally:
        await ns.client.close()


async def test_unsafe_extra_cmdline_fails_at_creation(tmp_path):
    with pytest.raises(ValueError):
        nhttp.create_app(Registry([]), artifacts={}, extra_cmdline="a ${b}")


# -- kernel, initrd, iPXE binaries --------------------------------------------------


async def test_kernel_full(env):
    resp = await env.client.get("/boot/%s/kernel" % MAC1)
    assert resp.status == 200
    assert await resp.read() == KERNEL
    assert resp.headers["Content-Length"] == str(len(KERNEL))
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert await eventually(lambda: env.registry.state(MAC1) == "kernel_served")
    event = env.events[-1]
    assert event["event"] == "kernel_served" and event["bytes"] == len(KERNEL) and event["status"] == 200


async def test_kernel_range(env):
    resp = await env.client.get("/boot/%s/kernel" % MAC1, headers={"Range": "bytes=100-199"})
    assert resp.status == 206
    assert await resp.read() == KERNEL[100:200]
    assert resp.headers["Content-Range"] == "bytes 100-199/%d" % len(KERNEL)
    assert await eventually(lambda: env.events)
    assert env.events[-1]["range"] == "bytes=100-199" and env.events[-1]["status"] == 206
    resp = await env.client.get("/boot/%s/kernel" % MAC1, headers={"Range": "bytes=-10"})
    assert resp.status == 206 and await resp.read() == KERNEL[-10:]


async def test_kernel_range_not_satisfiable(env):
    resp = await env.client.get("/boot/%s/kernel" % MAC1, headers={"Range": "bytes=999999-"})
    assert resp.status == 416
    await asyncio.sleep(0.1)
    assert env.registry.state(MAC1) == "known" and env.events == []


async def test_kernel_head(env):
    resp = await env.client.head("/boot/%s/kernel" % MAC1)
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(KERNEL))
    assert await resp.read() == b""
    await asyncio.sleep(0.1)
    assert env.registry.state(MAC1) == "known" and env.events == []


async def test_initrd_ignores_compressed_sibling(env):
    resp = await env.client.get("/boot/%s/initrd" % MAC1, headers={"Accept-Encoding": "gzip, br"},
                                auto_decompress=False)
    assert resp.status == 200
    assert "Content-Encoding" not in resp.headers
    assert await resp.read() == INITRD
    assert await eventually(lambda: env.registry.state(MAC1) == "initrd_served")


async def test_artifact_missing_for_arch(env):
    resp = await env.client.get("/boot/%s/kernel" % ARM)
    assert resp.status == 404
    assert "aarch64-linux" in await resp.text()


async def test_artifact_unknown_mac(env):
    resp = await env.client.get("/boot/02:00:00:00:00:09/initrd")
    assert resp.status == 404


async def test_ipxe_binary_over_http(env):
    resp = await env.client.head("/ipxe/ipxe.efi")
    assert resp.status == 200 and resp.headers["Content-Length"] == "1002"
    assert resp.headers["Content-Type"] == "application/efi"
    assert env.events == []
    resp = await env.client.get("/ipxe/ipxe.efi")
    assert resp.status == 200 and (await resp.read()).startswith(b"MZ")
    assert await eventually(lambda: env.events)
    assert env.events[-1]["event"] == "ipxe_file_served" and env.events[-1]["file"] == "ipxe.efi"
    for path in ("/ipxe/undionly.kpxe", "/ipxe/..%2Fsecret", "/ipxe/%2E%2E%2Fsecret"):
        resp = await env.client.get(path)
        assert resp.status == 404, path


# -- phone-home ----------------------------------------------------------------------


async def test_phone_home_accepted_then_idempotent(env):
    token = env.registry.token_for(MAC1)
    resp = await env.client.post("/api/v1/phone-home", json=_report(), headers=bearer(token))
    assert resp.status == 200
    body = await resp.json()
    assert body == {"ok": True, "host": "node1", "mac": MAC1, "state": "phoned_home", "address": "127.0.0.1",
                    "seq": 1, "repeat": False}
    assert env.events[-1]["event"] == "phoned_home"
    seq = env.registry.seq
    resp = await env.client.post("/api/v1/phone-home", json=_report(uptime=9.0), headers=bearer(token))
    assert resp.status == 200
    assert (await resp.json())["repeat"] is True
    assert env.registry.seq == seq


async def test_phone_home_missing_token(env):
    before = frozen(env.registry)
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
        resp = await env.client.post("/api/v1/phone-home", json=_report(), headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        body = await resp.json()
        assert body["ok"] is False and body["code"] == "token_missing" and "Authorization" in body["error"]
    assert frozen(env.registry) == before


async def test_phone_home_wrong_token(env):
    before = frozen(env.registry)
    resp = await env.client.post("/api/v1/phone-home", json=_report(), headers=bearer("x" * 32))
    assert resp.status == 403
    assert (await resp.json())["code"] == "token_rejected"
    assert frozen(env.registry) == before
    assert env.events[-1]["event"] == "phone_home_rejected"


async def test_phone_home_other_hosts_token(env):
    before = frozen(env.registry)
    resp = await env.client.post("/api/v1/phone-home", json=_report(MAC1), headers=bearer(env.registry.token_for(MAC2)))
    assert resp.status == 403
    assert frozen(env.registry) == before


async def test_phone_home_replay_after_finished(env):
    token = env.registry.token_for(MAC1)
    assert (await env.client.post("/api/v1/phone-home", json=_report(), headers=bearer(token))).status == 200
    before = frozen(env.registry)
    resp = await env.client.post("/api/v1/phone-home", json=_report(hostname="other", addresses=[]), headers=bearer(token))
    assert resp.status == 409
    body = await resp.json()
    assert body["code"] == "already_finished" and "new run" in body["error"]
    assert frozen(env.registry) == before


async def test_phone_home_bad_bodies(env):
    token = env.registry.token_for(MAC1)
    before = frozen(env.registry)
    resp = await env.client.post("/api/v1/phone-home", data=b"{not json", headers=bearer(token))
    assert resp.status == 400 and (await resp.json())["code"] == "bad_json"
    resp = await env.client.post("/api/v1/phone-home", data=b"\xff\xfe", headers=bearer(token))
    assert resp.status == 400
    resp = await env.client.post("/api/v1/phone-home", json=_report(ssh_host_keys=[KEY] * 20), headers=bearer(token))
    assert resp.status == 400
    body = await resp.json()
    assert body["code"] == "report_invalid" and "limit" in body["error"]
    resp = await env.client.post("/api/v1/phone-home", data=b"x" * (nhttp.DEFAULT_MAX_BODY + 1), headers=bearer(token))
    assert resp.status == 413
    body = await resp.json()
    assert body["ok"] is False and body["code"] == "body_too_large"
    assert frozen(env.registry) == before


# -- queries and long-poll ------------------------------------------------------------


async def test_hosts_listing_has_no_tokens(env):
    await env.client.get("/boot/%s/script.ipxe" % MAC1)
    env.registry.phone_home(env.registry.token_for(MAC2), _report(MAC2), "127.0.0.1")
    resp = await env.client.get("/api/v1/hosts")
    assert resp.status == 200
    text = await resp.text()
    body = json.loads(text)
    assert body["ok"] is True and body["run_id"] == "run-1" and body["timed_out"] is False
    assert [h["name"] for h in body["hosts"]] == ["node1", "node2", "arm1"]
    assert body["hosts"][1]["ssh_host_keys"] == [KEY]
    for mac in (MAC1, MAC2, ARM):
        assert env.registry.token_for(mac) not in text
        one = await (await env.client.get("/api/v1/hosts/" + mac)).text()
        assert env.registry.token_for(mac) not in one


async def test_host_errors(env):
    resp = await env.client.get("/api/v1/hosts/02:00:00:00:00:09")
    assert resp.status == 404 and (await resp.json())["code"] == "unknown_host"
    resp = await env.client.get("/api/v1/hosts/zz")
    assert resp.status == 400 and (await resp.json())["code"] == "bad_mac"
    for query in ("wait=abc&after=0", "wait=-1&after=0", "wait=nan&after=0", "wait=1&after=x", "wait=1&after=-2"):
        resp = await env.client.get("/api/v1/hosts/%s?%s" % (MAC1, query))
        assert resp.status == 400, query
        assert (await resp.json())["code"] == "bad_query"


async def test_long_poll_wakes_on_event(env):
    after = env.registry.seq

    async def later():
        await asyncio.sleep(0.2)
        env.registry.record(MAC2, "offered")  # another host: must not wake MAC1's poll
        await asyncio.sleep(0.2)
        env.registry.record(MAC1, "offered")

    started = time.monotonic()
    task = asyncio.ensure_future(later())
    resp = await env.client.get("/api/v1/hosts/%s?wait=2&after=%d" % (MAC1, after))
    elapsed = time.monotonic() - started
    await task
    body = await resp.json()
    assert body["timed_out"] is False
    assert body["host"]["state"] == "offered" and body["host"]["last_seq"] == after + 2
    assert 0.35 <= elapsed < 1.5


async def test_long_poll_returns_at_once_when_already_newer(env):
    env.registry.record(MAC1, "offered")
    started = time.monotonic()
    body = await (await env.client.get("/api/v1/hosts/%s?wait=2&after=0" % MAC1)).json()
    assert body["timed_out"] is False and time.monotonic() - started < 0.5


async def test_long_poll_times_out_and_is_capped(env):
    started = time.monotonic()
    body = await (await env.client.get("/api/v1/hosts/%s?wait=0.3&after=%d" % (MAC1, env.registry.seq))).json()
    elapsed = time.monotonic() - started
    assert body["timed_out"] is True and body["ok"] is True
    assert 0.3 <= elapsed < 1.0
    started = time.monotonic()
    body = await (await env.client.get("/api/v1/hosts?wait=9999&after=%d" % env.registry.seq)).json()
    assert body["timed_out"] is True
    assert 2.0 <= time.monotonic() - started < 3.0  # max_wait=2 in the fixture


async def test_long_poll_all_hosts_wakes_from_another_thread(env):
    after = env.registry.seq
    timer = threading.Timer(0.2, env.registry.record, args=(ARM, "offered"))
    timer.start()
    started = time.monotonic()
    body = await (await env.client.get("/api/v1/hosts?wait=2&after=%d" % after)).json()
    timer.join()
    assert body["timed_out"] is False and body["seq"] == after + 1
    assert time.monotonic() - started < 1.5


async def test_health(env):
    body = await (await env.client.get("/api/v1/health")).json()
    assert body == {"ok": True, "service": "nixie.metal", "run_id": "run-1", "seq": 0, "all_done": False}


async def test_api_errors_are_json(env):
    resp = await env.client.get("/api/v1/phone-home")
    assert resp.status == 405
    body = await resp.json()
    assert body["ok"] is False and body["code"] == "method_not_allowed"
    resp = await env.client.get("/api/v1/nope")
    assert resp.status == 404 and (await resp.json())["code"] == "not_found"


# -- stop ----------------------------------------------------------------------------


async def test_stop(env):
    state = nhttp.get_state(env.app)
    resp = await env.client.post("/api/v1/stop")
    assert resp.status == 401
    resp = await env.client.post("/api/v1/stop", headers=bearer("wrong"))
    assert resp.status == 403
    assert not state.api.stop_requested.is_set()
    resp = await env.client.post("/api/v1/stop", json={"reason": "playbook done"}, headers=bearer(ADMIN))
    assert resp.status == 202
    assert await resp.json() == {"ok": True, "stopping": True, "reason": "playbook done"}
    assert state.api.stop_requested.is_set() and state.api.stop_reason == "playbook done"
    assert env.events[-1]["event"] == "stop_requested"


async def test_stop_disabled_without_admin_token(tmp_path):
    ns = await _start(tmp_path, admin_token=None)
    try:
        resp = await ns.client.post("/api/v1/stop", headers=bearer(ADMIN))
        assert resp.status == 403 and (await resp.json())["code"] == "stop_disabled"
    finally:
        await ns.client.close()


# -- logging -------------------------------------------------------------------------


async def test_tokens_never_logged(env, caplog):
    caplog.set_level(logging.DEBUG)
    token = env.registry.token_for(MAC1)
    await env.client.get("/boot/%s/script.ipxe" % MAC1)
    await env.client.post("/api/v1/phone-home", json=_report(), headers=bearer("y" * 32))
    await env.client.post("/api/v1/phone-home", json=_report(), headers=bearer(token))
    await env.client.post("/api/v1/stop", headers=bearer(ADMIN))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "phoned home" in text
    assert token not in text and ADMIN not in text and "y" * 32 not in text


async def test_hook_errors_do_not_break_requests(tmp_path):
    def broken(_event):
        raise RuntimeError("hook")
    ns = await _start(tmp_path, on_event=broken)
    try:
        resp = await ns.client.get("/boot/%s/script.ipxe" % MAC1)
        assert resp.status == 200
    finally:
        await ns.client.close()
