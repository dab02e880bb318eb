# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP/1.1 as the agent API speaks it in front of aiohttp: a request head read, an answer written.

Pure: :func:`read_head` says what to do with a connection's first bytes (a
:class:`RequestHead`, :data:`NEED_MORE` or :data:`HAND_OVER` to aiohttp) and
:func:`encode_answer` gives an answer's bytes. The connections themselves are
:mod:`..serve.api_http`.
"""

from __future__ import annotations

import email.utils
import http
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

# Largest request head (request line + headers) this reader takes; larger ones go to aiohttp.
MAX_HEAD = 8192
NEED_MORE = "need more"
HAND_OVER = "hand over"
_PREFIXES = (b"GET /api/", b"HEAD /api/", b"POST /api/")
# A head this reader takes: a request line (method, a target of visible ASCII without "#",
# version), then header lines of an RFC 9110 token, a colon and a value without control
# characters. Anything else (obs-fold, a space before the colon, ...) goes to aiohttp.
_HEAD = re.compile(r"(GET|HEAD|POST) (/api/[\x21\x22\x24-\x7e]*) (HTTP/1\.[01])"
                   r"((?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*)*)")
_HEADER_FIELD = re.compile(r"\r\n([^:]+):[ \t]*([^\r]*?)[ \t]*(?=\r\n|$)")
_REASONS = {status.value: status.phrase for status in http.HTTPStatus}


@dataclass
class RequestHead:
    """A request head this reader takes: ``headers`` by lower-case name (first of repeats)."""

    method: str
    target: str
    version: str
    path: str
    query: dict
    headers: dict
    content_length: int
    expect_continue: bool
    size: int


def read_head(data: bytes | bytearray | memoryview, max_body: int) -> RequestHead | str:
    """What to do with the first bytes of a connection: a :class:`RequestHead`, NEED_MORE or HAND_OVER.

    Pure. HAND_OVER means "not a request this reader takes": aiohttp gets the
    bytes and answers them, so a refusal here is never an error to the client.
    """
    start = bytes(data[:10])
    if not any(prefix.startswith(start[:len(prefix)]) for prefix in _PREFIXES):
        return HAND_OVER
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return NEED_MORE if len(data) <= MAX_HEAD else HAND_OVER
    if end + 4 > MAX_HEAD:
        return HAND_OVER
    head = _HEAD.fullmatch(bytes(data[:end]).decode("latin-1"))
    if head is None:
        return HAND_OVER
    method, target, version, fields = head.groups()
    raw_path, dummy, raw_query = target.partition("?")
    try:
        path = urllib.parse.unquote(raw_path, errors="strict") if "%" in raw_path else raw_path
    except UnicodeDecodeError:
        return HAND_OVER
    query = {}
    if raw_query:
        for key, value in urllib.parse.parse_qsl(raw_query, keep_blank_values=True):
            query.setdefault(key, value)
    headers = {}
    for name, value in _HEADER_FIELD.findall(fields):
        name = name.lower()
        if name in headers:
            if name == "content-length":
                return HAND_OVER
            continue
        headers[name] = value
    if "transfer-encoding" in headers or "upgrade" in headers:
        return HAND_OVER
    expect = headers.get("expect")
    if expect is not None and expect.lower() != "100-continue":
        return HAND_OVER
    length = headers.get("content-length", "0")
    if not length.isdigit() or len(length) > 12 or not length.isascii() or int(length) > max_body:
        return HAND_OVER
    return RequestHead(method=method, target=target, version=version, path=path, query=query, headers=headers,
                       content_length=int(length), expect_continue=expect is not None, size=end + 4)


def encode_answer(answer: Any, head_only: bool = False, date: str | None = None) -> bytes:
    """The bytes of an :class:`~..decide.api.ApiAnswer` on the wire, with ``Connection: close``."""
    body = answer.body()
    lines = ["HTTP/1.1 %d %s" % (answer.status, _REASONS.get(answer.status, "Status")),
             "Content-Type: application/json; charset=utf-8",
             "Content-Length: %d" % len(body),
             "Date: %s" % (date or email.utils.formatdate(usegmt=True)),
             "Server: nixie.metal",
             "Connection: close"]
    lines.extend("%s: %s" % pair for pair in answer.headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body)
