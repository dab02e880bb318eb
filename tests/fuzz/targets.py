# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fuzz targets: each takes one input (bytes) and drives a parser of the server the way the server does.

A target may reject its input only the way the server does (MalformedPacket dropped, TftpError
answered, an HTTP error status); anything else that escapes, and any broken invariant (an
AssertionError), is a finding. The targets import no fuzzer, so the regression tests and the
fuzz driver (run.py) share them.

Targets:

* ``dhcp67`` / ``dhcp4011``: a datagram as the proxyDHCP socket on that port receives it, through
  ``DhcpEndpoint.datagram_received`` of a real ``NetbootServer`` (decode, classify, policy, registry,
  encode). Invariant: a reply only ever goes to a MAC of the inventory that has not finished, and
  it decodes again.
* ``tftp``: a read request and the client's later datagrams, through the same pure functions the
  TFTP server calls (parse_request, check_request, negotiate, Transfer). Invariants: only a
  registered file is ever served, never a write; DATA is exactly the file's bytes in order; a
  transfer always ends once the client goes silent.
* ``api``: the agent API's inputs (Authorization header, query string, MAC in the path, body, and
  what the kernel says about the peer: its route and the MAC its neighbour entry holds)
  through ``AgentApi`` (phone-home, host, stop), as both HTTP front ends call it. Invariants: no
  endpoint raises (a 500 is a finding too), a phone-home changes a host only with that host's own
  token and only from that host's own MAC (or a peer the segment cannot vouch for: routed, local),
  a refused peer changes no host's state, no answer carries a token.
* ``api_http``: the first bytes of a connection to the HTTP port, through the API's own request
  reader (``http_api.read_head``) and, for a request it takes, ``AgentApi`` and the answer's
  encoding. Invariants: the reader never raises, takes only GET/HEAD/POST under /api/ with a head
  within its limit and a body within the API's, reads the same head from the same bytes however
  they are split, and an answer is one well-formed HTTP/1.1 response without a token.

Inputs of ``tftp`` and ``api`` are records, each a 2-byte big-endian length then that many bytes
(see :func:`split_records`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse

from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import api as agent_api
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import api_service
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import binding, tftp
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import http_api
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import tftp as tftp_wire
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import tftp_transfer
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import trust
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.neighbours import Entry
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.netlink import Route
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import dhcp_socket
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import server as netboot_server
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.options import ServerOptions
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state import registry as registry_module
from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host, normalize_mac
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.registry import Registry

SERVER_IP = "10.77.0.1"
# Hosts of the fuzzed run: the MAC of the captured packets (fixtures), an arm64 host, a finished host.
HOSTS = (
    Host("node1", "52:54:00:12:34:01", arch="x86_64-linux"),
    Host("arm1", "52:54:00:12:34:03", arch="aarch64-linux"),
    Host("done1", "52:54:00:12:34:09", arch="x86_64-linux"),
)
FINISHED_MAC = "52:54:00:12:34:09"
# Deterministic tokens, so seeds can carry a valid one and a crash replays exactly.
TOKENS = {"node1": "tok1-AAAAAAAAAAAAAAAAAAAAAAAAAAAA", "arm1": "tok2-BBBBBBBBBBBBBBBBBBBBBBBBBBBB",
          "done1": "tok3-CCCCCCCCCCCCCCCCCCCCCCCCCCCC"}
ADMIN_TOKEN = "admin-DDDDDDDDDDDDDDDDDDDDDDDDDDDD"
DHCP_SOURCES = (("0.0.0.0", 68), ("10.77.0.173", 4011), ("10.77.0.173", 68), ("10.1.1.1", 67))
# Small stand-ins for the iPXE binaries: sizes that cross block and window boundaries.
TFTP_FILES = {
    "undionly.kpxe": bytes(range(256)) * 7 + b"tail",
    "ipxe.efi": bytes((i * 7) & 0xFF for i in range(3 * 512)),
    "snponly.efi": b"",
    "ipxe-arm64.efi": b"A" * 1469,
}
TFTP_RETRIES = 3
# Enough TFTP datagrams per input to cover a window or two; the rest of the input is ignored.
MAX_TFTP_FOLLOW_UPS = 64


def split_records(data, count):
    """Split ``data`` into at most ``count`` records, each a 2-byte big-endian length then that many bytes.

    A record cut short by the end of the input keeps what there is; bytes after ``count`` records are ignored.
    """
    records = []
    at = 0
    while len(records) < count and at + 2 <= len(data):
        size = (data[at] << 8) | data[at + 1]
        records.append(data[at + 2:at + 2 + size])
        at += 2 + size
    return records


def join_records(*records):
    """The inverse of :func:`split_records`, for building seeds."""
    return b"".join(len(record).to_bytes(2, "big") + record for record in records)


FRESH_REGISTRY_SEQ = 1


def fresh_registry():
    """The run's registry as it starts: every host known, done1 already phoned home."""
    registry = Registry(HOSTS, token_factory=iter([TOKENS[h.name] for h in HOSTS]).__next__)
    registry.phone_home(TOKENS["done1"], {"mac": FINISHED_MAC})
    assert registry.seq == FRESH_REGISTRY_SEQ
    return registry


# -- DHCP ----------------------------------------------------------------------------------------------

class _RecordingTransport:
    """Stands in for the datagram transport: keeps what the endpoint sends."""

    def __init__(self):
        self.sent = []

    def sendto(self, data, addr):
        self.sent.append((data, addr))


def _dhcp_server():
    quiet_logger(netboot_server.__name__)
    options = ServerOptions(
        hosts=HOSTS, server_ip=SERVER_IP, artifacts={},
        ipxe_files={name: "/nonexistent/" + name for name in tftp.IPXE_FILES})
    server = netboot_server.NetbootServer(options)
    registry = fresh_registry()
    server.registry = registry
    registry.add_listener(server._on_registry_event)  # pylint: disable=protected-access
    return server


_DHCP_SERVER = []


def dhcp_input(data, port):
    _CURRENT_INPUT[0] = data
    # One long-lived server, as on the wire: what it answers depends only on the inventory, and
    # its tables of events and strangers must stay bounded however many inputs it sees.
    if not _DHCP_SERVER:
        _DHCP_SERVER.append(_dhcp_server())
    server = _DHCP_SERVER[0]
    before = dict(server.counters)
    endpoint = dhcp_socket.DhcpEndpoint(server, port)
    transport = _RecordingTransport()
    endpoint.connection_made(transport)
    repeats = []
    server._schedule = lambda delay, callback, *args: repeats.append((callback, args))  # pylint: disable=protected-access
    source = DHCP_SOURCES[len(data) % len(DHCP_SOURCES)]
    endpoint.datagram_received(data, source)
    owned = {host.mac for host in HOSTS} - {FINISHED_MAC}
    assert len(transport.sent) <= 1, "one request, %d replies" % len(transport.sent)
    for callback, args in repeats:  # the repeats fall due: copies of that one reply, to the same place
        callback(*args)
    assert all(sent == transport.sent[0] for sent in transport.sent[1:]), "a repeat differs from the reply"
    for payload, address in transport.sent:
        reply = dhcp.decode(payload)
        assert reply.op == dhcp.BOOTREPLY
        assert reply.mac in owned, "a reply to %s, which is not an unfinished host of the run" % reply.mac
        assert reply.message_type in (dhcp.DHCPOFFER, dhcp.DHCPACK)
        assert address[1] in (dhcp.CLIENT_PORT, dhcp.SERVER_PORT, source[1]), address
    assert sum(server.counters.values()) - sum(before.values()) <= 1
    registry = server.registry
    # pylint: disable-next=protected-access
    assert len(registry._ignored) <= registry_module.MAX_IGNORED_MACS
    # pylint: disable-next=protected-access
    assert all(len(host.events) <= registry_module.MAX_EVENTS_PER_HOST for host in registry._hosts.values())
    assert len(server.client_macs) <= netboot_server.MAX_KNOWN_CLIENT_ADDRESSES


def dhcp67(data):
    dhcp_input(data, dhcp.SERVER_PORT)


def dhcp4011(data):
    dhcp_input(data, dhcp.PXE_PORT)


# -- TFTP ----------------------------------------------------------------------------------------------

def tftp_input(data):
    records = split_records(data, MAX_TFTP_FOLLOW_UPS + 1)
    if not records:
        return
    request = records[0]
    follow_ups = records[1:]
    # What the listener drops unanswered, it never parses.
    if len(request) < 2 or request[0] != 0 or request[1] not in (tftp_wire.OP_RRQ, tftp_wire.OP_WRQ):
        return
    try:
        parsed = tftp_wire.parse_request(request)
        name = tftp_transfer.check_request(parsed, TFTP_FILES)
    except tftp_wire.TftpError as exc:
        assert exc.code in (tftp_wire.ERR_ILLEGAL_OP, tftp_wire.ERR_ACCESS, tftp_wire.ERR_NOT_FOUND, tftp_wire.ERR_UNDEFINED), exc.code
        tftp_wire.build_error(exc.code, exc.message)   # the refusal must be sendable
        return
    assert parsed.opcode == tftp_wire.OP_RRQ, "a write request was accepted"
    assert name in TFTP_FILES and tftp_transfer.is_bare_name(name), name
    content = TFTP_FILES[name]
    negotiated = tftp_transfer.negotiate(parsed.options, len(content))
    assert tftp_wire.MIN_BLKSIZE <= negotiated.blksize <= tftp_transfer.DEFAULT_MAX_BLKSIZE
    assert 1 <= negotiated.windowsize <= tftp_transfer.MAX_WINDOWSIZE
    blocks = tftp_transfer.DataBlocks(content, negotiated.blksize) if len(data) % 2 else None
    transfer = tftp_transfer.Transfer(content, negotiated, TFTP_RETRIES, blocks)
    sent = list(transfer.start())
    for datagram in follow_ups:
        sent += transfer.on_packet(datagram)
    for dummy in range(TFTP_RETRIES + 2):
        sent += transfer.on_timeout()
    assert transfer.done, "the transfer is still running after its client went silent"
    for packet in sent:
        packet = bytes(packet)
        if packet[:2] == b"\x00\x06":
            assert transfer.oack == packet
            continue
        assert packet[:2] == b"\x00\x03", packet[:4]
        block = (packet[2] << 8) | packet[3]
        payload = packet[4:]
        # Which sequence number: the only one within the sent range with this low 16 bits.
        seq = block if block else 65536
        start = (seq - 1) * negotiated.blksize
        assert payload == content[start:start + negotiated.blksize], "DATA block %d is not the file's bytes" % block


def tftp_target(data):
    tftp_input(data)


# -- agent API -----------------------------------------------------------------------------------------

_LOOP = []


def _drive(coroutine):
    """Run a handler to its end on the harness's event loop (a hang is caught by libFuzzer's -timeout)."""
    if not _LOOP:
        _LOOP.append(asyncio.new_event_loop())
    return _LOOP[0].run_until_complete(coroutine)


# The input being run: a token the input itself carries may be echoed back (a bad MAC in an error
# message, say); any other token in an answer or a log line is a leak.
_CURRENT_INPUT = [b""]


def _secrets_not_sent():
    return [token for token in list(TOKENS.values()) + [ADMIN_TOKEN] if token.encode() not in _CURRENT_INPUT[0]]


class _TokenCheckingHandler(logging.Handler):
    """Formats every log line of the server as a real handler would, and fails on a token in one."""

    def emit(self, record):
        line = self.format(record)
        for token in _secrets_not_sent():
            assert token not in line, "a token in a log line: %s" % line


def quiet_logger(name):
    """A logger that formats and checks every line but prints nothing."""
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    if not logger.handlers:
        logger.addHandler(_TokenCheckingHandler())
    return logger


_API = None
STRANGER_MAC = "02:00:00:bb:00:02"
PEER = "10.77.0.173"
# What the kernel may say about the peer, chosen by the input's fifth record (none: the controller itself).
PEER_ROUTES = (Route("local", 1, None), Route("unicast", 3, None), Route("unicast", 3, "10.77.0.254"), None)
PEER_MACS = tuple(h.mac for h in HOSTS) + (STRANGER_MAC, None)


class _FuzzedKernel:
    """The kernel's route to the peer and its neighbour entry, as the input says (the lookup SegmentCheck makes)."""

    route_answer = PEER_ROUTES[0]
    mac = None
    state = "REACHABLE"

    def choose(self, record):
        self.route_answer = PEER_ROUTES[record[0] % len(PEER_ROUTES)] if record else PEER_ROUTES[0]
        self.mac = PEER_MACS[record[1] % len(PEER_MACS)] if len(record) > 1 else None
        self.state = ("REACHABLE", "STALE", "FAILED", "INCOMPLETE")[record[2] % 4] if len(record) > 2 else "REACHABLE"

    def route(self, ip):
        return self.route_answer

    def neighbour(self, ip, ifindex):
        if self.mac is None:
            return None
        return Entry(ip=ip, dev="br0", mac=self.mac if self.state in ("REACHABLE", "STALE") else None, state=self.state)

    def resolve(self, ip):
        pass

    def drain(self):
        pass

    def ifname(self, ifindex):
        return "br0"

    def close(self):
        pass


_KERNEL = _FuzzedKernel()


def _agent_api():
    global _API  # pylint: disable=global-statement
    if _API is None:
        # max_wait 0: a long-poll is answered at once (its wait is the notifier's, not a parser).
        _API = api_service.AgentApi(fresh_registry(), admin_token=ADMIN_TOKEN, run_id="fuzz", max_wait=0.0,
                                    logger=quiet_logger("nixie.fuzz.http"),
                                    segment=binding.SegmentCheck(lookup=_KERNEL, resolve_wait=0.0))
        _API.stop_requested = asyncio.Event()
    if _API.registry.seq != FRESH_REGISTRY_SEQ:  # the previous input changed it: start from the run's first state again
        _API.registry = fresh_registry()
    return _API


def _answered(answer):
    """The answer of an endpoint, awaited when it is a long-poll; its payload after the token check."""
    if not isinstance(answer, agent_api.ApiAnswer):
        answer = _drive(answer)
    body = answer.body().decode("utf-8")
    for token in _secrets_not_sent():
        assert token not in body, "a token in an API answer: %s" % body
    assert answer.status != 500, body
    return answer, json.loads(body)


def api_input(data):
    _CURRENT_INPUT[0] = data
    authorization, query, mac, body, peer = (split_records(data, 5) + [b""] * 5)[:5]
    _KERNEL.choose(peer)
    api = _agent_api()
    registry = api.registry
    before = {m: registry.state(m) for m in registry.macs()}
    headers = {"authorization": authorization.decode("latin-1")} if authorization else {}
    query = dict(reversed(urllib.parse.parse_qsl(query.decode("latin-1"), keep_blank_values=True)))
    mac = mac.decode("latin-1")

    response, answer = _answered(api.answer(agent_api.ApiRequest("POST", agent_api.API_PREFIX + "/phone-home", query, headers, body,
                                                                 peer=PEER)))
    after = {m: registry.state(m) for m in registry.macs()}
    changed = [m for m in after if after[m] != before[m]]
    if response.status == 200:
        assert answer["ok"] is True
        assert changed in ([], [answer["mac"]]), changed
        assert registry.token_for(answer["mac"]) == agent_api.bearer_token(headers), "a phone-home accepted with a token that is not the host's"
        scope = trust.scope_of(_KERNEL.route_answer)
        seen = _KERNEL.mac if _KERNEL.state in ("REACHABLE", "STALE") else None
        assert scope != trust.ON_SEGMENT or seen == answer["mac"], "a phone-home accepted from MAC %s" % seen
    else:
        assert response.status in (400, 401, 403, 409), response.status
        assert answer["ok"] is False and answer["code"], answer
        assert not changed, "a refused phone-home changed %s" % changed

    # GET /api/v1/hosts/{mac}?{query}
    response, answer = _answered(api.answer(agent_api.ApiRequest("GET", agent_api.API_PREFIX + "/hosts/" + mac, query, headers)))
    assert response.status in (200, 400, 404), response.status
    if response.status == 200:
        assert answer["host"]["mac"] == normalize_mac(mac)

    api.stop_requested.clear()
    response, answer = _answered(api.answer(agent_api.ApiRequest("POST", agent_api.API_PREFIX + "/stop", query, headers, body)))
    assert response.status in (202, 400, 401, 403), response.status
    assert (response.status == 202) == api.stop_requested.is_set()
    if response.status == 202:
        assert agent_api.bearer_token(headers) == ADMIN_TOKEN


API_MAX_BODY = 4096


def api_http_input(data):
    _CURRENT_INPUT[0] = data
    head = http_api.read_head(data, API_MAX_BODY)
    if head in (http_api.NEED_MORE, http_api.HAND_OVER):
        if head is http_api.NEED_MORE:
            assert len(data) <= http_api.MAX_HEAD and b"\r\n\r\n" not in data
        return
    assert head.method in ("GET", "HEAD", "POST") and head.path.startswith("/api/"), head
    assert head.size <= http_api.MAX_HEAD and 0 <= head.content_length <= API_MAX_BODY, head
    assert data[head.size - 4:head.size] == b"\r\n\r\n"
    for cut in (1, head.size // 2, head.size - 1):  # bytes arrive in pieces: the same head, once whole
        assert http_api.read_head(data[:cut], API_MAX_BODY) is http_api.NEED_MORE, cut
    assert http_api.read_head(data[:head.size], API_MAX_BODY) == head
    body = data[head.size:head.size + head.content_length]
    api = _agent_api()
    request = agent_api.ApiRequest(head.method, head.path, head.query, head.headers, body, "10.77.0.173")
    answer = api.answer(request)
    if not isinstance(answer, agent_api.ApiAnswer):
        answer = _drive(answer)
    assert answer.status != 500
    wire = http_api.encode_answer(answer, head_only=head.method == "HEAD")
    status_line, rest = wire.split(b"\r\n", 1)
    assert status_line.startswith(b"HTTP/1.1 %d " % answer.status)
    header_block, payload = rest.split(b"\r\n\r\n", 1)
    assert b"Content-Length: %d" % len(answer.body()) in header_block.split(b"\r\n")
    assert payload == (b"" if head.method == "HEAD" else answer.body())
    for token in _secrets_not_sent():
        assert token.encode() not in wire, "a token in an answer: %r" % wire


TARGETS = {
    "dhcp67": dhcp67,
    "dhcp4011": dhcp4011,
    "tftp": tftp_target,
    "api": api_input,
    "api_http": api_http_input,
}
