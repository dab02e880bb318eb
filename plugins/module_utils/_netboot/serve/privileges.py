# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Giving up root once the server's sockets are bound: its capabilities and its user ID.

The server needs privilege only to bind: UDP 67, 4011 and 69 are below 1024
(``CAP_NET_BIND_SERVICE``) and ``SO_BINDTODEVICE`` on the DHCP sockets needs
``CAP_NET_RAW`` before Linux 5.7. It opens no raw socket (except the router
advertiser of ``dhcp6=addresses``, opened before this). Once everything is
bound, :func:`drop_privileges` sets ``no_new_privs``, empties the bounding and
ambient sets, keeps only ``CAP_SETUID``/``CAP_SETGID`` for the switch, empties
the supplementary groups, switches real, effective, saved and filesystem group
and user IDs to an unprivileged account, and clears whatever capability is
left. A capability-less uid 0 would still own every root-owned file (it could
rewrite /etc/shadow) and could signal every root process; the account switched
to owns nothing of that.

Order matters, and the kernel dictates it: the bounding set shrinks only while
``CAP_SETPCAP`` is effective, groups and IDs change only while
``CAP_SETGID``/``CAP_SETUID`` are, and a change of user ID clears the
parent-death signal, so :func:`die_with_parent` comes after the switch.
Capabilities belong to each thread (``capset``), user IDs to the process (the C
library applies ``setresuid`` to every thread): :func:`threads_still_privileged`
checks them all.

Files the server opens after the switch (the kernel, initrd and iPXE binaries
it serves over HTTP) must be readable by that account; :func:`unreadable_as`
finds out before anything binds. Linux only (``prctl``/``capset`` through the C
library). See docs/reliability.md.
"""

from __future__ import annotations

import collections
import ctypes
import json
import os
import pwd
from collections.abc import Iterable
from typing import Any

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
_CAPABILITY_VERSION_3 = 0x20080522
# /proc/<pid>/status lines that describe a process's privileges.
STATUS_FIELDS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs")
# Fields holding several decimal numbers: Uid and Gid are real, effective, saved and filesystem IDs.
_LIST_FIELDS = ("Uid", "Gid", "Groups")

Account = collections.namedtuple("Account", "name uid gid")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def privilege_status(pid: int | str = "self") -> dict[str, Any]:
    """``{Uid, Gid, Groups, CapInh, CapPrm, CapEff, CapBnd, CapAmb, NoNewPrivs}`` of a process, from /proc.

    Uid, Gid and Groups are lists of integers, the others integers.
    """
    found = {}
    with open("/proc/%s/status" % pid, encoding="ascii", errors="replace") as handle:
        for line in handle:
            name, dummy, value = line.partition(":")
            if name in _LIST_FIELDS:
                found[name] = [int(number) for number in value.split()]
            elif name in STATUS_FIELDS:
                found[name] = int(value.strip(), 16 if name.startswith("Cap") else 10)
    return found


def find_account(name: str) -> Account | None:
    """The account called ``name`` with the ID of its primary group, or None when there is none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def switches_to(account: Account | None) -> bool:
    """Whether this process would change its user ID for ``account``: only root can, and only to another one."""
    return account is not None and os.geteuid() == 0 and (account.uid, account.gid) != (0, 0)


def _become(account: Account) -> None:
    os.setgroups([])
    os.setresgid(account.gid, account.gid, account.gid)
    os.setresuid(account.uid, account.uid, account.uid)


def missing_to_switch(account: Account | None) -> list[str]:
    """Names of the capabilities this process lacks to switch to ``account`` (a container may withhold them)."""
    if not switches_to(account):
        return []
    effective = privilege_status().get("CapEff", 0)
    return [name for name, bit in (("CAP_SETGID", CAP_SETGID), ("CAP_SETUID", CAP_SETUID)) if not effective & (1 << bit)]


def unreadable_as(account: Account | None, paths: Iterable[str]) -> list[tuple]:
    """``[(path, reason)]`` of the files ``account`` could not open for reading; ``[]`` when it can open them all.

    A short-lived child process takes the account's IDs (no supplementary groups,
    as the server will) and opens each file, so the kernel's own checks decide:
    modes, every directory on the way, ACLs. Without a switch (see
    :func:`switches_to`) the server keeps this process's access and nothing is checked.
    """
    if not switches_to(account):
        return []
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            _become(account)
            found = []
            for path in paths:
                try:
                    with open(path, "rb"):
                        pass
                except OSError as exc:
                    found.append((path, exc.strerror))
            os.write(write_end, json.dumps(found).encode())
            code = 0
        finally:
            os._exit(code)  # never back into the caller's stack: this is a copy of its process
    os.close(write_end)
    with os.fdopen(read_end, "rb") as handle:
        answer = handle.read()
    dummy, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not answer:
        raise OSError("could not check, as %s, which files it can read" % account.name)
    return [tuple(entry) for entry in json.loads(answer)]


def threads_still_privileged(account: Account | None) -> list[int]:
    """Thread IDs of this process that hold a capability or, when ``account`` is given, another user or group ID or any group.

    Capabilities are per thread on Linux; a thread that ran before the drop keeps its own.
    """
    found = []
    for tid in sorted(os.listdir("/proc/self/task")):
        try:
            status = privilege_status("self/task/%s" % tid)
        except OSError:
            continue  # the thread ended meanwhile
        held = status.get("CapEff") or status.get("CapPrm") or status.get("CapBnd")
        if account is not None:
            held = held or set(status["Uid"]) != {account.uid} or set(status["Gid"]) != {account.gid} or status["Groups"]
        if held:
            found.append(int(tid))
    return found


def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 63


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, "%s: %s" % (what, os.strerror(code)))


def _set_capabilities(libc: ctypes.CDLL, mask: int) -> None:
    """Effective and permitted capabilities of the calling thread: exactly ``mask``; inheritable: none."""
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for index in (0, 1):
        data[index].effective = data[index].permitted = (mask >> (32 * index)) & 0xFFFFFFFF
    _check(libc.capset(ctypes.byref(header), data), "capset")


def drop_privileges(account: Account | None = None) -> dict[str, Any]:
    """Give up every privilege for good; return the process's :func:`privilege_status` afterwards.

    Sets no_new_privs, drops the bounding set, the ambient set and every
    capability, and, when :func:`switches_to` ``account``, first switches to its
    user and primary group with no supplementary group. Capabilities belong to
    each thread: threads that already run keep theirs, so the caller checks
    :func:`threads_still_privileged`. Raises OSError when the kernel refuses a
    step this process is entitled to (it would keep privileges it must not keep).
    """
    libc = _libc()
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    effective = privilege_status().get("CapEff", 0)
    # The bounding set can only shrink while CAP_SETPCAP is effective, so it goes first.
    if effective & (1 << CAP_SETPCAP):
        for capability in range(_last_capability() + 1):
            _check(libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0), "prctl(PR_CAPBSET_DROP, %d)" % capability)
    # Linux < 4.3 has no ambient set: EINVAL there means there is nothing to clear.
    if libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
        _check(-1, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    if switches_to(account):
        # Only what the switch itself needs, while it happens.
        _set_capabilities(libc, effective & ((1 << CAP_SETUID) | (1 << CAP_SETGID)))
        _become(account)
    _set_capabilities(libc, 0)
    return privilege_status()


def die_with_parent(parent_pid: int, signum: int) -> None:
    """Have the kernel send ``signum`` to this process when ``parent_pid`` (its parent's thread) ends.

    Call it after :func:`drop_privileges`: a change of user ID clears it. A
    parent that ended before the call is caught too (this process then signals itself).
    """
    libc = _libc()
    _check(libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signum)


def parent_death_signal() -> int:
    """The signal this process gets when its parent ends (0: none)."""
    value = ctypes.c_int(0)
    _check(_libc().prctl(PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0), "prctl(PR_GET_PDEATHSIG)")
    return value.value
