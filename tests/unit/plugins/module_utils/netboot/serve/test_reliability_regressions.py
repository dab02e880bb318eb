# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every input a fuzz run ever found (tests/fuzz/crashes/) stays harmless, and the fixes behave as an API client sees them."""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import sys

import pytest

aiohttp = pytest.importorskip("aiohttp")
pytest_asyncio = pytest.importorskip("pytest_asyncio")

from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import api as agent_api  # noqa: E402
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import api_http  # noqa: E402
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import http as nhttp  # noqa: E402
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.registry import Registry  # noqa: E402

FUZZ = pathlib.Path(__file__).resolve().parents[5] / "fuzz"
sys.path.insert(0, str(FUZZ))

import targets  # noqa: E402  pylint: disable=wrong-import-position,import-error

MAC = "52:54:00:12:34:01"
ADMIN = "admin-token-0123456789abcdef"


def findings():
    found = []
    for path in sorted((FUZZ / "crashes").glob("*/*")):
        if path.suffix not in (".txt", ".md") and path.parent.name in targets.TARGETS:
            found.append(pytest.param(path, id="%s/%s" % (path.parent.name, path.name)))
    return found


def test_there_are_findings_to_replay():
    assert findings(), "tests/fuzz/crashes/ holds no input; the replay test below would prove nothing"


@pytest.mark.parametrize("path", findings())
def test_finding_is_harmless_now(path):
    targets.TARGETS[path.parent.name](path.read_bytes())


@pytest_asyncio.fixture
async def client(http_client):
    app = nhttp.create_app(Registry([Host("node1", MAC)]), {}, base_url="http://127.0.0.1:8080", admin_token=ADMIN)
    test_client = http_client(app, host="127.0.0.1")
    await test_client.start_server()
    test_client.registry = nhttp.get_state(app).registry
    yield test_client
    await test_client.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [b"[" * 3000, b'{"mac": ' + b"[" * 3000, b'{"a":' * 2000])
async def test_deeply_nested_json_is_bad_json_not_an_internal_error(client, caplog, body):
    caplog.set_level(logging.DEBUG)
    token = client.registry.token_for(MAC)
    answer = await client.post("/api/v1/phone-home", data=body, headers={"Authorization": "Bearer " + token})
    assert answer.status == 400
    assert (await answer.json())["code"] == "bad_json"
    stop = await client.post("/api/v1/stop", data=body, headers={"Authorization": "Bearer " + ADMIN})
    assert stop.status == 400
    assert (await stop.json())["code"] == "bad_json"
    assert client.registry.state(MAC) == "known"
    assert "Traceback" not in caplog.text and "internal error" not in caplog.text


def test_decode_json_body():
    assert agent_api.decode_json_body(b'{"mac": "x"}') == {"mac": "x"}
    for bad in (b"\xff", b"{", b"[" * 100000):
        with pytest.raises(ValueError):
            agent_api.decode_json_body(bad)
    assert json.loads(json.dumps(agent_api.decode_json_body(b"[" * 50 + b"]" * 50)))


def test_connections_that_send_no_whole_request_are_closed():
    app = nhttp.create_app(Registry([Host("node1", MAC)]), {}, base_url="http://127.0.0.1:8080")
    runner = nhttp.create_runner(app)
    assert runner._kwargs["keepalive_timeout"] == nhttp.IDLE_TIMEOUT  # pylint: disable=protected-access
    assert nhttp.IDLE_TIMEOUT <= 30 and api_http.HEAD_TIMEOUT <= 30


@pytest.mark.asyncio
async def test_a_body_that_never_comes_is_408_not_a_held_connection(client, monkeypatch):
    monkeypatch.setattr(agent_api, "BODY_TIMEOUT", 0.3)
    token = client.registry.token_for(MAC)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"POST /api/v1/phone-home HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"mac\": ")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status.startswith(b"HTTP/1.1 408"), status
    assert client.registry.state(MAC) == "known"
