# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Giving up root after binding: in a child process, so the test process keeps its own privileges.

Capabilities alone are dropped as root, or as root of a new user namespace for a developer who is
not root. Switching to another account needs real root (CI runs the unit tests as root): a user
namespace made without privileges maps a single user ID, so there would be no other account to become.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import privileges

CHILD = r"""
import json, socket, sys
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import privileges
before = privileges.privilege_status()
low = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
low.bind(("127.0.0.1", 0))          # stands in for the server's bound sockets: they stay usable
after = privileges.drop_privileges()
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
    assert status["Uid"] == [os.getuid(), os.geteuid(), os.getresuid()[2], os.getuid()] and len(status["Gid"]) == 4
    assert sorted(status["Groups"]) == sorted(set(os.getgroups()) - {os.getgid()}) or sorted(status["Groups"]) == sorted(os.getgroups())


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
            "from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import privileges\n"
            "ctypes.CDLL(None)\n")
    if os.geteuid() == 0:
        code += "os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)\n"
    code += "print(json.dumps(privileges.drop_privileges()))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    status = json.loads(done.stdout)
    assert status["CapEff"] == 0 and status["NoNewPrivs"] == 1


THREADS = r"""
import json, os, threading, time
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import privileges
started = threading.Event()
release = threading.Event()
earlier = threading.Thread(target=lambda: (started.set(), release.wait()))
earlier.start()
started.wait()
privileges.drop_privileges()
after = []
later = threading.Thread(target=lambda: after.append(privileges.privilege_status("thread-self")))
later.start(); later.join()
holding = privileges.threads_still_privileged(None)
release.set(); earlier.join()
# join() returns when Python is done with the thread, a moment before the kernel's task goes away.
for attempt in range(500):
    if str(earlier.native_id) not in os.listdir("/proc/self/task"):
        break
    time.sleep(0.01)
print(json.dumps({"holding": holding, "native_id": earlier.native_id, "later": after[0],
                  "holding_after_exit": privileges.threads_still_privileged(None)}))
"""


def test_a_thread_started_before_the_drop_is_found_and_a_later_one_inherits_nothing():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(with_capabilities([sys.executable, "-c", THREADS]), env=env, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    assert result["holding"] == [result["native_id"]], result
    assert result["later"]["CapEff"] == 0 and result["later"]["CapBnd"] == 0
    assert result["holding_after_exit"] == []


def test_accounts_are_found_by_name_with_their_primary_group():
    nobody = privileges.find_account("nobody")
    assert nobody is not None and nobody.uid != 0 and nobody.name == "nobody"
    assert nobody.gid == pwd.getpwnam("nobody").pw_gid
    assert privileges.find_account("nixie-no-such-user") is None
    assert privileges.find_account("root") == ("root", 0, 0)


@pytest.fixture
def open_dir():
    """A directory every user may enter (pytest's tmp_path is under /tmp/pytest-of-root, root's only)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="nixie-test-privileges-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def need_root():
    assert os.geteuid() == 0, "switching to another account needs root: run the unit tests as root (CI does)"


SWITCH = r"""
import json, os, signal, sys, threading
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import privileges
account = privileges.find_account("nobody")
parent = os.getppid()
os.setgroups([0, 4])  # root may have no supplementary group here; a server started with some must lose them
# A pipe the server would have bound/opened before the switch stays usable after it.
read_end, write_end = os.pipe()
early = threading.Event(); release = threading.Event()
worker = threading.Thread(target=lambda: (early.set(), release.wait()))
worker.start(); early.wait()
missing_before = privileges.missing_to_switch(account)
before = privileges.privilege_status()
privileges.die_with_parent(parent, signal.SIGKILL)
pdeath_before = privileges.parent_death_signal()
after = privileges.drop_privileges(account)
pdeath_cleared_by_switch = privileges.parent_death_signal()
privileges.die_with_parent(parent, signal.SIGKILL)
result = {"missing_before": missing_before, "before": before, "after": after, "pdeath_before": pdeath_before,
          "pdeath_cleared_by_switch": pdeath_cleared_by_switch, "pdeath_after": privileges.parent_death_signal(),
          "threads": {tid: privileges.privilege_status("self/task/%s" % tid) for tid in os.listdir("/proc/self/task")},
          "still_privileged": privileges.threads_still_privileged(account)}
release.set(); worker.join()
try:
    with open(sys.argv[1], "w") as handle:
        handle.write("owned")
    result["write_root_file"] = "written"
except OSError as exc:
    result["write_root_file"] = exc.errno
try:
    os.kill(parent, 0)
    result["signal_root"] = "allowed"
except OSError as exc:
    result["signal_root"] = exc.errno
os.write(write_end, b"x"); result["pipe"] = os.read(read_end, 1).decode()
print(json.dumps(result))
"""


def test_root_switches_to_the_account_in_the_kernels_order_and_keeps_nothing(open_dir):
    need_root()
    # A root-only file in a directory everyone may enter: only the file's mode stops the write.
    target = open_dir / "owned-by-root"
    target.write_text("root's", encoding="utf-8")
    target.chmod(0o600)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", SWITCH, str(target)], env=env, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    nobody = privileges.find_account("nobody")
    assert result["missing_before"] == [] and result["before"]["Groups"] == [0, 4]
    after = result["after"]
    assert after["Uid"] == [nobody.uid] * 4 and after["Gid"] == [nobody.gid] * 4 and after["Groups"] == []
    assert after["CapEff"] == after["CapPrm"] == after["CapInh"] == after["CapAmb"] == after["CapBnd"] == 0
    assert after["NoNewPrivs"] == 1
    # Every thread, also one started before the switch: the C library switches them all...
    assert len(result["threads"]) == 2
    for status in result["threads"].values():
        assert status["Uid"] == [nobody.uid] * 4 and status["Gid"] == [nobody.gid] * 4 and status["Groups"] == []
        assert status["CapEff"] == status["CapPrm"] == 0
    # ...but the bounding set is per thread: the earlier thread keeps its own, and the check sees it.
    assert [int(tid) for tid, status in result["threads"].items() if status["CapBnd"]] == result["still_privileged"]
    assert len(result["still_privileged"]) == 1
    # The parent-death signal: cleared by the switch, so it is set after it.
    assert result["pdeath_before"] == signal.SIGKILL and result["pdeath_cleared_by_switch"] == 0
    assert result["pdeath_after"] == signal.SIGKILL
    assert result["write_root_file"] == errno.EACCES and target.read_text(encoding="utf-8") == "root's"
    assert result["signal_root"] == errno.EPERM
    assert result["pipe"] == "x"


def test_user_root_keeps_the_user_id_and_drops_every_capability():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    code = ("import json\nfrom ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import privileges\n"
            "print(json.dumps(privileges.drop_privileges(privileges.find_account('root'))))")
    done = subprocess.run(with_capabilities([sys.executable, "-c", code]), env=env, capture_output=True, text=True, check=True)
    after = json.loads(done.stdout)
    assert after["Uid"][1] == 0 and after["CapEff"] == after["CapPrm"] == after["CapBnd"] == 0 and after["NoNewPrivs"] == 1


def test_files_are_checked_as_the_account_before_anything_binds(open_dir):
    need_root()
    nobody = privileges.find_account("nobody")
    tmp_path = open_dir
    readable, secret, hidden = tmp_path / "readable", tmp_path / "secret", tmp_path / "closed" / "inside"
    readable.write_bytes(b"x")
    secret.write_bytes(b"x")
    secret.chmod(0o600)
    hidden.parent.mkdir(mode=0o700)
    hidden.write_bytes(b"x")
    found = privileges.unreadable_as(nobody, [str(readable), str(secret), str(hidden), str(tmp_path / "missing")])
    assert found == [(str(secret), "Permission denied"), (str(hidden), "Permission denied"),
                     (str(tmp_path / "missing"), "No such file or directory")]
    assert privileges.unreadable_as(privileges.find_account("root"), [str(secret)]) == []
    assert os.getresuid() == (0, 0, 0)  # this process kept its own IDs


def test_a_process_without_the_switching_capabilities_is_told_which_it_lacks():
    need_root()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    code = ("import json\nfrom ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import privileges\n"
            "print(json.dumps(privileges.missing_to_switch(privileges.find_account('nobody'))))")
    # capsh is not everywhere; setpriv (util-linux) is wherever unshare is.
    done = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-setuid", "--", sys.executable, "-c", code],
                          env=env, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == ["CAP_SETUID"]
