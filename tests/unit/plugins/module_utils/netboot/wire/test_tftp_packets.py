# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

# Unit tests of the TFTP packets: requests read, datagrams built; no sockets.

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import tftp as tftp_wire


def rrq(name, mode="octet", **options):
    return tftp_wire.build_request(name, mode, options)


# ---------------------------------------------------------------- parsing

def test_parse_rrq_with_options():
    req = tftp_wire.parse_request(b"\x00\x01ipxe.efi\x00OCTET\x00BlkSize\x001468\x00tsize\x000\x00windowsize\x004\x00")
    assert req.opcode == tftp_wire.OP_RRQ
    assert req.filename == "ipxe.efi"
    assert req.mode == "octet"
    assert req.options == {"blksize": "1468", "tsize": "0", "windowsize": "4"}
    assert list(req.options) == ["blksize", "tsize", "windowsize"]


def test_parse_wrq():
    req = tftp_wire.parse_request(tftp_wire.build_request("x", opcode=tftp_wire.OP_WRQ))
    assert req.opcode == tftp_wire.OP_WRQ


def test_parse_first_duplicate_option_wins():
    req = tftp_wire.parse_request(rrq("a") + b"blksize\x00100\x00BLKSIZE\x00200\x00")
    assert req.options == {"blksize": "100"}


def test_parse_tolerates_trailing_nul_padding():
    req = tftp_wire.parse_request(rrq("ipxe.efi", blksize=1468) + b"\x00\x00\x00")
    assert req.options == {"blksize": "1468"}


@pytest.mark.parametrize("data", [
    b"",
    b"\x00",
    b"\x00\x01",
    b"\x00\x01a",  # no terminator
    b"\x00\x01a\x00",  # no mode
    b"\x00\x01a\x00octet",  # mode not terminated
    b"\x00\x01\x00octet\x00",  # empty name
    b"\x00\x01a\x00bogus\x00",  # unknown mode
    b"\x00\x01a\x00octet\x00blksize\x00",  # option without value
    b"\x00\x01a\x00octet\x00blksize\x001468\x00tsize\x00",
    b"\x00\x01a\x00octet\x00\x00512\x00",  # empty option name
    b"\x00\x01a\x00oct\xe9t\x00",  # non-ASCII mode
    b"\x00\x01a\x00octet\x00bl\xffk\x001\x00",  # non-ASCII option
    b"\x00\x03\x00\x01data",  # DATA, not a request
    b"\x00\x04\x00\x01",  # ACK
    b"\x00\x09a\x00octet\x00",  # unknown opcode
    b"\x00\x01" + b"a" * 3000 + b"\x00octet\x00",  # oversize
])
def test_parse_malformed_raises_one_type(data):
    with pytest.raises(tftp_wire.TftpError) as info:
        tftp_wire.parse_request(data)
    assert info.value.code == tftp_wire.ERR_ILLEGAL_OP


def test_parse_nul_injection_is_malformed():
    # "ipxe.efi\0../../etc/passwd": the name ends at the NUL, the rest is a bad mode
    with pytest.raises(tftp_wire.TftpError):
        tftp_wire.parse_request(b"\x00\x01ipxe.efi\x00../../etc/passwd\x00octet\x00")


def test_packets_roundtrip():
    assert tftp_wire.parse_oack(tftp_wire.build_oack({"blksize": "1468", "tsize": "9"})) == {"blksize": "1468", "tsize": "9"}
    assert tftp_wire.parse_error(tftp_wire.build_error(8, "abort")) == (8, "abort")
    assert tftp_wire.parse_error(b"\x00\x05\x00\x08no-terminator") == (8, "no-terminator")
    assert tftp_wire.build_data(65536 + 3, b"ab") == b"\x00\x03\x00\x03ab"
