# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Giving up capabilities after binding: in a child process, so the test process keeps its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ansible_collections.nixie.metal.plugins.module_utils._netboot import privileges

CHILD = r"""
import json, socket, sys
from ansible_collections.nixie.metal.plugins.module_utils._netboot import privileges
before = privileges.privilege_status()
low = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
low.bind(("127.0.0.1", 0))          # stands in for the server's bound sockets: they stay usable
after = privileges.drop_capabilities()
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind(("127.0.0.1", 69))
    bind_low = "bound"
except OSError as exc:
    bind_low = exc.errno
try:
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    raw = "opened"
except OSError as exc:
    raw = exc.errno
low.sendto(b"still works", low.getsockname())
print(json.dumps({"before": before, "after": after, "bind_low": bind_low, "raw": raw, "echo": low.recv(64).decode()}))
"""


def with_capabilities(argv):
    """Run as root, or, for a developer who is not, as root of a new user namespace: capabilities to give up either way."""
    return argv if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user"] + argv


def run_child():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(with_capabilities([sys.executable, "-c", CHILD]), env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_status_of_this_process_reads_proc():
    status = privileges.privilege_status()
    assert set(status) == set(privileges.STATUS_FIELDS)
    assert status["CapEff"] & ~status["CapPrm"] == 0


def test_root_gives_up_every_capability_and_cannot_get_them_back():
    result = run_child()
    assert result["before"]["CapEff"] != 0
    after = result["after"]
    assert after["CapEff"] == after["CapPrm"] == after["CapInh"] == after["CapAmb"] == 0
    assert after["CapBnd"] == 0, "the bounding set still allows capabilities back through exec"
    assert after["NoNewPrivs"] == 1
    assert result["bind_low"] == 13, "a port below 1024 could still be bound"
    assert result["raw"] == 1, "a raw socket could still be opened"
    assert result["echo"] == "still works"


def test_without_privileges_dropping_is_harmless():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    # Everything is imported before the switch to nobody, who cannot read root's Python.
    code = ("import os, json, ctypes, encodings.ascii\n"
            "from ansible_collections.nixie.metal.plugins.module_utils._netboot import privileges\n"
            "ctypes.CDLL(None)\n")
    if os.geteuid() == 0:
        code += "os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)\n"
    code += "print(json.dumps(privileges.drop_capabilities()))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    status = json.loads(done.stdout)
    assert status["CapEff"] == 0 and status["NoNewPrivs"] == 1


THREADS = r"""
import json, os, threading, time
from ansible_collections.nixie.metal.plugins.module_utils._netboot import privileges
started = threading.Event()
release = threading.Event()
earlier = threading.Thread(target=lambda: (started.set(), release.wait()))
earlier.start()
started.wait()
privileges.drop_capabilities()
after = []
later = threading.Thread(target=lambda: after.append(privileges.privilege_status("thread-self")))
later.start(); later.join()
holding = privileges.threads_with_capabilities()
release.set(); earlier.join()
# join() returns when Python is done with the thread, a moment before the kernel's task goes away.
for attempt in range(500):
    if str(earlier.native_id) not in os.listdir("/proc/self/task"):
        break
    time.sleep(0.01)
print(json.dumps({"holding": holding, "native_id": earlier.native_id, "later": after[0],
                  "holding_after_exit": privileges.threads_with_capabilities()}))
"""


def test_a_thread_started_before_the_drop_is_found_and_a_later_one_inherits_nothing():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(with_capabilities([sys.executable, "-c", THREADS]), env=env, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    assert result["holding"] == [result["native_id"]], result
    assert result["later"]["CapEff"] == 0 and result["later"]["CapBnd"] == 0
    assert result["holding_after_exit"] == []
