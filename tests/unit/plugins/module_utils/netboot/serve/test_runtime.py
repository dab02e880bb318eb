# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os
import socket
import subprocess
import sys

from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import runtime

PROC_NET_UDP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 31337 2 0000000000000000 0
  101: 0100007F:0045 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 31338 2 0000000000000000 0
  102: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 31339 2 0000000000000000 0
"""


def test_parse_proc_net_keeps_bound_and_listening_sockets():
    assert runtime.parse_proc_net(PROC_NET_UDP) == {67: {"31337"}, 69: {"31338"}}


def test_state_file_round_trip_and_ownership(tmp_path):
    run_dir = str(tmp_path / "run")
    record = runtime.write_state(run_dir, {"api_url": "http://192.0.2.1:8080/api/v1", "admin_token": "secret"})
    assert record["pid"] == os.getpid()
    assert runtime.read_state(run_dir) == record
    assert runtime.is_alive(record)
    assert os.stat(os.path.join(run_dir, runtime.STATE_FILE_NAME)).st_mode & 0o077 == 0
    runtime.remove_state(run_dir, pid=os.getpid() + 1)  # not ours: kept
    assert runtime.read_state(run_dir) is not None
    runtime.remove_state(run_dir, pid=os.getpid())
    assert runtime.read_state(run_dir) is None


def test_a_reused_pid_is_not_alive():
    # Same PID, another start time: the process that wrote the record is gone.
    record = {"pid": os.getpid(), "start_time": runtime.process_start_time(os.getpid()) - 1}
    assert not runtime.is_alive(record)
    assert not runtime.is_alive({"pid": "1"})


def test_a_dead_process_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert runtime.process_start_time(child.pid) is None


def test_unreadable_state_is_none(tmp_path):
    (tmp_path / runtime.STATE_FILE_NAME).write_text("{not json", encoding="utf-8")
    assert runtime.read_state(str(tmp_path)) is None


def test_port_holders_names_this_process():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        port = sock.getsockname()[1]
        assert (os.getpid(), open("/proc/self/comm", encoding="utf-8").read().strip()) in runtime.port_holders(port, "udp")
        assert "(pid %d)" % os.getpid() in runtime.describe_port_holders(port, "udp")
    finally:
        sock.close()
