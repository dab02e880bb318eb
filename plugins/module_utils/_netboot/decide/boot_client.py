# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What kind of network-boot client sent a DHCP request: architecture, firmware, iPXE or not.

A decision read from a decoded message (:mod:`..wire.dhcp`,
:mod:`..wire.dhcp6`), not a codec: which options make a boot client, which
RFC 4578 numbers name which architecture, and when a client is UEFI HTTP
boot are this project's reading of the specifications and of what firmware
sends. :mod:`.policy` and :mod:`.policy6` answer the :class:`BootClient`
and :class:`BootClient6` made here.

This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp, dhcp6

__all__ = ("BootClient", "BootClient6", "classify", "classify6", "arch_from_vendor_class")

# -- iPXE option 175 feature sub-options (a feature is present when sent) -----

IPXE_FEATURE_PXE_EXT = 0x10
IPXE_FEATURE_HTTP = 0x13
IPXE_FEATURE_HTTPS = 0x14
IPXE_FEATURE_TFTP = 0x15
IPXE_FEATURE_EFI = 0x24

# -- RFC 4578 section 2.1 / IANA "Processor Architecture Types" ---------------

ARCH_BIOS = "bios"
ARCH_EFI_IA32 = "efi-ia32"
ARCH_EFI_X86_64 = "efi-x86_64"
ARCH_EFI_ARM32 = "efi-arm32"
ARCH_EFI_ARM64 = "efi-arm64"
ARCH_UNKNOWN = "unknown"

ARCH_CODES = {
    0: ARCH_BIOS,          # Intel x86PC
    6: ARCH_EFI_IA32,
    7: ARCH_EFI_X86_64,    # listed as "EFI BC" in RFC 4578, x86-64 in practice (errata 4284)
    9: ARCH_EFI_X86_64,
    10: ARCH_EFI_ARM32,
    11: ARCH_EFI_ARM64,
    15: ARCH_EFI_IA32,     # x86 UEFI HTTP
    16: ARCH_EFI_X86_64,   # x64 UEFI HTTP
    18: ARCH_EFI_ARM32,    # arm32 UEFI HTTP
    19: ARCH_EFI_ARM64,    # arm64 UEFI HTTP
}
HTTP_ARCH_CODES = frozenset((15, 16, 18, 19))

FIRMWARE_PXE = "pxe"
FIRMWARE_IPXE = "ipxe"
FIRMWARE_HTTPBOOT = "httpboot"

VENDOR_PXE = "PXEClient"
VENDOR_HTTP = "HTTPClient"

# Frozen dataclasses set each field in __init__ through object.__setattr__; classify runs
# for every request, so it makes its record with object.__new__ and hands it the attribute
# dict in one step, as the codec does (wire/dhcp.py).
_object_new = object.__new__
_set_dict = object.__setattr__


# -- DHCPv4 -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BootClient:
    """What a network-boot request says about the machine that sent it.

    ``arch`` is one of ``bios``, ``efi-ia32``, ``efi-x86_64``, ``efi-arm32``,
    ``efi-arm64`` or ``unknown``; ``arch_code`` the RFC 4578 number it came
    from (None if neither option 93 nor option 60 gave one). ``firmware`` is
    ``pxe`` (firmware PXE ROM), ``ipxe`` (user class iPXE) or ``httpboot``
    (UEFI HTTP boot, vendor class ``HTTPClient``). ``guid`` is option 97 as
    received (None when absent, possibly empty). ``ipxe_features`` lists the
    feature codes iPXE announced in option 175. ``boot_item`` is PXE option 43
    sub-option 71 when the client asked a boot server for a given item.
    """

    mac: str
    arch: str
    arch_code: int | None
    firmware: str
    guid: bytes | None = None
    ipxe_features: frozenset = frozenset()
    boot_item: bytes | None = None

    @property
    def vendor_class(self) -> str:
        """The vendor class to answer with: ``HTTPClient`` for HTTP boot, else ``PXEClient``."""
        return VENDOR_HTTP if self.firmware == FIRMWARE_HTTPBOOT else VENDOR_PXE

    @property
    def ipxe_can_http(self) -> bool:
        """False only for an iPXE that listed its features (175) without HTTP."""
        if self.firmware != FIRMWARE_IPXE or not self.ipxe_features:
            return True
        return IPXE_FEATURE_HTTP in self.ipxe_features


def arch_from_vendor_class(vendor: bytes) -> int | None:
    # PXE 2.1: "PXEClient:Arch:xxxxx:UNDI:yyyzzz"; HTTPClient uses the same layout.
    parts = vendor.split(b":")
    if len(parts) >= 3 and parts[1] == b"Arch" and parts[2].isdigit() and len(parts[2]) <= 5:
        return int(parts[2])
    return None


def classify(packet: dhcp.DhcpPacket) -> BootClient | None:
    """Classify a BOOTREQUEST from a network-boot client, or None if it is not one.

    A network-boot client sends vendor class ``PXEClient``/``HTTPClient``
    (option 60) or is iPXE (user class ``iPXE``); it must have an Ethernet
    hardware address. The architecture comes from option 93, else from the
    ``Arch:`` field of option 60.
    """
    if packet.op != dhcp.BOOTREQUEST:
        return None
    mac = packet.mac
    if mac is None:
        return None
    options = packet.options
    vendor = options.get(dhcp.OPT_VENDOR_CLASS, b"")
    user_class = options.get(dhcp.OPT_USER_CLASS, b"")
    is_ipxe = b"iPXE" in user_class  # bare "iPXE" or RFC 3004 length-prefixed
    is_http = vendor.startswith(b"HTTPClient")
    if not (is_ipxe or is_http or vendor.startswith(b"PXEClient")):
        return None

    arches = packet.client_arches
    arch_code = arches[0] if arches else arch_from_vendor_class(vendor)
    arch = ARCH_CODES.get(arch_code, ARCH_UNKNOWN) if arch_code is not None else ARCH_UNKNOWN

    if is_ipxe:
        firmware = FIRMWARE_IPXE
    elif is_http or arch_code in HTTP_ARCH_CODES:
        firmware = FIRMWARE_HTTPBOOT
    else:
        firmware = FIRMWARE_PXE

    features = frozenset()
    encap = options.get(dhcp.OPT_IPXE_ENCAP)
    if encap is not None and is_ipxe:
        try:
            features = frozenset(code for code in dhcp.parse_suboptions(encap) if 0x10 <= code <= 0x7F)
        except dhcp.MalformedPacket:
            features = frozenset()

    boot_item = None
    vendor_opts = options.get(dhcp.OPT_VENDOR_SPECIFIC)
    if vendor_opts is not None:
        try:
            boot_item = dhcp.parse_suboptions(vendor_opts).get(dhcp.PXE_BOOT_ITEM)
        except dhcp.MalformedPacket:
            boot_item = None

    client = _object_new(BootClient)
    _set_dict(client, "__dict__", {
        "mac": mac, "arch": arch, "arch_code": arch_code, "firmware": firmware,
        "guid": options.get(dhcp.OPT_CLIENT_GUID), "ipxe_features": features, "boot_item": boot_item,
    })
    return client


# -- DHCPv6 -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BootClient6:
    """What a DHCPv6 network-boot request says about its sender.

    Same vocabulary as :class:`BootClient`: ``arch`` (``efi-x86_64``,
    ``efi-arm64``...), ``arch_code`` (option 61), ``firmware`` (``pxe``,
    ``ipxe`` or ``httpboot``). ``enterprise`` is the vendor class's enterprise
    number, echoed in answers. ``mac_source`` says where the MAC came from:
    ``eui64`` (link-local source address), ``duid`` or ``learnt`` (see :func:`..wire.dhcp6.client_mac`).
    """

    mac: str
    arch: str
    arch_code: int | None
    firmware: str
    enterprise: int = dhcp6.ENTERPRISE_PXE
    mac_source: str = dhcp6.MAC_FROM_EUI64

    @property
    def vendor_class(self) -> str:
        return VENDOR_HTTP if self.firmware == FIRMWARE_HTTPBOOT else VENDOR_PXE

    @property
    def ipxe_can_http(self) -> bool:
        # iPXE's DHCPv6 carries no feature list; every iPXE build that speaks DHCPv6 has HTTP.
        return True


def classify6(message: dhcp6.Message, source_ip: str | None, known_macs: Mapping[bytes, str] | None = None) -> BootClient6 | None:
    """Classify a client message, or None if it is not from a network-boot client with a known MAC.

    A network-boot client sends vendor class ``PXEClient``/``HTTPClient``
    (option 16) or user class ``iPXE`` (option 15). The architecture comes
    from option 61, else from the ``Arch:`` field of the vendor class.
    """
    if message.relay is not None or message.msg_type in (dhcp6.ADVERTISE, dhcp6.REPLY, dhcp6.RECONFIGURE):
        return None
    is_ipxe = any(b"iPXE" in each for each in message.user_classes)
    vendor = b""
    enterprise = dhcp6.ENTERPRISE_PXE
    for number, strings in message.vendor_classes:
        for each in strings:
            if each.startswith((VENDOR_PXE.encode(), VENDOR_HTTP.encode())):
                vendor, enterprise = each, number
                break
    is_http = vendor.startswith(VENDOR_HTTP.encode())
    if not (is_ipxe or vendor):
        return None
    mac, how = dhcp6.client_mac(message, source_ip, known_macs)
    if mac is None:
        return None
    arches = message.client_arches
    arch_code = arches[0] if arches else arch_from_vendor_class(vendor)
    arch = ARCH_CODES.get(arch_code, ARCH_UNKNOWN) if arch_code is not None else ARCH_UNKNOWN
    if is_ipxe:
        firmware = FIRMWARE_IPXE
    elif is_http or arch_code in HTTP_ARCH_CODES:
        firmware = FIRMWARE_HTTPBOOT
    else:
        firmware = FIRMWARE_PXE
    return BootClient6(mac=mac, arch=arch, arch_code=arch_code, firmware=firmware, enterprise=enterprise, mac_source=how)
