# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent API's answers, whatever HTTP server carried the request: routes, shapes, statuses.

:class:`ApiRequest` (method, path, query, headers, whole body, peer) and
:class:`ApiAnswer` (status, JSON payload, extra headers) are the records both
front ends speak; :func:`endpoint` routes a request, :func:`status_of` gives
the HTTP status of a refusal's code (the registry knows no HTTP), and the
failure helpers give the API's one error shape. The service that answers
with the run's state, :class:`..serve.api_service.AgentApi`, is served by
:mod:`..serve.api_http` (most API connections, because a rack's phone-homes
arrive at once and aiohttp's work per connection was most of their cost,
docs/performance.md) and by the aiohttp app of :mod:`..serve.http`.
Endpoints and JSON shapes: docs/api.md. Tokens never appear in an answer or
a log line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import trust

API_PREFIX = "/api/v1"
DEFAULT_MAX_WAIT = 60.0
DEFAULT_MAX_BODY = 64 * 1024
# How long the body of a phone-home or stop request may take to arrive: a client that sends
# half a request and waits must not hold a connection for long (docs/reliability.md).
BODY_TIMEOUT = 15.0
BEARER_CHALLENGE = (("WWW-Authenticate", 'Bearer realm="nixie.metal"'),)
_HOST_PATH = re.compile(r"^%s/hosts/([^/]+)$" % re.escape(API_PREFIX))
# Endpoints by path: {method: handler name}. HEAD is answered as GET.
_ENDPOINTS = {
    API_PREFIX + "/health": {"GET": "health"},
    API_PREFIX + "/phone-home": {"POST": "phone_home"},
    API_PREFIX + "/hosts": {"GET": "hosts"},
    API_PREFIX + "/stop": {"POST": "stop"},
}
_HOST_ENDPOINT = {"GET": "host"}
# HTTP status of each refusal code of the registry (decide/agent_report.py); a code not listed is a 400.
_STATUS_OF_CODE = {
    "token_missing": 401,
    "token_rejected": 403,
    "report_invalid": 400,
    "already_finished": 409,
    "unknown_host": 404,
    trust.IMPOSTOR: 403,
    trust.UNVERIFIED: 403,
    trust.CLAIMED: 403,
}


@dataclass
class ApiRequest:
    """One API request as the front end read it: ``headers`` have lower-case names, ``body`` is whole."""

    method: str
    path: str
    query: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    peer: str | None = None


@dataclass
class ApiAnswer:
    """Status, JSON payload and extra ``(name, value)`` headers of an answer."""

    status: int
    payload: dict
    headers: tuple = ()

    def body(self) -> bytes:
        return json.dumps(self.payload, sort_keys=True).encode("utf-8")


def status_of(code: str) -> int:
    """The HTTP status of a refusal's ``code`` (:class:`~.agent_report.RegistryError`)."""
    return _STATUS_OF_CODE.get(code, 400)


def failure(status: int, message: str, code: str, headers: Iterable[tuple[str, str]] = ()) -> ApiAnswer:
    """The API's error shape: ``{"ok": false, "error": <what to do>, "code": <stable name>}``."""
    return ApiAnswer(status, {"ok": False, "error": message, "code": code}, tuple(headers))


def body_too_large(max_body: int) -> ApiAnswer:
    return failure(413, "the request body is larger than %d bytes; send a smaller report" % max_body, "body_too_large")


def body_timeout() -> ApiAnswer:
    return failure(408, "the request body did not arrive within %gs; send it in one go" % BODY_TIMEOUT, "body_timeout")


def internal_error() -> ApiAnswer:
    return failure(500, "internal server error; see the pxe_server log", "internal")


def decode_json_body(raw: bytes) -> Any:
    """The JSON document in a request body; ValueError when it is not UTF-8 JSON.

    Nesting too deep for the decoder (a few thousand ``[`` fit in the body limit) is
    refused like any other bad JSON instead of escaping as a RecursionError.
    """
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ValueError("the JSON document nests too deep") from None


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The Bearer token of ``Authorization`` in ``headers`` (lower-case names), or None."""
    parts = headers.get("authorization", "").strip().split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "bearer" or not parts[1].strip():
        return None
    return parts[1].strip()


def wait_params(query: Mapping[str, str], max_wait: float) -> tuple[float, int | None]:
    """``(wait seconds, after seq or None)`` of a long-poll query; ValueError with a message."""
    try:
        wait = float(query.get("wait", "0"))
    except ValueError:
        raise ValueError("'wait' must be a number of seconds (at most %g)" % max_wait)
    if math.isnan(wait) or wait < 0:
        raise ValueError("'wait' must be a number of seconds >= 0")
    wait = min(wait, max_wait)
    after = query.get("after")
    if after is None:
        return wait, None
    try:
        after = int(after)
    except ValueError:
        raise ValueError("'after' must be an event sequence number (an integer >= 0), e.g. the last_seq of an earlier answer")
    if after < 0:
        raise ValueError("'after' must be an integer >= 0")
    return wait, after


def endpoint(method: str, path: str) -> tuple[str, str | None] | ApiAnswer:
    """``(handler name, path MAC or None)`` for a request, or the error :class:`ApiAnswer` (404/405)."""
    methods = _ENDPOINTS.get(path)
    mac = None
    if methods is None:
        match = _HOST_PATH.match(path)
        if match is None:
            return failure(404, "no endpoint %s; the API lives under %s (see docs/api.md)" % (path[:200], API_PREFIX), "not_found")
        methods, mac = _HOST_ENDPOINT, match.group(1)
    name = methods.get("GET" if method == "HEAD" else method)
    if name is None:
        allowed = ", ".join(sorted(set(methods) | ({"HEAD"} if "GET" in methods else set())))
        return failure(405, "%s is not allowed on %s; see docs/api.md for the endpoints" % (method[:20], path[:200]),
                       "method_not_allowed", headers=(("Allow", allowed),))
    return name, mac
