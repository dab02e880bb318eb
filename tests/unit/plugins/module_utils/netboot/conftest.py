# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTTP app served two ways, so every HTTP test runs against both.

``aiohttp``: the app alone, as aiohttp's TestServer serves it (every API
request goes through the app's ``/api/`` route). ``server``: the way the
netboot server serves it, behind the API's own connections
(``http.Listeners``), with a client that opens a connection per request as
the agent and wait_for_agent do, so every API request is answered in front
of aiohttp and every boot request is handed to it.
"""

from __future__ import annotations

import pytest

aiohttp = pytest.importorskip("aiohttp")

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402
from yarl import URL  # noqa: E402

from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import http as nhttp  # noqa: E402


class ListenersTestServer(TestServer):
    """aiohttp's TestServer, listening through ``http.Listeners`` as the netboot server does."""

    async def start_server(self, loop=None, **kwargs):
        if self.runner:
            return
        self.runner = nhttp.create_runner(self.app)
        await self.runner.setup()
        self.listeners = nhttp.Listeners(self.runner)
        await self.listeners.listen(self.host, self.port or 0, 128)
        self.port = self.listeners.addresses[0][1]
        self.scheme = "http"
        self._root = URL("http://%s:%d" % ("[%s]" % self.host if ":" in self.host else self.host, self.port))

    async def close(self):
        if self.started and not self.closed:
            self.listeners.stop_accepting()
            await self.runner.cleanup()
            await self.listeners.close()
            self._root = None
            self.port = None
            self._closed = True


def aiohttp_client(app, host="127.0.0.1"):
    return TestClient(TestServer(app, host=host))


def listeners_client(app, host="127.0.0.1"):
    return TestClient(ListenersTestServer(app, host=host), connector=aiohttp.TCPConnector(force_close=True))


@pytest.fixture(params=["aiohttp", "server"])
def http_client(request):
    """Makes an (unstarted) aiohttp TestClient for an app: ``http_client(app, host=...)``."""
    return aiohttp_client if request.param == "aiohttp" else listeners_client
