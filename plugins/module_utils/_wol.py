# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wake-on-LAN for the wake_on_lan module, without Ansible.

``plan`` checks the module's parameters and builds every payload (pure, no
I/O). ``prepare`` looks up what the machine must answer (the interface index,
a host name) without sending anything: check mode stops there. ``send`` opens
one UDP socket and sends each payload ``repeat`` times, ``interval`` seconds
between rounds.

Payloads come from the ``wakeonlan`` library's ``create_magic_packet``. Its
``wake()`` is not used to send, because it cannot do what a multi-homed
controller needs: its ``interface`` argument is a source IP address to bind,
not an interface; it cannot pin the socket to a NIC (SO_BINDTODEVICE) so that
255.255.255.255 leaves through the machines' segment instead of the default
route; it cannot scope IPv6 link-local multicast (ff02::1) to an interface;
and it sends each packet once. This file is private to the collection.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import re
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._hosts import normalize_mac

try:
    import wakeonlan
except ImportError:
    wakeonlan = None
    WAKEONLAN_IMPORT_ERROR = traceback.format_exc()
else:
    WAKEONLAN_IMPORT_ERROR = None


DEFAULT_BROADCAST = "255.255.255.255"
DEFAULT_PORT = 9
DEFAULT_REPEAT = 3
DEFAULT_INTERVAL = 0.1
# 6 bytes of 0xff, then the target MAC 16 times.
MAGIC_PACKET_SIZE = 6 + 16 * 6

_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


class WolError(Exception):
    """Magic packets cannot be planned or sent; the message says why and what to do.

    ``sent`` lists what had already gone out when sending stopped half-way.
    """

    def __init__(self, message: str, sent: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.sent = sent or []


@dataclasses.dataclass
class Plan:
    macs: list            # normalised, lower-case colon form, duplicates removed, in the given order
    payloads: dict        # mac -> bytes
    address: str          # destination as given (IP literal without scope, or host name)
    port: int
    interface: str | None
    source_address: str | None
    repeat: int
    interval: float
    family: int | None = None     # socket.AF_INET / AF_INET6; None until a host name is resolved
    scoped: bool = False          # IPv6 link- or interface-local: needs the interface's index
    ifindex: int | None = None    # filled by prepare()
    sockaddr: tuple | None = None  # filled by prepare()
    warnings: list = dataclasses.field(default_factory=list)  # for module.warn()


# -- pure parts ----------------------------------------------------------------------

def from_sexagesimal(text: object) -> str | None:
    """The MAC that YAML 1.1 read as a base-60 number, or None.

    Unquoted, ``52:54:00:12:34:01`` is the integer 41135085241 to YAML 1.1
    (PyYAML, hence Ansible): digits-only groups, the first one not starting
    with 0, the others below 60. Ansible then hands the module the string
    "41135085241". Such a number has 10 or 11 digits, which no MAC spelling
    has, so turning it back is unambiguous.
    """
    text = str(text).strip()
    if not (text.isdigit() and len(text) in (10, 11)):
        return None
    value = int(text)
    groups = []
    for dummy in range(5):
        value, digit = divmod(value, 60)
        groups.append(digit)
    if not 10 <= value <= 99:
        return None
    groups.append(value)
    return ":".join("%02d" % group for group in reversed(groups))


def parse_macs(entries: Iterable[object], warnings: list[str] | None = None) -> list[str]:
    """Normalise a list of MAC addresses in any usual spelling; duplicates are dropped.

    A bad entry is named by its position and value. A MAC that YAML turned
    into a number is turned back, with a note appended to ``warnings``.
    """
    macs = []
    for index, entry in enumerate(entries or []):
        text = str(entry).strip() if entry is not None else ""
        mac = normalize_mac(text)
        if mac is None:
            mac = from_sexagesimal(text)
            if mac is not None and warnings is not None:
                warnings.append("mac[%d] reached the module as the number %s because YAML reads an unquoted %s as a "
                                "base-60 number; it was taken as %s, but quote MAC addresses in YAML" % (index, text, mac, mac))
        if mac is None:
            raise WolError("mac[%d] %r is not a MAC address; use aa:bb:cc:dd:ee:ff, AA-BB-CC-DD-EE-FF, "
                           "aabb.ccdd.eeff or aabbccddeeff" % (index, entry))
        if mac not in macs:
            macs.append(mac)
    return macs


def parse_password(text: str | None, warnings: list[str] | None = None) -> bytes:
    """The SecureOn password as bytes: 6 bytes in a MAC spelling, or 4 bytes in IPv4 dotted form.

    Error messages and warnings never repeat the password.
    """
    if text is None or text == "":
        return b""
    text = str(text).strip()
    mac_form = normalize_mac(text)
    if mac_form is None:
        mac_form = from_sexagesimal(text)
        if mac_form is not None and warnings is not None:
            warnings.append("password reached the module as a number because YAML reads an unquoted "
                            "nn:nn:nn:nn:nn:nn as a base-60 number; it was turned back, but quote it in YAML")
    if mac_form is not None:
        return bytes.fromhex(mac_form.replace(":", ""))
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError:
        pass
    raise WolError("password is not a SecureOn password: give 6 bytes as aa:bb:cc:dd:ee:ff "
                   "(or another MAC spelling) or 4 bytes as a.b.c.d (each 0-255)")


def magic_packet(mac: str, password: bytes = b"") -> bytes:
    """The UDP payload that wakes ``mac``: 102 bytes, plus 4 or 6 with a SecureOn password.

    The library builds the 102 bytes. It also takes a SecureOn password, but
    only as ``mac/password`` with a 6-byte hex password, so 4-byte passwords
    cannot be expressed; the password is appended here for both sizes, which
    is what the library does for 6 bytes (the password follows the 16 MACs).
    """
    if wakeonlan is None:
        raise WolError("the wakeonlan Python library is needed to build magic packets")
    packet = wakeonlan.create_magic_packet(mac)
    if len(packet) != MAGIC_PACKET_SIZE:
        raise WolError("the wakeonlan library built a %d-byte packet for %s; expected %d" % (len(packet), mac, MAGIC_PACKET_SIZE))
    if len(password) not in (0, 4, 6):
        raise WolError("a SecureOn password is 4 or 6 bytes, not %d" % len(password))
    return packet + password


def parse_destination(text: str, interface: str | None = None) -> tuple[int | None, str, str | None, bool]:
    """``(family, address, scope, scoped)`` for the destination option.

    ``family`` is None for a host name (resolved by ``prepare``). An IPv6
    address may carry its interface as ``ff02::1%eth0``; link-local and
    interface-local IPv6 destinations (fe80::/10, ff01::/16, ff02::/16) need
    one, from there or from the interface option.
    """
    text = str(text or "").strip()
    if not text:
        raise WolError("broadcast is empty; give 255.255.255.255, the segment's broadcast address or ff02::1")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is None:
        if _HOST_NAME.match(text) and not text.replace(".", "").isdigit():
            return None, text, None, False
        raise WolError("broadcast %r is neither an IP address nor a host name" % text)
    if address.version == 4:
        return socket.AF_INET, str(address), None, False
    scope = address.scope_id
    bare = str(address).split("%", 1)[0]
    if scope and interface and scope != interface:
        raise WolError("broadcast %s names interface %s but interface is %s; give one of them" % (text, scope, interface))
    scoped = address.is_link_local or (address.is_multicast and (address.packed[1] & 0x0F) in (1, 2))
    if scoped and not (scope or interface):
        raise WolError("%s is link-local: set interface to the NIC on the machines' segment (or write %s%%<interface>)" % (bare, bare))
    return socket.AF_INET6, bare, scope, scoped


def plan(params: Mapping[str, Any]) -> Plan:
    """Check the module's parameters and build the payloads; no I/O."""
    warnings = []
    macs = parse_macs(params.get("mac"), warnings)
    password = parse_password(params.get("password"), warnings)
    port = params.get("port", DEFAULT_PORT)
    if port is None or not 1 <= int(port) <= 65535:
        raise WolError("port %s is not a UDP port (1-65535)" % port)
    repeat = params.get("repeat", DEFAULT_REPEAT)
    if repeat is None or int(repeat) < 1:
        raise WolError("repeat must be at least 1, not %s" % repeat)
    interval = params.get("interval", DEFAULT_INTERVAL)
    if interval is None or float(interval) < 0:
        raise WolError("interval must be 0 or more seconds, not %s" % interval)
    interface = params.get("interface") or None
    family, address, scope, scoped = parse_destination(params.get("broadcast") or DEFAULT_BROADCAST, interface)
    interface = interface or scope
    source = params.get("source_address") or None
    if source is not None:
        try:
            source_ip = ipaddress.ip_address(source)
        except ValueError:
            raise WolError("source_address %r is not an IP address" % source) from None
        source_family = socket.AF_INET if source_ip.version == 4 else socket.AF_INET6
        if family is not None and source_family != family:
            raise WolError("source_address %s and broadcast %s are not of the same IP version" % (source, address))
        if source_ip.version == 6 and source_ip.scope_id:
            if interface and source_ip.scope_id != interface:
                raise WolError("source_address %s names interface %s but interface is %s" % (source, source_ip.scope_id, interface))
            interface = source_ip.scope_id
        source = str(source_ip).split("%", 1)[0]
    return Plan(macs=macs, payloads={mac: magic_packet(mac, password) for mac in macs}, address=address, port=int(port),
                interface=interface, source_address=source, repeat=int(repeat), interval=float(interval),
                family=family, scoped=scoped, warnings=warnings)


def describe(the_plan: Plan, counts: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """The module's ``sent`` list: one entry per MAC, never the password."""
    return [dict(mac=mac, destination=the_plan.address, port=the_plan.port, interface=the_plan.interface,
                 count=the_plan.repeat if counts is None else counts.get(mac, 0), bytes=len(the_plan.payloads[mac]))
            for mac in the_plan.macs]


def explain_os_error(exc: OSError, action: str, the_plan: Plan) -> str:
    """One sentence for an OSError raised while ``action`` ("bind", "interface", "send")."""
    code = exc.errno
    where = the_plan.address + (" via %s" % the_plan.interface if the_plan.interface else "")
    if action == "interface":
        if code == errno.ENODEV:
            return "interface %r does not exist on this machine (ip link lists the interfaces)" % the_plan.interface
        if code in (errno.EPERM, errno.EACCES):
            return ("binding the socket to interface %r was refused (%s): SO_BINDTODEVICE needs root or CAP_NET_RAW "
                    "on Linux before 5.7 and under some security policies; use become: true, or leave interface "
                    "unset and give the segment's broadcast address and source_address" % (the_plan.interface, exc.strerror))
        return "cannot bind the socket to interface %r: %s" % (the_plan.interface, exc.strerror or exc)
    if action == "bind":
        if code == errno.EADDRNOTAVAIL:
            return "source_address %s is not an address of this machine%s" % (
                the_plan.source_address, " on %s" % the_plan.interface if the_plan.interface else "")
        if code in (errno.EPERM, errno.EACCES):
            return "binding to source_address %s was refused: %s" % (the_plan.source_address, exc.strerror)
        return "cannot bind to source_address %s: %s" % (the_plan.source_address, exc.strerror or exc)
    if code in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
        return ("network unreachable: this machine has no route to %s (%s); set interface to the NIC on the machines' "
                "segment or broadcast to that segment's broadcast address" % (where, exc.strerror))
    if code in (errno.EPERM, errno.EACCES):
        return ("sending to %s port %d was refused (%s); a firewall rule may drop it, or the address is a broadcast "
                "address the kernel does not treat as one" % (where, the_plan.port, exc.strerror))
    if code == errno.ENETDOWN:
        return "cannot send to %s: the interface is down" % where
    return "cannot send to %s port %d: %s" % (where, the_plan.port, exc.strerror or exc)


# -- edges: lookups and the socket ----------------------------------------------------

def prepare(the_plan: Plan, if_nametoindex: Callable[[str], int] | None = None,
            getaddrinfo: Callable[..., list] | None = None) -> Plan:
    """Look up the interface and resolve a host name; sends nothing (check mode stops here)."""
    if_nametoindex = if_nametoindex or socket.if_nametoindex
    getaddrinfo = getaddrinfo or socket.getaddrinfo
    if the_plan.interface is not None:
        try:
            the_plan.ifindex = if_nametoindex(the_plan.interface)
        except OSError:
            raise WolError("interface %r does not exist on this machine (ip link lists the interfaces)" % the_plan.interface) from None
    if the_plan.family is None:
        family = socket.AF_UNSPEC
        if the_plan.source_address is not None:
            family = socket.AF_INET6 if ":" in the_plan.source_address else socket.AF_INET
        try:
            infos = getaddrinfo(the_plan.address, the_plan.port, family, socket.SOCK_DGRAM)
        except (OSError, UnicodeError) as exc:
            raise WolError("cannot resolve broadcast %r: %s" % (the_plan.address, getattr(exc, "strerror", None) or exc)) from None
        if not infos:
            raise WolError("cannot resolve broadcast %r: no address" % the_plan.address)
        the_plan.family = infos[0][0]
        the_plan.address = infos[0][4][0]
    if the_plan.family == socket.AF_INET6:
        scope = the_plan.ifindex if (the_plan.scoped and the_plan.ifindex) else 0
        the_plan.sockaddr = (the_plan.address, the_plan.port, 0, scope)
    else:
        the_plan.sockaddr = (the_plan.address, the_plan.port)
    return the_plan


def open_socket(the_plan: Plan, socket_factory: Callable[..., socket.socket] | None = None) -> socket.socket:
    """A UDP socket pinned to the plan's interface and source address, ready to broadcast."""
    socket_factory = socket_factory or socket.socket
    sock = socket_factory(the_plan.family, socket.SOCK_DGRAM)
    try:
        if the_plan.family == socket.AF_INET:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if the_plan.interface is not None:
            option = getattr(socket, "SO_BINDTODEVICE", None)
            if option is None:
                raise WolError("choosing interface %r needs Linux (SO_BINDTODEVICE); on this system give "
                               "source_address and the segment's broadcast address instead" % the_plan.interface)
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, the_plan.interface.encode())
            except OSError as exc:
                raise WolError(explain_os_error(exc, "interface", the_plan)) from None
            if the_plan.family == socket.AF_INET6 and the_plan.ifindex:
                # Multicast leaves through the interface named here, not the one the routing table picks.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, the_plan.ifindex)
        if the_plan.source_address is not None:
            if the_plan.family == socket.AF_INET6:
                local = (the_plan.source_address, 0, 0, the_plan.ifindex or 0)
            else:
                local = (the_plan.source_address, 0)
            try:
                sock.bind(local)
            except OSError as exc:
                raise WolError(explain_os_error(exc, "bind", the_plan)) from None
    except BaseException:
        sock.close()
        raise
    return sock


def send(the_plan: Plan, socket_factory: Callable[..., socket.socket] | None = None,
         sleep: Callable[[float], object] = time.sleep) -> list[dict[str, Any]]:
    """Send every payload ``repeat`` times; returns the ``sent`` list.

    A round sends one packet per MAC back to back; rounds are ``interval``
    seconds apart. Call ``prepare`` first.
    """
    counts = {mac: 0 for mac in the_plan.macs}
    if not the_plan.macs:
        return []
    sock = open_socket(the_plan, socket_factory)
    try:
        for round_number in range(the_plan.repeat):
            if round_number and the_plan.interval:
                sleep(the_plan.interval)
            for mac in the_plan.macs:
                try:
                    sock.sendto(the_plan.payloads[mac], the_plan.sockaddr)
                except OSError as exc:
                    raise WolError(explain_os_error(exc, "send", the_plan), sent=describe(the_plan, counts)) from None
                counts[mac] += 1
    finally:
        sock.close()
    return describe(the_plan, counts)
