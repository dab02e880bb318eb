# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server's footprint on the controller: its state file, and who holds a port.

A run leaves a state file while it serves, so that `state: stopped` can find
it, a second run is refused instead of half-starting, and a run that was
killed (Ansible's async timeout is a SIGKILL) is recognised as stale and
cleaned up. A PID alone could have been reused, so the file also records the
process start time from /proc.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
from collections.abc import Mapping
from typing import Any

STATE_FILE_NAME = "pxe_server.json"


def default_run_dir() -> str:
    """Where the state file lives: /run when root, the user's runtime directory otherwise."""
    if os.geteuid() == 0:
        return "/run/nixie-metal"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "nixie-metal")
    return os.path.join(tempfile.gettempdir(), "nixie-metal-%d" % os.getuid())


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` in clock ticks since boot, or None if it does not exist."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; fields after it are plain.
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])


def is_alive(record: Mapping[str, Any]) -> bool:
    """Whether the process a state record names is still the one that wrote it."""
    pid = record.get("pid")
    return isinstance(pid, int) and pid > 0 and process_start_time(pid) == record.get("start_time")


def read_state(run_dir: str) -> dict[str, Any] | None:
    """The state record of a server started from ``run_dir``, or None when there is none or it is unreadable."""
    try:
        with open(os.path.join(run_dir, STATE_FILE_NAME), encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_state(run_dir: str, record: dict[str, Any]) -> dict[str, Any]:
    """Atomically write the state record, readable by its owner only (it holds the admin and host tokens)."""
    os.makedirs(run_dir, mode=0o700, exist_ok=True)
    record = dict(record, pid=os.getpid(), start_time=process_start_time(os.getpid()))
    fd, temporary = tempfile.mkstemp(dir=run_dir, prefix=".pxe_server.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
        os.replace(temporary, os.path.join(run_dir, STATE_FILE_NAME))
    except BaseException:
        os.unlink(temporary)
        raise
    return record


def remove_state(run_dir: str, pid: int | None = None) -> None:
    """Remove the state file, only if it is ours (``pid``) when a PID is given."""
    path = os.path.join(run_dir, STATE_FILE_NAME)
    if pid is not None:
        record = read_state(run_dir)
        if record is not None and record.get("pid") != pid:
            return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def parse_proc_net(text: str) -> dict[int, set[str]]:
    """Map local port -> socket inode from /proc/net/{udp,tcp}[6] content, for bound or listening sockets."""
    ports = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        local, state, inode = fields[1], fields[3], fields[9]
        # TCP 0A is LISTEN; UDP sockets show 07 (unconnected) while bound.
        if state not in ("0A", "07"):
            continue
        port = int(local.rsplit(":", 1)[1], 16)
        ports.setdefault(port, set()).add(inode)
    return ports


def port_holders(port: int, protocol: str) -> list[tuple[int, str]]:
    """Best effort: ``[(pid, command)]`` of processes holding ``port`` (protocol ``udp`` or ``tcp``)."""
    inodes = set()
    for table in (protocol, protocol + "6"):
        try:
            with open("/proc/net/" + table, encoding="ascii") as handle:
                inodes |= parse_proc_net(handle.read()).get(port, set())
        except OSError:
            continue
    if not inodes:
        return []
    wanted = {"socket:[%s]" % inode for inode in inodes}
    holders = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir("/proc/%s/fd" % entry)
            if not any(os.readlink("/proc/%s/fd/%s" % (entry, fd)) in wanted for fd in fds):
                continue
            with open("/proc/%s/comm" % entry, encoding="utf-8", errors="replace") as handle:
                holders.append((int(entry), handle.read().strip()))
        except OSError:
            continue
    return sorted(holders)


def describe_port_holders(port: int, protocol: str) -> str:
    holders = port_holders(port, protocol)
    if not holders:
        return "another process (not visible from here)"
    return ", ".join("%s (pid %d)" % (command, pid) for pid, command in holders)


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's soft limit of open files towards ``wanted`` (never above the hard limit).

    Every TFTP transfer, HTTP connection and long-poll holds a descriptor; a
    rack of hundreds of machines with as many wait_for_agent long-polls needs
    more than the usual soft limit of 1024. Returns the soft limit in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            pass
    return soft
