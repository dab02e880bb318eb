# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the proxyDHCP server answers, as pure functions.

No sockets and no clock: :func:`decide` takes a decoded request, the port it
arrived on, its source address, a view of the inventory host with that MAC
and the server configuration, and returns either :class:`Ignore` or a
:class:`Reply` that holds the packet to send, where to send it and the event
to record. The socket layer only encodes and sends, from the socket the
request came in on (iPXE drops a 4011 answer that does not come from 4011).

Who gets what (see docs/dhcp.md for the reasons):

* port 67, DHCPDISCOVER -> DHCPOFFER with yiaddr 0, siaddr and option 54 =
  this server, option 60 ``PXEClient`` (``HTTPClient`` for UEFI HTTP boot),
  option 97 echoed when present, and a boot file:
  - firmware PXE: the iPXE binary for its architecture, by TFTP name;
    BIOS clients also get option 43 (discovery control 8: boot the file
    name, no boot server discovery); UEFI clients get no option 43, so they
    ask again on 4011 (the "BINL" path of EDK2-based firmware);
  - UEFI HTTP boot: ``{http_base}/ipxe/<binary>``;
  - iPXE: the per-host script URL ``{http_base}/boot/{mac}/script.ipxe``,
    so it does not fetch iPXE again and loop.
* port 4011, DHCPREQUEST or DHCPINFORM -> DHCPACK with the same boot file,
  sent back to the source address and port of the request.
* everything else, unknown MACs and hosts that already phoned home -> Ignore.

This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp, events
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import boot_client

__all__ = (
    "HostView", "ServerConfig", "Destination", "Ignore", "Reply", "decide", "boot_file_for", "BootFields", "boot_fields",
    "reply_destination", "IPXE_BINARIES", "SYSTEM_FOR_ARCH", "OFFER_REPEATS",
)

IPXE_BIOS = "undionly.kpxe"
IPXE_EFI_X86_64 = "ipxe.efi"
SNPONLY_EFI_X86_64 = "snponly.efi"
IPXE_EFI_ARM64 = "ipxe-arm64.efi"
IPXE_BINARIES = frozenset((IPXE_BIOS, IPXE_EFI_X86_64, SNPONLY_EFI_X86_64, IPXE_EFI_ARM64))

# Client architecture (dhcp.ARCH_*) -> the Nix system it can run.
SYSTEM_FOR_ARCH = {
    boot_client.ARCH_BIOS: "x86_64-linux",
    boot_client.ARCH_EFI_X86_64: "x86_64-linux",
    boot_client.ARCH_EFI_ARM64: "aarch64-linux",
}

# Reasons to ignore a packet (stable codes, good for counters and debug logs).
IGNORE_PORT = "port"
IGNORE_NOT_REQUEST = "not-request"
IGNORE_MESSAGE_TYPE = "message-type"
IGNORE_NOT_NETBOOT = "not-netboot"
IGNORE_UNKNOWN_HOST = "unknown-host"
IGNORE_FINISHED = "finished"
IGNORE_UNSUPPORTED_ARCH = "unsupported-arch"
IGNORE_ARCH_MISMATCH = "arch-mismatch"
IGNORE_NO_BOOT_FILE = "no-boot-file"

# A proxy offer is sent again after these delays (seconds). Firmware waits for proxy offers only
# while it discovers: iPXE sends DISCOVER at 0 s and 1 s and moves on with the site's offer at
# about 3 s, so a lost proxy offer had one more chance at most, and a boot without one has no
# boot file ("Nothing to boot"). The repeats land inside that window for either DISCOVER (and
# inside EDK2's first 4 s of collecting offers); a client ignores a copy it already has.
OFFER_REPEATS = (0.5, 1.5)

_BROADCAST = "255.255.255.255"
_ANY = "0.0.0.0"


@dataclasses.dataclass(frozen=True, slots=True)
class HostView:
    """What the policy needs to know about an inventory host.

    ``mac`` in lower-case colon form; ``arch`` ``x86_64-linux`` or
    ``aarch64-linux``; ``finished`` once the host phoned home (offers are
    one-shot: a finished host is never answered again in this run).
    """

    mac: str
    arch: str = "x86_64-linux"
    finished: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class ServerConfig:
    """The server's side: its IPv4 address, HTTP base URL and the iPXE binaries it serves.

    ``http_base`` is ``http://<ip>:<port>`` (a trailing slash is dropped).
    ``binaries`` names the files the TFTP and ``/ipxe/`` HTTP routes can
    serve; ``efi_x86_64_binary`` picks ``ipxe.efi`` (own drivers) or
    ``snponly.efi`` (the firmware's network driver) for UEFI x86_64.
    """

    server_ip: str
    http_base: str
    binaries: frozenset = IPXE_BINARIES
    efi_x86_64_binary: str = IPXE_EFI_X86_64

    def __post_init__(self) -> None:
        ip = str(ipaddress.IPv4Address(self.server_ip))
        object.__setattr__(self, "server_ip", ip)
        base = self.http_base.rstrip("/")
        base.encode("ascii")  # UnicodeEncodeError is a ValueError: boot file names are ASCII
        if not base.startswith(("http://", "https://")):
            raise ValueError("http_base must be an http:// URL, got %r" % self.http_base)
        object.__setattr__(self, "http_base", base)
        object.__setattr__(self, "binaries", frozenset(self.binaries))
        if self.efi_x86_64_binary not in (IPXE_EFI_X86_64, SNPONLY_EFI_X86_64):
            raise ValueError("efi_x86_64_binary must be ipxe.efi or snponly.efi, got %r" % self.efi_x86_64_binary)

    def script_url(self, mac: str) -> str:
        return "%s/boot/%s/script.ipxe" % (self.http_base, mac)

    def binary_url(self, name: str) -> str:
        return "%s/ipxe/%s" % (self.http_base, name)


@dataclasses.dataclass(frozen=True, slots=True)
class Destination:
    """Where to send a reply: ``(ip, port)``; ``broadcast`` means the socket needs SO_BROADCAST
    and must go out of the interface the request came in on."""

    ip: str
    port: int
    broadcast: bool = False

    @property
    def address(self) -> tuple:
        return (self.ip, self.port)


@dataclasses.dataclass(frozen=True, slots=True)
class Ignore:
    """Do not answer. ``reason`` is one of the IGNORE_* codes, ``detail`` says more."""

    reason: str
    detail: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """Send ``encode()`` to ``destination`` from the socket the request arrived on, and record ``event``."""

    packet: dhcp.DhcpPacket
    destination: Destination
    event: str
    client: boot_client.BootClient
    boot_file: str
    #: Send the same answer again after each of these delays (seconds): see OFFER_REPEATS.
    repeats: tuple = ()

    def encode(self) -> bytes:
        return dhcp.encode(self.packet)


def reply_destination(request: dhcp.DhcpPacket, port: int, source: tuple) -> Destination:
    """RFC 2131 section 4.1 for port 67; back to the sender for port 4011.

    Port 67: via the relay (giaddr, port 67) if any; else unicast to ciaddr
    if the client has one; else broadcast to port 68 (a proxy offers no
    yiaddr, so there is nothing to unicast to, whatever the broadcast flag).
    Port 4011: the request's source address and port (OVMF sends from 4011,
    iPXE from 68); ciaddr or broadcast only if the source is unusable.
    """
    if port == dhcp.PXE_PORT:
        src_ip, src_port = source[0], source[1]
        if src_ip and src_ip != _ANY and src_port:
            return Destination(src_ip, src_port)
        if request.ciaddr != _ANY:
            return Destination(request.ciaddr, src_port or dhcp.CLIENT_PORT)
        return Destination(_BROADCAST, src_port or dhcp.CLIENT_PORT, True)
    if request.giaddr != _ANY:
        return Destination(request.giaddr, dhcp.SERVER_PORT)
    if request.ciaddr != _ANY:
        return Destination(request.ciaddr, dhcp.CLIENT_PORT)
    return Destination(_BROADCAST, dhcp.CLIENT_PORT, True)


def boot_file_for(client: boot_client.BootClient, config: ServerConfig) -> str | None:
    """The boot file name or URL for a client, or None if no available binary fits."""
    if client.firmware == boot_client.FIRMWARE_IPXE and client.ipxe_can_http:
        return config.script_url(client.mac)
    if client.arch == boot_client.ARCH_BIOS:
        name = IPXE_BIOS
    elif client.arch == boot_client.ARCH_EFI_X86_64:
        name = config.efi_x86_64_binary
        if name not in config.binaries:
            other = SNPONLY_EFI_X86_64 if name == IPXE_EFI_X86_64 else IPXE_EFI_X86_64
            name = other
    elif client.arch == boot_client.ARCH_EFI_ARM64:
        name = IPXE_EFI_ARM64
    else:
        return None
    if name not in config.binaries:
        return None
    if client.firmware == boot_client.FIRMWARE_HTTPBOOT:
        return config.binary_url(name)
    return name


def decide(request: dhcp.DhcpPacket, port: int, source: tuple, host: HostView | None, config: ServerConfig) -> Ignore | Reply:
    """Decide the answer to ``request`` (decoded), received on ``port`` (67 or 4011) from ``source``.

    ``host`` is the inventory view for ``request.mac`` (None when the MAC is
    not in the inventory). Returns :class:`Ignore` or :class:`Reply`.
    """
    if port == dhcp.SERVER_PORT:
        if request.op != dhcp.BOOTREQUEST:
            return Ignore(IGNORE_NOT_REQUEST, "BOOTREPLY from another server")
        mtype = request.message_type
        if mtype != dhcp.DHCPDISCOVER:
            # Pixiecore's rule: on 67 a proxy answers DISCOVER only; the
            # REQUEST that follows selects the address server's offer, and
            # clients that still need a boot file ask us on 4011.
            return Ignore(IGNORE_MESSAGE_TYPE, "%s on port 67" % request.message_type_name)
        reply_type = dhcp.DHCPOFFER
    elif port == dhcp.PXE_PORT:
        if request.op != dhcp.BOOTREQUEST:
            return Ignore(IGNORE_NOT_REQUEST, "BOOTREPLY on port 4011")
        mtype = request.message_type
        if mtype != dhcp.DHCPREQUEST and mtype != dhcp.DHCPINFORM:
            return Ignore(IGNORE_MESSAGE_TYPE, "%s on port 4011" % request.message_type_name)
        # Option 54 is not checked: 4011 requests are unicast to this server
        # (a broadcast boot server discovery goes to port 67), and firmware
        # is not consistent about what it puts there.
        reply_type = dhcp.DHCPACK
    else:
        return Ignore(IGNORE_PORT, "port %r is neither 67 nor 4011" % (port,))

    choice = _boot_choice(request, host, config)
    if isinstance(choice, Ignore):
        return choice
    client, boot_file = choice

    event = _boot_event(client, reply_type)
    packet = _build_reply(request, reply_type, client, boot_file, config)
    repeats = OFFER_REPEATS if reply_type == dhcp.DHCPOFFER else ()
    return Reply(packet, reply_destination(request, port, source), event, client, boot_file, repeats)


def _boot_choice(request: dhcp.DhcpPacket, host: HostView | None,
                 config: ServerConfig) -> Ignore | tuple[boot_client.BootClient, str]:
    """The client and its boot file, or why it gets none."""
    client = boot_client.classify(request)
    if client is None:
        return Ignore(IGNORE_NOT_NETBOOT, "no PXEClient/HTTPClient vendor class nor iPXE user class")
    if host is None or host.mac.lower() != client.mac:
        return Ignore(IGNORE_UNKNOWN_HOST, "%s is not in the inventory" % client.mac)
    if host.finished:
        return Ignore(IGNORE_FINISHED, "%s already phoned home" % client.mac)

    system = SYSTEM_FOR_ARCH.get(client.arch)
    if system is None:
        if not (client.firmware == boot_client.FIRMWARE_IPXE and client.ipxe_can_http and client.arch == boot_client.ARCH_UNKNOWN):
            return Ignore(IGNORE_UNSUPPORTED_ARCH, "client architecture %s (%s) has no iPXE binary" % (client.arch, client.arch_code))
        # An iPXE that did not say its architecture can still run the script.
    elif system != host.arch:
        return Ignore(IGNORE_ARCH_MISMATCH, "client is %s (%s) but the host is %s" % (client.arch, system, host.arch))

    boot_file = boot_file_for(client, config)
    if boot_file is None:
        return Ignore(IGNORE_NO_BOOT_FILE, "no iPXE binary available for %s" % client.arch)
    return client, boot_file


def _boot_event(client: boot_client.BootClient, reply_type: int) -> str:
    """The boot stage an answer records: an offer or ack of an iPXE binary, or of the script."""
    script = client.firmware == boot_client.FIRMWARE_IPXE and client.ipxe_can_http
    if reply_type == dhcp.DHCPOFFER:
        return events.SCRIPT_OFFERED if script else events.OFFERED
    return events.SCRIPT_ACKED if script else events.BOOT_FILE_ACKED


@dataclasses.dataclass(frozen=True, slots=True)
class BootFields:
    """The boot part of an address server's answer to a network-boot client (``dhcp: addresses``):
    header fields, options, and the boot stage to record (an ``events`` name)."""

    siaddr: str
    sname: bytes
    file: bytes
    options: dict
    event: str

    @property
    def boot_file(self) -> str:
        """The boot file name or URL, wherever it is carried (``file``, or option 67 when long)."""
        return (self.options.get(dhcp.OPT_BOOTFILE) or self.file).decode("ascii")


def boot_fields(request: dhcp.DhcpPacket, host: HostView | None, config: ServerConfig) -> Ignore | BootFields:
    """What a DISCOVER (OFFER) or REQUEST (ACK) of a network-boot client adds to its lease, or
    why it gets no boot file (then it gets its address alone)."""
    choice = _boot_choice(request, host, config)
    if isinstance(choice, Ignore):
        return choice
    client, boot_file = choice
    reply_type = dhcp.DHCPOFFER if request.message_type == dhcp.DHCPDISCOVER else dhcp.DHCPACK
    options, file_bytes = _boot_options(reply_type, client, boot_file)
    server = config.server_ip
    return BootFields(server, server.encode("ascii"), file_bytes, options, _boot_event(client, reply_type))


def _boot_options(reply_type: int, client: boot_client.BootClient, boot_file: str) -> tuple[dict, bytes]:
    """The boot options of an answer (vendor class, GUID, PXE option 43, long boot file) and the
    ``file`` field."""
    options = {dhcp.OPT_VENDOR_CLASS: client.vendor_class.encode("ascii")}
    if client.guid is not None:
        options[dhcp.OPT_CLIENT_GUID] = client.guid
    # PXE 2.1 option 43. BIOS: discovery control (6) bit 3 = take the boot
    # file name from this packet, no boot server discovery. UEFI gets no
    # option 43 in the offer (see the module docstring). A boot server
    # request (sub-option 71, on 4011) gets its boot item echoed in the ACK.
    sub = []
    if client.arch == boot_client.ARCH_BIOS and client.firmware != boot_client.FIRMWARE_HTTPBOOT:
        sub.append((dhcp.PXE_DISCOVERY_CONTROL, bytes((dhcp.PXE_DISCOVERY_USE_BOOTFILE,))))
    if client.boot_item is not None and reply_type == dhcp.DHCPACK:
        sub.append((dhcp.PXE_BOOT_ITEM, client.boot_item))
    if sub:
        options[dhcp.OPT_VENDOR_SPECIFIC] = dhcp.encode_suboptions(sub)
    file_bytes = boot_file.encode("ascii")
    if len(file_bytes) > 127:
        options[dhcp.OPT_BOOTFILE] = file_bytes
        file_bytes = b""
    return options, file_bytes


def _build_reply(request: dhcp.DhcpPacket, reply_type: int, client: boot_client.BootClient, boot_file: str,
                 config: ServerConfig) -> bytes:
    server = config.server_ip
    options = {
        dhcp.OPT_MESSAGE_TYPE: bytes((reply_type,)),
        dhcp.OPT_SERVER_ID: socket.inet_aton(server),
    }
    boot_options, file_bytes = _boot_options(reply_type, client, boot_file)
    options.update(boot_options)
    # RFC 2131 table 3: ciaddr 0 in an OFFER, the client's own in an ACK.
    return dhcp.make_reply(
        request, options,
        ciaddr=request.ciaddr if reply_type == dhcp.DHCPACK else _ANY,
        siaddr=server, sname=server.encode("ascii"), file=file_bytes,
    )
