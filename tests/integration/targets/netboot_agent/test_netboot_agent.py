# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real nixie-agent against the real aiohttp app on 127.0.0.1.

The agent runs under ``busybox sh`` with a PATH that holds busybox applets
only (so it uses busybox wget, ip, timeout, od ...), exactly as in a busybox
initramfs; one test also runs it under dash with the system's curl, as on
NixOS. The server runs in its own thread with its own asyncio loop.
"""

from __future__ import annotations

import asyncio
import copy
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import http as nhttp
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.registry import Registry

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT = os.environ.get("NIXIE_AGENT") or os.path.join(HERE, "..", "..", "..", "..", "nix", "agent", "nixie-agent")
BUSYBOX = shutil.which("busybox")
BUSYBOX_SH = [BUSYBOX, "sh"]
MAC1 = "52:54:00:12:34:01"
MAC2 = "52:54:00:12:34:02"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAwq+EfnD2DZmIrGP9ja8hP2GBrvXDwB95xkcbYRkgxX root@installer"

pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed (apt-get install busybox-static)")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerThread:
    """The HTTP app on 127.0.0.1:port, served as the netboot server serves it, in a thread with its own loop."""

    def __init__(self, registry, port):
        self.registry = registry
        self.port = port
        self.loop = None
        self.runner = None
        self.listeners = None
        self.thread = None
        self.events = []

    def start(self):
        ready = threading.Event()
        failure = []

        def run():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            try:
                app = nhttp.create_app(self.registry, artifacts={}, on_event=self.events.append, admin_token="a" * 32)
                self.runner = nhttp.create_runner(app)
                self.loop.run_until_complete(self.runner.setup())
                self.listeners = nhttp.Listeners(self.runner)
                self.loop.run_until_complete(self.listeners.listen("127.0.0.1", self.port, 128))
            except Exception as exc:  # reported to the test thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()
            self.listeners.stop_accepting()
            self.loop.run_until_complete(self.runner.cleanup())
            self.loop.run_until_complete(self.listeners.close())
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10), "server did not start"
        if failure:
            raise failure[0]

    def stop(self):
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@pytest.fixture
def registry():
    return Registry([Host("node1", MAC1), Host("node2", MAC2)])


@pytest.fixture
def server(registry):
    srv = ServerThread(registry, free_port())
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def busybox_path(tmp_path_factory):
    """A directory with every busybox applet and nothing else."""
    bindir = tmp_path_factory.mktemp("busybox-bin")
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        os.symlink(BUSYBOX, str(bindir / applet))
    assert "wget" in applets and "curl" not in applets
    return str(bindir)


@pytest.fixture
def installer(tmp_path):
    ssh = tmp_path / "ssh"
    ssh.mkdir()
    (ssh / "ssh_host_ed25519_key.pub").write_text(HOST_KEY + "\n")
    (ssh / "ssh_host_ed25519_key").write_text("private, never read\n")
    return tmp_path


def write_cmdline(directory, port, token, mac):
    path = directory / "cmdline"
    path.write_text("BOOT_IMAGE=/bzImage initrd=initrd console=ttyS0 nixie.api=http://127.0.0.1:%d/api/v1 "
                    "nixie.token=%s nixie.mac=%s quiet\n" % (port, token, mac))
    return str(path)


def agent_env(installer, cmdline, path, **extra):
    env = {
        "PATH": path,
        "NIXIE_CMDLINE": cmdline,
        "NIXIE_SSH_DIR": str(installer / "ssh"),
        "NIXIE_NET_WAIT": "1",
        "NIXIE_MAX_DELAY": "2",
        "NIXIE_HTTP_TIMEOUT": "5",
        "TMPDIR": str(installer),
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_agent(shell, installer, cmdline, path, **extra):
    return subprocess.Popen(list(shell) + [AGENT], env=agent_env(installer, cmdline, path, **extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=5)
        pytest.fail("agent did not finish in %ss\nstdout: %s\nstderr: %s" % (timeout, out, err))
    return proc.returncode, out, err


def frozen(registry):
    snap = registry.snapshot()
    snap.pop("rejected_phone_homes")
    return copy.deepcopy(snap)


def test_busybox_agent_phones_home(server, registry, installer, busybox_path):
    server.start()
    cmdline = write_cmdline(installer, server.port, registry.token_for(MAC1), MAC1)
    rc, out, err = finish(start_agent(BUSYBOX_SH, installer, cmdline, busybox_path), 30)
    assert rc == 0, err
    assert "nixie-agent: phoned home to http://127.0.0.1:%d/api/v1/phone-home" % server.port in out
    host = registry.host_snapshot(MAC1)
    assert host["state"] == "phoned_home"
    assert host["address"] == "127.0.0.1"
    assert host["ssh_host_keys"] == [HOST_KEY.rsplit(" ", 1)[0]]
    assert host["hostname"]
    assert registry.state(MAC2) == "known"
    assert registry.token_for(MAC1) not in out + err

    # a second run (say the unit restarted) gets the same answer and changes nothing
    before = frozen(registry)
    rc, out, _err = finish(start_agent(BUSYBOX_SH, installer, cmdline, busybox_path), 30)
    assert rc == 0 and "phoned home" in out
    assert frozen(registry) == before


def test_agent_retries_until_the_server_starts(server, registry, installer, busybox_path):
    cmdline = write_cmdline(installer, server.port, registry.token_for(MAC1), MAC1)
    proc = start_agent(BUSYBOX_SH, installer, cmdline, busybox_path)
    time.sleep(2.5)
    assert proc.poll() is None, "the agent gave up while the server was down"
    server.start()
    rc, out, err = finish(proc, 30)
    assert rc == 0, err
    assert "retrying in" in err
    assert "phoned home" in out
    assert registry.state(MAC1) == "phoned_home"


def test_wrong_token_keeps_retrying_and_changes_nothing(server, registry, installer, busybox_path):
    server.start()
    before = frozen(registry)
    cmdline = write_cmdline(installer, server.port, "W" * 32, MAC1)
    proc = start_agent(BUSYBOX_SH, installer, cmdline, busybox_path, NIXIE_MAX_DELAY=1)
    time.sleep(4)
    assert proc.poll() is None, "the agent stopped retrying"
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=10)
    assert "403" in err
    assert frozen(registry) == before
    assert registry.snapshot()["rejected_phone_homes"]["token_rejected"] >= 2


def test_another_hosts_token_is_refused_until_max_tries(server, registry, installer, busybox_path):
    server.start()
    before = frozen(registry)
    cmdline = write_cmdline(installer, server.port, registry.token_for(MAC2), MAC1)
    rc, _out, err = finish(start_agent(BUSYBOX_SH, installer, cmdline, busybox_path, NIXIE_MAX_TRIES=2, NIXIE_MAX_DELAY=1), 30)
    assert rc == 1
    assert "giving up after 2 attempts" in err
    assert frozen(registry) == before
    assert registry.snapshot()["rejected_phone_homes"]["token_rejected"] == 2


def test_no_nixie_arguments_is_a_quiet_no_op(installer, busybox_path):
    path = installer / "cmdline"
    path.write_text("BOOT_IMAGE=/bzImage quiet\n")
    rc, _out, err = finish(start_agent(BUSYBOX_SH, installer, str(path), busybox_path), 10)
    assert rc == 0 and "nothing to do" in err


@pytest.mark.skipif(shutil.which("dash") is None or shutil.which("curl") is None, reason="needs dash and curl")
def test_dash_and_curl_like_nixos(server, registry, installer):
    server.start()
    cmdline = write_cmdline(installer, server.port, registry.token_for(MAC2), MAC2)
    rc, out, err = finish(start_agent([shutil.which("dash")], installer, cmdline, os.environ.get("PATH", "/usr/bin:/bin")), 30)
    assert rc == 0, err
    assert "phoned home" in out
    assert registry.state(MAC2) == "phoned_home"
