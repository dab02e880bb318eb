# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Giving up root's powers once the server's sockets are bound.

The server needs privilege only to bind: UDP 67, 4011 and 69 are below 1024
(``CAP_NET_BIND_SERVICE``) and ``SO_BINDTODEVICE`` on the DHCP sockets needs
``CAP_NET_RAW``. It opens no raw socket. Once everything is bound it drops
every capability — effective, permitted, inheritable, ambient and the
bounding set — and sets ``no_new_privs``, so neither the process nor
anything it could ever execute gets one back. It keeps its user ID: files it
still touches (its state file, the artifacts it serves) belong to that user
or are world-readable, and a user switch would change who may signal it.

Linux only (``prctl``/``capset`` through the C library); elsewhere, or
without the right to drop, :func:`drop_capabilities` says so and changes
nothing. See docs/reliability.md.
"""

from __future__ import annotations

import ctypes
import os

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_SETPCAP = 8
_CAPABILITY_VERSION_3 = 0x20080522
# /proc/<pid>/status lines that describe a process's privileges.
STATUS_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def privilege_status(pid="self"):
    """``{CapInh, CapPrm, CapEff, CapBnd, CapAmb, NoNewPrivs}`` of a process as integers, from /proc."""
    found = {}
    with open("/proc/%s/status" % pid, encoding="ascii", errors="replace") as handle:
        for line in handle:
            name, dummy, value = line.partition(":")
            if name in STATUS_FIELDS:
                found[name] = int(value.strip(), 16 if name.startswith("Cap") else 10)
    return found


def threads_with_capabilities():
    """Thread IDs of this process that still hold a capability (they are per thread on Linux)."""
    found = []
    for tid in sorted(os.listdir("/proc/self/task")):
        try:
            status = privilege_status("self/task/%s" % tid)
        except OSError:
            continue  # the thread ended meanwhile
        if status.get("CapEff") or status.get("CapPrm") or status.get("CapBnd"):
            found.append(int(tid))
    return found


def _last_capability():
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 63


def drop_capabilities():
    """Drop every capability for good and set no_new_privs; return the process's status afterwards.

    Capabilities belong to each thread: this drops those of the calling
    thread, and threads it starts later inherit nothing. Threads that already
    run keep theirs, so the caller checks :func:`threads_with_capabilities`.
    Raises OSError when the kernel refuses a step that this process is
    entitled to (it would then keep privileges it must not keep).
    """
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result, what):
        if result != 0:
            code = ctypes.get_errno()
            raise OSError(code, "%s: %s" % (what, os.strerror(code)))

    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    # The bounding set can only shrink while CAP_SETPCAP is effective, so it goes first.
    if privilege_status().get("CapEff", 0) & (1 << CAP_SETPCAP):
        for capability in range(_last_capability() + 1):
            check(libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0), "prctl(PR_CAPBSET_DROP, %d)" % capability)
    # Linux < 4.3 has no ambient set: EINVAL there means there is nothing to clear.
    if libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
        check(-1, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    check(libc.capset(ctypes.byref(header), data), "capset")
    return privilege_status()
