# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Can the netboot server bind its ports? Each is bound as the server binds it, then released.

When a bind fails, /proc tells which process holds the port: the socket's inode from
/proc/net/{udp,tcp}[6], then the process whose file descriptors include that socket.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Collection, Iterable

from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import api_http
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp
from ansible_collections.nixie.metal.plugins.module_utils._preflight import report

TFTP_PORT = 69
TCP_LISTEN = "0A"  # /proc/net/tcp's state column for a listening socket


def wanted_ports(http_port: int) -> list[tuple[str, int, str]]:
    """(protocol, port, role) the server binds with its default options and ``http_port``."""
    return [("udp", dhcp.SERVER_PORT, "proxyDHCP"), ("udp", dhcp.PXE_PORT, "PXE boot server"),
            ("udp", TFTP_PORT, "TFTP"), ("tcp", http_port, "HTTP")]


# -- binding, as the server does ------------------------------------------------------

def bind_like_server(protocol: str, port: int, interface: str, address: str | None) -> OSError | None:
    """Bind (and at once release) what the server would; return None, or the OSError it would meet."""
    try:
        if protocol == "tcp":
            api_http.listening_socket("0.0.0.0", port, 1).close()
            return None
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if port == TFTP_PORT:
                # The TFTP listener binds the serving address only (Server.start).
                sock.bind((address or "0.0.0.0", port))
            else:
                # The options of Server._dhcp_socket: a DHCP server bound to another interface may share the port.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                if interface:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
                sock.bind(("0.0.0.0", port))
        finally:
            sock.close()
    except OSError as exc:
        return exc
    return None


# -- who holds a port ----------------------------------------------------------------

def socket_inodes(proc_net_text: str, port: int, listening_only: bool = False) -> set[str]:
    """Inodes of the sockets in a /proc/net/{udp,tcp}[6] table bound to local ``port``."""
    inodes = set()
    for line in proc_net_text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or ":" not in fields[1]:
            continue
        try:
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
        except ValueError:
            continue
        if local_port != port or (listening_only and fields[3] != TCP_LISTEN) or fields[9] == "0":
            continue
        inodes.add(fields[9])
    return inodes


def processes_with_sockets(inodes: Collection[str], proc: str = "/proc") -> list[tuple[int, str]]:
    """``[(pid, name)]`` of the processes that have one of the socket ``inodes`` open."""
    wanted = {"socket:[%s]" % inode for inode in inodes}
    found = []
    if not wanted:
        return found
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        fd_dir = os.path.join(proc, entry, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        links = set()
        for fd in fds:
            try:
                links.add(os.readlink(os.path.join(fd_dir, fd)))
            except OSError:
                continue  # closed meanwhile (listdir's own descriptor is one)
        if links & wanted:
            try:
                with open(os.path.join(proc, entry, "comm"), encoding="utf-8", errors="replace") as handle:
                    name = handle.read().strip()
            except OSError:
                name = "?"
            found.append((int(entry), name))
    return sorted(found)


def holders(protocol: str, port: int, proc: str = "/proc") -> list[tuple[int, str]]:
    inodes = set()
    for table in (protocol, protocol + "6"):
        try:
            with open(os.path.join(proc, "net", table), encoding="ascii") as handle:
                inodes |= socket_inodes(handle.read(), port, listening_only=protocol == "tcp")
        except OSError:
            continue
    return processes_with_sockets(inodes, proc)


# -- the verdict -----------------------------------------------------------------------

def ports_row(results: Iterable[tuple[str, int, str, OSError | None, list[tuple[int, str]]]]) -> report.Row:
    """The verdict from ``[(protocol, port, role, error or None, [(pid, name)] holding it)]``."""
    taken, hints = [], []
    for protocol, port, role, error, holding in results:
        if error is None:
            continue
        what = "%s %d (%s)" % (protocol.upper(), port, role)
        if error.errno == errno.EACCES:
            taken.append("%s: permission denied" % what)
            hints.append("run as root (sudo), as the run itself does")
            continue
        if error.errno == errno.ENODEV:
            taken.append("%s: no such interface" % what)
            hints.append("set nixie_interface to an interface of this machine")
            continue
        who = ", ".join("%s (pid %d)" % (name, pid) for pid, name in holding)
        taken.append("%s is taken%s" % (what, " by " + who if who else " (%s)" % (error.strerror or error)))
        if protocol == "tcp":
            hints.append("stop %s, or set nixie_http_port to a free port" % (who or "what listens on TCP %d" % port))
        else:
            hints.append("stop %s (a DHCP/TFTP server on this machine, e.g. dnsmasq or a libvirt network on this "
                         "interface) for the run" % (who or "what holds UDP %d" % port))
    if taken:
        return report.failed(report.PORTS, "; ".join(taken), "; ".join(dict.fromkeys(hints)))
    free = ", ".join("%s %d" % (entry[0].upper(), entry[1]) for entry in results)
    return report.passed(report.PORTS, "free: %s" % free)


def read_ports(interface: str, address: str | None, http_port: int) -> report.Row:
    results = []
    for protocol, port, role in wanted_ports(http_port):
        error = bind_like_server(protocol, port, interface, address)
        holding = holders(protocol, port) if error is not None and error.errno == errno.EADDRINUSE else []
        results.append((protocol, port, role, error, holding))
    return ports_row(results)
