# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

# The TFTP server on 127.0.0.1 (ephemeral port) against real clients:
# tftp-hpa, curl, tftpy, and a raw UDP client for what those cannot send.

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import tftp
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import tftp as tftp_wire

HOST = "127.0.0.1"


def make_files():
    files = tftp.load_files()
    rnd = os.urandom(1 << 20)
    files.setdefault("ipxe.efi", rnd[:850528])
    files.setdefault("undionly.kpxe", rnd[:74213])
    files.setdefault("snponly.efi", rnd[:173792])
    # a multiple of both 512 and 1468: the transfer ends with an empty block
    files["ipxe-arm64.efi"] = (rnd * 2)[:512 * 1468]
    return files


FILES = make_files()


class ServerThread:
    """TftpServer on its own asyncio loop in a thread."""

    def __init__(self, **kwargs):
        self.events = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = tftp.TftpServer(FILES, on_event=self.events.append, **kwargs)
        self.call(self.server.start(HOST, 0))
        self.port = self.server.address[1]
        self.addr = (HOST, self.port)

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def active(self):
        async def get():
            return self.server.active_transfers
        return self.call(get())

    def wait_idle(self, limit=10.0):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if self.active() == 0:
                return True
            time.sleep(0.02)
        return False

    def kinds(self, filename=None):
        return [e.kind for e in self.events if filename is None or e.filename == filename]

    def stop(self):
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def server():
    srv = ServerThread(timeout=0.3, retries=3)
    yield srv
    srv.stop()


def wait_for(predicate, limit=5.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# ------------------------------------------------------------ raw client


class Raw:
    def __init__(self, addr, timeout=2.0):
        self.addr = addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)
        self.sock.bind((HOST, 0))
        self.tid = None

    def rrq(self, name, mode="octet", **options):
        self.sock.sendto(tftp_wire.build_request(name, mode, options), self.addr)

    def send(self, data):
        self.sock.sendto(data, self.tid)

    def recv(self):
        data, addr = self.sock.recvfrom(70000)
        if self.tid is None and addr[1] != self.addr[1]:
            self.tid = addr
        return data, addr

    def close(self):
        self.sock.close()


def error_of(data):
    assert data[:2] == b"\x00\x05", data[:40]
    return tftp_wire.parse_error(data)


def windowed_fetch(raw, name, blksize, windowsize, skip_once=None):
    """Fetch with RFC 7440 acks; ``skip_once``: pretend that block was lost once."""
    raw.rrq(name, blksize=blksize, windowsize=windowsize, tsize=0)
    data, dummy = raw.recv()
    assert data[:2] == b"\x00\x06"
    opts = tftp_wire.parse_oack(data)
    raw.send(tftp_wire.build_ack(0))
    ws = int(opts.get("windowsize", 1))
    bs = int(opts.get("blksize", 512))
    chunks, expected, inwin, dropped, resent = [], 1, 0, False, []
    while True:
        data, dummy = raw.recv()
        assert data[:2] == b"\x00\x03"
        block = int.from_bytes(data[2:4], "big")
        if block != expected & 0xFFFF:
            resent.append(block)
            continue
        if skip_once == block and not dropped:
            dropped = True
            # drain the rest of the window, then report the gap
            raw.send(tftp_wire.build_ack(expected - 1))
            inwin = 0
            continue
        chunks.append(data[4:])
        expected += 1
        inwin += 1
        if len(data) - 4 < bs:
            raw.send(tftp_wire.build_ack(block))
            break
        if inwin == ws:
            raw.send(tftp_wire.build_ack(block))
            inwin = 0
    return opts, b"".join(chunks), resent


# ------------------------------------------------------------------ tests


@pytest.mark.skipif(not shutil.which("tftp"), reason="tftp-hpa missing")
@pytest.mark.parametrize("name", sorted(FILES))
def test_tftp_hpa_binary(server, tmp_path, name):
    out = tmp_path / "out"
    subprocess.run(["tftp", "-m", "binary", HOST, str(server.port), "-c", "get", name, str(out)], check=True, timeout=30)
    assert out.read_bytes() == FILES[name]
    assert wait_for(lambda: server.kinds(name) == ["started", "finished"])
    done = server.events[-1]
    assert done.client[0] == HOST and done.bytes_sent == done.size == len(FILES[name])
    assert done.blksize == 512 and done.windowsize == 1 and done.duration > 0


@pytest.mark.skipif(not shutil.which("tftp"), reason="tftp-hpa missing")
def test_tftp_hpa_refusals(server, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(["tftp", "-m", "binary", HOST, str(server.port), "-c", "get", "nothere.efi", str(out)],
                       capture_output=True, text=True, timeout=30, check=False)
    assert "Error code 1" in r.stdout + r.stderr
    r = subprocess.run(["tftp", "-m", "binary", HOST, str(server.port), "-c", "get", "../../etc/passwd", str(out)],
                       capture_output=True, text=True, timeout=30, check=False)
    assert "Error code 2" in r.stdout + r.stderr
    src = tmp_path / "up"
    src.write_bytes(b"payload")
    r = subprocess.run(["tftp", "-m", "binary", HOST, str(server.port), "-c", "put", str(src), "ipxe.efi"],
                       capture_output=True, text=True, timeout=30, check=False)
    assert "Error code 2" in r.stdout + r.stderr
    r = subprocess.run(["tftp", "-m", "netascii", HOST, str(server.port), "-c", "get", "ipxe.efi", str(out)],
                       capture_output=True, text=True, timeout=30, check=False)
    assert "Error code 0" in r.stdout + r.stderr
    assert set(server.kinds()) == {"refused"}


@pytest.mark.skipif(not shutil.which("curl"), reason="curl missing")
@pytest.mark.parametrize("blksize", [8, 512, 1468, 8192])
def test_curl_blksize(server, tmp_path, blksize):
    out = tmp_path / "out"
    subprocess.run(["curl", "-sS", "--tftp-blksize", str(blksize), "-o", str(out),
                    "tftp://%s:%d/undionly.kpxe" % (HOST, server.port)], check=True, timeout=60)
    assert out.read_bytes() == FILES["undionly.kpxe"]
    assert wait_for(lambda: server.kinds() == ["started", "finished"])
    assert server.events[-1].blksize == min(blksize, 1468)


def test_tftpy_client_with_options(server, tmp_path):
    tftpy = pytest.importorskip("tftpy")
    for name in ("ipxe.efi", "ipxe-arm64.efi"):
        out = tmp_path / name
        client = tftpy.TftpClient(HOST, server.port, options={"blksize": 1468, "tsize": 0})
        client.download(name, str(out), timeout=5)
        assert out.read_bytes() == FILES[name]
    assert wait_for(lambda: server.kinds() == ["started", "finished"] * 2)
    assert server.events[-1].blksize == 1468


def test_tftpy_clients_concurrently(server, tmp_path):
    tftpy = pytest.importorskip("tftpy")
    errors = []

    def fetch(i):
        try:
            out = tmp_path / ("c%d" % i)
            tftpy.TftpClient(HOST, server.port, options={"blksize": 1468}).download("snponly.efi", str(out), timeout=5)
            assert out.read_bytes() == FILES["snponly.efi"]
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)
    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert server.wait_idle()
    assert server.kinds().count("finished") == 10


@pytest.mark.parametrize("windowsize", [1, 4, 16, 64])
def test_raw_windowsize(server, windowsize):
    raw = Raw(server.addr)
    try:
        opts, data, dummy = windowed_fetch(raw, "ipxe.efi", 1468, windowsize)
    finally:
        raw.close()
    assert opts == {"blksize": "1468", "windowsize": str(windowsize), "tsize": str(len(FILES["ipxe.efi"]))}
    assert data == FILES["ipxe.efi"]
    assert wait_for(lambda: server.kinds() == ["started", "finished"])
    assert server.events[-1].windowsize == windowsize


def test_raw_windowsize_clamped_and_gap_resent(server):
    raw = Raw(server.addr)
    try:
        opts, data, dummy = windowed_fetch(raw, "ipxe-arm64.efi", 1468, 1000, skip_once=7)
    finally:
        raw.close()
    assert opts["windowsize"] == "64"
    assert data == FILES["ipxe-arm64.efi"]
    assert wait_for(lambda: server.kinds() == ["started", "finished"])


def test_raw_timeout_option(server):
    raw = Raw(server.addr)
    try:
        raw.rrq("undionly.kpxe", timeout=2, blksize=1468)
        data, dummy = raw.recv()
        assert tftp_wire.parse_oack(data) == {"timeout": "2", "blksize": "1468"}
        raw.send(tftp_wire.build_error(8, "bye"))
    finally:
        raw.close()
    assert server.wait_idle()


def test_ovmf_tsize_probe_then_window_fetch(server):
    raw = Raw(server.addr)
    try:
        raw.rrq("ipxe.efi", blksize=1468, tsize=0)
        data, dummy = raw.recv()
        assert tftp_wire.parse_oack(data) == {"blksize": "1468", "tsize": str(len(FILES["ipxe.efi"]))}
        raw.send(tftp_wire.build_error(8, "User aborted the transfer"))
        assert server.wait_idle(2)
        assert server.events == []  # the probe ends quietly
    finally:
        raw.close()
    raw = Raw(server.addr)
    try:
        opts, data, dummy = windowed_fetch(raw, "ipxe.efi", 1468, 4)
    finally:
        raw.close()
    assert data == FILES["ipxe.efi"]
    assert wait_for(lambda: server.kinds() == ["started", "finished"])


TRAVERSAL = [
    b"../ipxe.efi", b"../../../../etc/passwd", b"/etc/passwd", b"/ipxe.efi", b"./ipxe.efi",
    b"%2e%2e/%2e%2e/etc/passwd", b"%2E%2E%2Fipxe.efi", b"..\\..\\windows\\win.ini", b"\\ipxe.efi",
    b"ipxe.efi/", b"..", b".", b"a" * 400, b"ipxe.efi\x00../etc/passwd", b"\xc0\xae\xc0\xae/etc/passwd",
    b"ipxe.efi\n", b"C:ipxe.efi",
]


@pytest.mark.parametrize("name", TRAVERSAL)
def test_raw_traversal_refused(server, name):
    raw = Raw(server.addr)
    try:
        raw.sock.sendto(b"\x00\x01" + name + b"\x00octet\x00", server.addr)
        data, addr = raw.recv()
        code, dummy = error_of(data)
        assert code in (tftp_wire.ERR_ACCESS, tftp_wire.ERR_ILLEGAL_OP)
        assert addr[1] == server.port  # refused on the listener: no transfer was made
    finally:
        raw.close()
    assert server.active() == 0
    assert server.kinds() == ["refused"]


def test_raw_write_request_and_unknown_file(server):
    raw = Raw(server.addr)
    try:
        raw.sock.sendto(tftp_wire.build_request("ipxe.efi", opcode=tftp_wire.OP_WRQ), server.addr)
        assert error_of(raw.recv()[0])[0] == tftp_wire.ERR_ACCESS
        raw.rrq("pxelinux.0")
        assert error_of(raw.recv()[0])[0] == tftp_wire.ERR_NOT_FOUND
        raw.rrq("IPXE.EFI")
        assert error_of(raw.recv()[0])[0] == tftp_wire.ERR_NOT_FOUND
        raw.sock.sendto(b"\x00\x04\x00\x01", server.addr)  # stray ACK on port 69: silence
        raw.sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            raw.recv()
    finally:
        raw.close()


def test_client_that_stops_acking_is_freed(server):
    raw = Raw(server.addr)
    try:
        raw.rrq("ipxe.efi", blksize=1468)
        raw.recv()  # OACK
        raw.send(tftp_wire.build_ack(0))
        first, dummy = raw.recv()
        assert first[:4] == b"\x00\x03\x00\x01"
        t0 = time.monotonic()
        assert server.active() == 1
        # never ACK: the server retransmits (timeout 0.3 s, 3 retries) then frees the slot
        assert server.wait_idle(5)
        elapsed = time.monotonic() - t0
        assert 0.8 < elapsed < 3.0
        retransmits = 0
        raw.sock.settimeout(0.1)
        try:
            while True:
                if raw.recv()[0][:4] == b"\x00\x03\x00\x01":
                    retransmits += 1
        except socket.timeout:
            pass
        assert retransmits == 3
    finally:
        raw.close()
    assert server.kinds() == ["started", "failed"]
    assert "timed out" in server.events[-1].error


def test_client_that_closes_its_socket_is_freed_fast():
    srv = ServerThread(timeout=5.0, retries=5)
    try:
        raw = Raw(srv.addr)
        raw.rrq("ipxe.efi", blksize=1468)
        raw.recv()
        raw.send(tftp_wire.build_ack(0))
        raw.recv()
        assert srv.active() == 1
        raw.close()  # gone: the next retransmission draws ICMP port unreachable
        assert srv.wait_idle(12)
        assert srv.kinds() == ["started", "failed"]
    finally:
        srv.stop()


def test_max_transfers_and_duplicate_requests():
    srv = ServerThread(timeout=0.3, retries=2, max_transfers=2)
    clients = [Raw(srv.addr, timeout=0.5) for dummy in range(3)]
    try:
        for c in clients[:2]:
            c.rrq("undionly.kpxe")
            assert c.recv()[0][:4] == b"\x00\x03\x00\x01"
        clients[0].rrq("undionly.kpxe")  # duplicate RRQ from the same port: no second transfer
        assert srv.active() == 2
        clients[2].rrq("undionly.kpxe")
        with pytest.raises(socket.timeout):  # dropped unanswered: nothing at all comes back
            data, addr = clients[2].recv()
            pytest.fail("served while full: %r from %r" % (data[:4], addr))
        assert srv.kinds().count("refused") == 1
        assert srv.wait_idle(5)  # both stalled transfers time out
        clients[2].sock.settimeout(2)
        clients[2].rrq("undionly.kpxe")  # the client's retransmission now gets a slot
        assert clients[2].recv()[0][:4] == b"\x00\x03\x00\x01"
    finally:
        for c in clients:
            c.close()
        srv.stop()


def test_close_aborts_running_transfers():
    srv = ServerThread(timeout=5.0)
    raw = Raw(srv.addr)
    try:
        raw.rrq("ipxe.efi")
        raw.recv()
        srv.call(srv.server.close())
        data, dummy = raw.recv()
        while data[:2] == b"\x00\x03":
            data, dummy = raw.recv()
        assert error_of(data)[0] == tftp_wire.ERR_UNDEFINED
        assert srv.server.active_transfers == 0
    finally:
        raw.close()
        srv.loop.call_soon_threadsafe(srv.loop.stop)
        srv.thread.join(5)


def test_on_event_exception_does_not_break_server(tmp_path):
    srv = ServerThread()

    def boom(event):
        raise RuntimeError("hook failed")
    srv.server.on_event = boom
    try:
        raw = Raw(srv.addr)
        opts, data, dummy = windowed_fetch(raw, "undionly.kpxe", 1468, 4)
        raw.close()
        assert data == FILES["undionly.kpxe"]
        assert srv.wait_idle()
    finally:
        srv.stop()
