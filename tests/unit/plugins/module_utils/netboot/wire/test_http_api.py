# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent API's request reader and answer writer on bytes alone (no socket)."""

from __future__ import annotations

import json

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import api as agent_api
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import http_api
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.netboot.agent_samples import REPORT, phone_home


# -- which requests the reader takes (pure) ----------------------------------------------------


def test_a_curl_phone_home_is_read_whole():
    data = phone_home("tok")
    head = http_api.read_head(data, 65536)
    assert isinstance(head, http_api.RequestHead)
    assert (head.method, head.path, head.version, head.content_length) == ("POST", "/api/v1/phone-home", "HTTP/1.1", len(REPORT))
    assert head.headers["authorization"] == "Bearer tok" and head.headers["content-type"] == "application/json"
    assert data[head.size:] == REPORT


def test_a_long_poll_has_its_query_and_a_decoded_path():
    head = http_api.read_head(b"GET /api/v1/hosts/52%3A54%3A00%3A12%3A34%3A01?wait=25&after=3&wait=1 HTTP/1.0\r\n\r\n", 100)
    assert head.path == "/api/v1/hosts/52:54:00:12:34:01"
    assert head.query == {"wait": "25", "after": "3"}  # the first of a repeated parameter, as aiohttp's query.get
    assert head.content_length == 0 and not head.expect_continue


def test_bytes_in_pieces_need_more_until_the_head_is_whole():
    data = phone_home("tok")
    head = http_api.read_head(data, 65536)
    for cut in (1, 4, 9, 30, head.size - 1):
        assert http_api.read_head(data[:cut], 65536) is http_api.NEED_MORE
    assert http_api.read_head(data[:head.size], 65536) == head


@pytest.mark.parametrize("data", [
    b"GET /boot/52:54:00:12:34:01/script.ipxe HTTP/1.1\r\n\r\n",           # not the API: aiohttp serves it
    b"GET /ipxe/ipxe.efi HTTP/1.1\r\n\r\n",
    b"PUT /api/v1/phone-home HTTP/1.1\r\n\r\n",                             # another method: aiohttp's 405 route
    b"get /api/v1/health HTTP/1.1\r\n\r\n",
    b"GET /api/v1/health HTTP/2.0\r\n\r\n",
    b"GET /api/v1/health\r\n\r\n",
    b"GET  /api/v1/health HTTP/1.1\r\n\r\n",
    b"GET /api/v1/he alth HTTP/1.1\r\n\r\n",
    b"GET /api/v1/health#x HTTP/1.1\r\n\r\n",
    b"GET /api/v1/hosts/%ff HTTP/1.1\r\n\r\n",                              # not UTF-8 once decoded
    b"GET /api/v1/health HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",              # obs-fold
    b"GET /api/v1/health HTTP/1.1\r\nX : a\r\n\r\n",                       # space before the colon
    b"GET /api/v1/health HTTP/1.1\r\nX: a\x00b\r\n\r\n",                   # a control character in a value
    b"GET /api/v1/health HTTP/1.1\r\nnocolon\r\n\r\n",
    b"POST /api/v1/phone-home HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /api/v1/phone-home HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
    b"POST /api/v1/phone-home HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST /api/v1/phone-home HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n",   # a digit to str.isdigit, not to HTTP
    b"POST /api/v1/phone-home HTTP/1.1\r\nContent-Length: 65537\r\n\r\n",  # over the limit: aiohttp answers 413
    b"POST /api/v1/phone-home HTTP/1.1\r\nExpect: something\r\n\r\n",
    b"GET /api/v1/health HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
    b"GET /api/v1/health HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n",   # a head over MAX_HEAD
    b"GET /api/v1/health HTTP/1.1\r\nX: " + b"a" * 9000,                 # ... even before it ends
])
def test_what_the_reader_does_not_take_goes_to_aiohttp(data):
    assert http_api.read_head(data, 65536) is http_api.HAND_OVER


def test_an_answer_on_the_wire():
    answer = agent_api.ApiAnswer(401, {"ok": False, "code": "token_missing", "error": "no token"}, agent_api.BEARER_CHALLENGE)
    wire = http_api.encode_answer(answer, date="Thu, 26 Nov 2026 16:00:00 GMT")
    head, body = wire.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 401 Unauthorized"
    assert "Content-Length: %d" % len(body) in lines and "Connection: close" in lines
    assert 'WWW-Authenticate: Bearer realm="nixie.metal"' in lines
    assert json.loads(body) == answer.payload
    assert http_api.encode_answer(answer, head_only=True).endswith(b"\r\n\r\n")
