# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the DHCPv6 side of the server answers, as pure functions (no sockets, no clock).

Two modes (docs/ipv6.md says when to use which):

``proxy`` (default): beside the site's router and DHCPv6 server, which keep
giving addresses. Only network-boot firmware is answered:

* UDP 547, Solicit from UEFI PXE or UEFI HTTP boot -> Advertise without any
  IA (no address), with our server identifier, the client's vendor class
  (16) echoed as ``PXEClient``/``HTTPClient`` and a boot file URL (59):
  ``tftp://[server]/<ipxe binary>`` for PXE, ``http://[server]:port/ipxe/<binary>``
  for HTTP boot. EDK2 takes its address from the site's Advertise and this
  one as its "proxy offer";
* UDP 4011, the Request EDK2 then sends to the server named in that URL
  (our server id, the proxy offer's transaction id) -> Reply with the same
  boot file URL, back to its source;
* UDP 547, Information-request from iPXE (a router advertisement with only
  the O flag) -> Reply with the per-host script URL;
* everything else is ignored: iPXE's Solicit (iPXE takes its boot file only
  from the server that gives its address, so a proxy cannot help it on a
  stateful segment: the site's server has to name the script, see
  docs/ipv6.md), requests to other servers, relayed messages.

``addresses``: the only DHCPv6 server on an isolated segment (the server also
sends the router advertisements, see ndp.py). Network-boot clients of the
inventory get an address from ``prefix`` (the prefix's network part plus the
48 bits of their MAC, so no lease table is needed and a host keeps its
address across requests), with the boot file URL in the same answers:
Solicit -> Advertise (preference 255, or Reply with Rapid Commit),
Request/Renew/Rebind -> Reply with the address, Confirm/Release/Decline ->
Reply with a status, Information-request -> Reply.

This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from collections.abc import Mapping

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp6, events
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import boot_client, policy

__all__ = ("ServerConfig6", "Reply6", "decide6", "assigned_address", "MODE_PROXY", "MODE_ADDRESSES")

MODE_PROXY = "proxy"
MODE_ADDRESSES = "addresses"
MODES = (MODE_PROXY, MODE_ADDRESSES)

FIRMWARE_UNKNOWN = "unknown"  # lease upkeep does not say what sent it

IGNORE_RELAYED = "relayed"
IGNORE_OTHER_SERVER = "other-server"
IGNORE_NO_MAC = "no-mac"
IGNORE_NEEDS_ADDRESS = "needs-address"


@dataclasses.dataclass(frozen=True, slots=True)
class ServerConfig6:
    """The server's IPv6 side.

    ``server_ip`` is a global or unique-local address of the serving
    interface (URLs name it; firmware cannot reach a link-local one from a
    URL). ``duid`` identifies this server (DUID-LL of the interface).
    ``prefix`` (``addresses`` mode only) is the /64 (or shorter) to hand
    addresses from. Lifetimes are in seconds.
    """

    server_ip: str
    http_port: int
    duid: bytes
    binaries: frozenset = policy.IPXE_BINARIES
    efi_x86_64_binary: str = policy.IPXE_EFI_X86_64
    mode: str = MODE_PROXY
    prefix: str | None = None
    preferred_lifetime: int = 3600
    valid_lifetime: int = 7200

    def __post_init__(self) -> None:
        address = ipaddress.IPv6Address(self.server_ip.split("%", 1)[0])
        if address.is_link_local or address.is_multicast or address.is_unspecified:
            raise ValueError("the IPv6 server address must be global or unique-local, got %s" % self.server_ip)
        object.__setattr__(self, "server_ip", str(address))
        object.__setattr__(self, "binaries", frozenset(self.binaries))
        if self.mode not in MODES:
            raise ValueError("DHCPv6 mode must be one of %s, got %r" % (", ".join(MODES), self.mode))
        if self.mode == MODE_ADDRESSES:
            if self.prefix is None:
                raise ValueError("the addresses mode needs the prefix to hand addresses from")
            network = ipaddress.IPv6Network(self.prefix, strict=False)
            if network.prefixlen > 80:
                raise ValueError("prefix %s is too small: it must hold 48 bits of host part (/80 or shorter)" % self.prefix)
            object.__setattr__(self, "prefix", str(network))

    @property
    def http_base(self) -> str:
        return "http://[%s]:%d" % (self.server_ip, self.http_port)

    def script_url(self, mac: str) -> str:
        return "%s/boot/%s/script.ipxe" % (self.http_base, mac)

    def binary_url(self, name: str) -> str:
        return "%s/ipxe/%s" % (self.http_base, name)

    def tftp_url(self, name: str) -> str:
        return "tftp://[%s]/%s" % (self.server_ip, name)


@dataclasses.dataclass(frozen=True, slots=True)
class Reply6:
    """Send ``encode()`` to ``destination`` and record ``event`` (None: record nothing)."""

    message: dhcp6.Message
    destination: policy.Destination
    event: str | None
    client: boot_client.BootClient6
    boot_file: str | None
    address: str | None = None

    def encode(self) -> bytes:
        return dhcp6.encode(self.message)


def assigned_address(prefix: str, mac: str) -> str:
    """The address a MAC gets in ``addresses`` mode: the prefix's network part | the 48-bit MAC."""
    network = ipaddress.IPv6Network(prefix, strict=False)
    return str(network.network_address + int(mac.replace(":", ""), 16))


def boot_url(client: boot_client.BootClient6, config: ServerConfig6) -> str | None:
    """The boot file URL for a client (TFTP URL for firmware PXE), or None if no binary fits."""
    found = policy.boot_file_for(client, config)
    if found is None or "://" in found:
        return found
    return config.tftp_url(found)


def decide6(message: dhcp6.Message, port: int, source: tuple, host: policy.HostView | None,
            config: ServerConfig6, known_macs: Mapping[bytes, str] | None = None) -> policy.Ignore | Reply6:
    """Decide the answer to a decoded DHCPv6 ``message`` received on ``port`` (547 or 4011) from ``source``.

    ``source`` is the sender's socket address (its first item the IPv6
    address, possibly with ``%scope``); ``host`` the inventory view of the
    client's MAC (None when not in the inventory); ``known_macs`` maps client
    DUIDs to the MACs learnt from their earlier messages (see dhcp6.client_mac).
    """
    if message.relay is not None:
        return policy.Ignore(IGNORE_RELAYED, "relayed %s: answer clients on their own segment" % message.type_name)
    mtype = message.msg_type
    if port == dhcp6.PXE_PORT:
        if mtype != dhcp6.REQUEST:
            return policy.Ignore(policy.IGNORE_MESSAGE_TYPE, "%s on port 4011" % message.type_name)
    elif port == dhcp6.SERVER_PORT:
        if mtype not in _SERVER_PORT_TYPES:
            return policy.Ignore(policy.IGNORE_MESSAGE_TYPE, "%s on port 547" % message.type_name)
        server_id = message.server_id
        if server_id is not None and server_id != config.duid:
            return policy.Ignore(IGNORE_OTHER_SERVER, "%s for another DHCPv6 server" % message.type_name)
        if mtype in _NEEDS_SERVER_ID and server_id is None:
            return policy.Ignore(policy.IGNORE_MESSAGE_TYPE, "%s without a server identifier" % message.type_name)
        if config.mode == MODE_PROXY and mtype not in (dhcp6.SOLICIT, dhcp6.INFORMATION_REQUEST):
            return policy.Ignore(policy.IGNORE_MESSAGE_TYPE, "%s: a proxy holds no leases" % message.type_name)
    else:
        return policy.Ignore(policy.IGNORE_PORT, "port %r is neither 547 nor 4011" % (port,))
    if message.client_id is None:
        return policy.Ignore(policy.IGNORE_MESSAGE_TYPE, "%s without a client identifier" % message.type_name)

    source_ip = source[0] if source else None
    destination = policy.Destination(source[0], source[1])
    if mtype in _LEASE_TYPES:
        # Lease upkeep carries no vendor or user class: any inventory host's is answered (EDK2
        # waits for the Reply to its Release before it lets iPXE take the NIC).
        return _lease_reply(message, dhcp6.client_mac(message, source_ip, known_macs)[0], host, config, destination)
    client = boot_client.classify6(message, source_ip, known_macs)
    if client is None:
        if dhcp6.client_mac(message, source_ip, known_macs)[0] is None and _looks_netboot(message):
            return policy.Ignore(IGNORE_NO_MAC, "no MAC address in the link-local source %s nor the DUID" % source_ip)
        return policy.Ignore(policy.IGNORE_NOT_NETBOOT, "no PXEClient/HTTPClient vendor class nor iPXE user class")
    if host is None or host.mac.lower() != client.mac:
        return policy.Ignore(policy.IGNORE_UNKNOWN_HOST, "%s is not in the inventory" % client.mac)
    if host.finished:
        return policy.Ignore(policy.IGNORE_FINISHED, "%s already phoned home" % client.mac)
    system = policy.SYSTEM_FOR_ARCH.get(client.arch)
    if system is None:
        if client.firmware != boot_client.FIRMWARE_IPXE:
            return policy.Ignore(policy.IGNORE_UNSUPPORTED_ARCH, "client architecture %s (%s) has no iPXE binary"
                                 % (client.arch, client.arch_code))
    elif system != host.arch:
        return policy.Ignore(policy.IGNORE_ARCH_MISMATCH, "client is %s (%s) but the host is %s" % (client.arch, system, host.arch))

    script = client.firmware == boot_client.FIRMWARE_IPXE
    if config.mode == MODE_PROXY and script and mtype == dhcp6.SOLICIT:
        return policy.Ignore(IGNORE_NEEDS_ADDRESS, "iPXE takes its boot file only from the DHCPv6 server that gives its "
                                                   "address; on a stateful segment the site's server must name the script")
    url = boot_url(client, config)
    if url is None:
        return policy.Ignore(policy.IGNORE_NO_BOOT_FILE, "no iPXE binary available for %s" % client.arch)

    return _boot_reply(message, port, client, config, destination, url, script)


_SERVER_PORT_TYPES = frozenset((dhcp6.SOLICIT, dhcp6.REQUEST, dhcp6.CONFIRM, dhcp6.RENEW, dhcp6.REBIND,
                                dhcp6.RELEASE, dhcp6.DECLINE, dhcp6.INFORMATION_REQUEST))
_NEEDS_SERVER_ID = frozenset((dhcp6.REQUEST, dhcp6.RENEW, dhcp6.RELEASE, dhcp6.DECLINE))
# Only reach decide6's lease branch in addresses mode (a proxy holds no leases).
_LEASE_TYPES = frozenset((dhcp6.CONFIRM, dhcp6.RENEW, dhcp6.REBIND, dhcp6.RELEASE, dhcp6.DECLINE))


def _looks_netboot(message: dhcp6.Message) -> bool:
    return bool(message.vendor_classes or message.user_classes)


def _common_options(message: dhcp6.Message, config: ServerConfig6) -> list[tuple[int, bytes]]:
    return [
        (dhcp6.OPT_SERVERID, config.duid),
        (dhcp6.OPT_CLIENTID, message.client_id),
    ]


def _boot_reply(message: dhcp6.Message, port: int, client: boot_client.BootClient6, config: ServerConfig6,
                destination: policy.Destination, url: str, script: bool) -> Reply6:
    mtype = message.msg_type
    options = _common_options(message, config)
    address = None
    if config.mode == MODE_ADDRESSES and mtype in (dhcp6.SOLICIT, dhcp6.REQUEST):
        address = assigned_address(config.prefix, client.mac)
        options.extend(_ia_options(message, config, address))
    options.append((dhcp6.OPT_VENDOR_CLASS, dhcp6.vendor_class_option(client.enterprise, client.vendor_class.encode("ascii"))))
    options.append((dhcp6.OPT_BOOTFILE_URL, url.encode("ascii")))
    if mtype == dhcp6.SOLICIT:
        if config.mode == MODE_ADDRESSES and message.option(dhcp6.OPT_RAPID_COMMIT) is not None:
            reply_type = dhcp6.REPLY
            options.append((dhcp6.OPT_RAPID_COMMIT, b""))
        else:
            reply_type = dhcp6.ADVERTISE
            if config.mode == MODE_ADDRESSES:
                # The only server on the segment: tell the client not to wait for others.
                options.append((dhcp6.OPT_PREFERENCE, b"\xff"))
        event = events.SCRIPT_OFFERED if script else events.OFFERED
    else:
        reply_type = dhcp6.REPLY
        if mtype == dhcp6.INFORMATION_REQUEST or (mtype == dhcp6.REQUEST and port == dhcp6.SERVER_PORT and script):
            event = events.SCRIPT_OFFERED if script else events.OFFERED
        else:
            event = events.SCRIPT_ACKED if script else events.BOOT_FILE_ACKED
    reply = dhcp6.Message(reply_type, message.xid, tuple(options))
    return Reply6(reply, destination, event, client, url, address)


def _ia_options(message: dhcp6.Message, config: ServerConfig6, address: str) -> list[tuple[int, bytes]]:
    """An IA_NA holding ``address`` for each IA_NA of the request (same IAID)."""
    lifetimes = (address, config.preferred_lifetime, config.valid_lifetime)
    options = []
    for ia in message.all(dhcp6.OPT_IA_NA):
        iaid = ia[:4] if len(ia) >= 4 else b"\0\0\0\0"
        options.append((dhcp6.OPT_IA_NA, dhcp6.ia_na_option(iaid, config.preferred_lifetime // 2,
                                                            config.preferred_lifetime * 4 // 5, [lifetimes])))
    return options


def _lease_reply(message: dhcp6.Message, mac: str | None, host: policy.HostView | None, config: ServerConfig6,
                 destination: policy.Destination) -> policy.Ignore | Reply6:
    """Renew/Rebind -> the host's address again; Confirm -> on-link or not; Release/Decline -> success."""
    mtype = message.msg_type
    if mac is None:
        return policy.Ignore(IGNORE_NO_MAC, "%s without a MAC address in the link-local source nor the DUID" % message.type_name)
    if host is None or host.mac.lower() != mac:
        return policy.Ignore(policy.IGNORE_UNKNOWN_HOST, "%s is not in the inventory" % mac)
    if host.finished and mtype in (dhcp6.RENEW, dhcp6.REBIND):
        return policy.Ignore(policy.IGNORE_FINISHED, "%s already phoned home" % mac)
    options = _common_options(message, config)
    address = None
    if mtype in (dhcp6.RENEW, dhcp6.REBIND):
        address = assigned_address(config.prefix, mac)
        options.extend(_ia_options(message, config, address))
    else:
        status = dhcp6.STATUS_SUCCESS
        if mtype == dhcp6.CONFIRM:
            network = ipaddress.IPv6Network(config.prefix)
            for ia in message.all(dhcp6.OPT_IA_NA):
                try:
                    addresses = dhcp6.parse_ia_na(ia)[3]
                except dhcp6.MalformedPacket:
                    continue
                if any(ipaddress.IPv6Address(a) not in network for a in addresses):
                    status = dhcp6.STATUS_NOT_ON_LINK
        options.append((dhcp6.OPT_STATUS_CODE, struct.pack("!H", status)))
    client = boot_client.BootClient6(mac=mac, arch=boot_client.ARCH_UNKNOWN, arch_code=None, firmware=FIRMWARE_UNKNOWN)
    return Reply6(dhcp6.Message(dhcp6.REPLY, message.xid, tuple(options)), destination, events.DHCP6_LEASE, client, None, address)
