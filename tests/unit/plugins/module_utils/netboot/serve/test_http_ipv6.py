# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A machine is served over the family it uses: the script and the installer's API URL follow the request (loopback only)."""

from __future__ import annotations

import pytest

aiohttp = pytest.importorskip("aiohttp")
pytest_asyncio = pytest.importorskip("pytest_asyncio")

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import http as nhttp  # noqa: E402
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.registry import Registry  # noqa: E402

pytestmark = pytest.mark.asyncio

MAC = "52:54:00:12:34:61"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAwq+EfnD2DZmIrGP9ja8hP2GBrvXDwB95xkcbYRkgxX"


async def serve(tmp_path, host):
    (tmp_path / "bzImage").write_bytes(b"k")
    (tmp_path / "initrd").write_bytes(b"i")
    registry = Registry([Host("v6", MAC)])
    app = nhttp.create_app(registry, {"x86_64-linux": {"kernel": tmp_path / "bzImage", "initrd": tmp_path / "initrd"}},
                           base_url="http://10.0.0.1:8080", base_url6="http://[fd77::1]:8080")
    client = TestClient(TestServer(app, host=host))
    await client.start_server()
    return client, registry


@pytest.mark.parametrize("host, base, setting", [
    ("127.0.0.1", "http://10.0.0.1:8080", "${ip}"),
    ("::1", "http://[fd77::1]:8080", "${ip6}"),
])
async def test_script_follows_the_family_of_the_request(tmp_path, host, base, setting):
    client, registry = await serve(tmp_path, host)
    try:
        response = await client.get("/boot/%s/script.ipxe" % MAC)
        script = await response.text()
    finally:
        await client.close()
    assert response.status == 200
    assert "kernel %s/boot/%s/kernel " % (base, MAC) in script
    assert "nixie.api=%s/api/v1 " % base in script
    assert "isset %s && goto nixie_net_ok" % setting in script
    assert registry.state(MAC) == "script_served"


async def test_phone_home_over_ipv6_records_the_ipv6_peer(tmp_path):
    client, registry = await serve(tmp_path, "::1")
    try:
        response = await client.post("/api/v1/phone-home", headers={"Authorization": "Bearer " + registry.token_for(MAC)},
                                     json={"mac": MAC, "addresses": [{"ifname": "eth0", "mac": MAC, "address": "fd77::5054:ff:fe12:3461",
                                                                      "prefix": 64}], "ssh_host_keys": [KEY]})
        host = (await (await client.get("/api/v1/hosts/%s" % MAC)).json())["host"]
    finally:
        await client.close()
    assert response.status == 200
    assert host["state"] == "phoned_home" and host["address"] == "::1"
