# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

# Unit tests of the TFTP decisions: file names, option negotiation, the transfer's state machine; no sockets.

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import tftp_transfer
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import tftp as tftp_wire

FILES = {"ipxe.efi": b"x" * 1000, "undionly.kpxe": b"y" * 10}


def rrq(name, mode="octet", **options):
    return tftp_wire.build_request(name, mode, options)


def block_of(packet):
    assert packet[:2] == b"\x00\x03"
    return int.from_bytes(packet[2:4], "big")


def ack(n):
    return tftp_wire.build_ack(n)


# --------------------------------------------------------- file names

@pytest.mark.parametrize("name", [
    "../ipxe.efi", "/ipxe.efi", "./ipxe.efi", "..", ".", "dir/ipxe.efi", "ipxe.efi/",
    "..\\ipxe.efi", "C:\\ipxe.efi", "c:ipxe.efi", "%2e%2e/ipxe.efi", "%2E%2E%2Fetc", "ipxe%2eefi",
    "ipxe.efi\x00", "ipxe.efi\n", " ipxe.efi", "ipxe.efi ", "\u00e9.efi", ".hidden", "a" * 200,
    "/usr/lib/ipxe/ipxe.efi", "//ipxe.efi",
])
def test_path_like_names_are_access_violations(name):
    with pytest.raises(tftp_wire.TftpError) as info:
        tftp_transfer.check_filename(name, FILES)
    assert info.value.code == tftp_wire.ERR_ACCESS


@pytest.mark.parametrize("name", ["snponly.efi", "IPXE.EFI", "ipxe.efi.bak", "pxelinux.0"])
def test_unknown_bare_names_are_not_found(name):
    with pytest.raises(tftp_wire.TftpError) as info:
        tftp_transfer.check_filename(name, FILES)
    assert info.value.code == tftp_wire.ERR_NOT_FOUND


def test_registered_name_matches():
    assert tftp_transfer.check_filename("ipxe.efi", FILES) == "ipxe.efi"


def test_check_request_refuses_write_and_netascii():
    with pytest.raises(tftp_wire.TftpError) as info:
        tftp_transfer.check_request(tftp_wire.parse_request(tftp_wire.build_request("ipxe.efi", opcode=tftp_wire.OP_WRQ)), FILES)
    assert info.value.code == tftp_wire.ERR_ACCESS
    with pytest.raises(tftp_wire.TftpError) as info:
        tftp_transfer.check_request(tftp_wire.parse_request(rrq("ipxe.efi", "netascii")), FILES)
    assert info.value.code == tftp_wire.ERR_UNDEFINED
    with pytest.raises(tftp_wire.TftpError):
        tftp_transfer.check_request(tftp_wire.parse_request(rrq("ipxe.efi", "mail")), FILES)
    assert tftp_transfer.check_request(tftp_wire.parse_request(rrq("ipxe.efi", "Octet")), FILES) == "ipxe.efi"


# ------------------------------------------------------------ negotiation

def test_negotiate_no_options_means_no_oack():
    neg = tftp_transfer.negotiate({}, 1000)
    assert (neg.blksize, neg.windowsize, neg.timeout, neg.tsize, neg.oack) == (512, 1, None, None, {})


def test_negotiate_ovmf_request():
    neg = tftp_transfer.negotiate({"blksize": "1468", "windowsize": "4"}, 850528)
    assert neg.blksize == 1468 and neg.windowsize == 4
    assert neg.oack == {"blksize": "1468", "windowsize": "4"}


def test_negotiate_tsize_probe_answers_real_size():
    neg = tftp_transfer.negotiate({"tsize": "0"}, 850528)
    assert neg.tsize == 850528 and neg.oack == {"tsize": "850528"}


@pytest.mark.parametrize("asked, cap, expect", [
    ("8", 1468, 8), ("512", 1468, 512), ("1468", 1468, 1468), ("1500", 1468, 1468), ("65464", 1468, 1468),
    ("65464", 65464, 65464), ("70000", 100000, 65464), ("9000", 8972, 8972), ("100", 4, 8),
])
def test_negotiate_blksize_clamped(asked, cap, expect):
    neg = tftp_transfer.negotiate({"blksize": asked}, 10, max_blksize=cap)
    assert neg.blksize == expect and neg.oack == {"blksize": str(expect)}


@pytest.mark.parametrize("asked", ["7", "0", "-1", "abc", "", "1e3", "99999999999"])
def test_negotiate_invalid_blksize_ignored(asked):
    neg = tftp_transfer.negotiate({"blksize": asked}, 10)
    assert neg.blksize == 512 and neg.oack == {}


@pytest.mark.parametrize("asked, expect", [("1", 1), ("4", 4), ("64", 64), ("65535", 64), ("0", None), ("x", None)])
def test_negotiate_windowsize(asked, expect):
    neg = tftp_transfer.negotiate({"windowsize": asked}, 10)
    if expect is None:
        assert neg.windowsize == 1 and neg.oack == {}
    else:
        assert neg.windowsize == expect and neg.oack == {"windowsize": str(expect)}


@pytest.mark.parametrize("asked, expect", [("1", 1), ("5", 5), ("255", 255), ("0", None), ("256", None), ("1.5", None)])
def test_negotiate_timeout(asked, expect):
    neg = tftp_transfer.negotiate({"timeout": asked}, 10)
    assert neg.timeout == expect
    assert neg.oack == ({} if expect is None else {"timeout": asked})


def test_negotiate_ignores_unknown_options_and_keeps_order():
    neg = tftp_transfer.negotiate({"tsize": "0", "multicast": "", "blksize": "1024", "utimeout": "1000"}, 5)
    assert list(neg.oack.items()) == [("tsize", "5"), ("blksize", "1024")]


def test_blksize_for_mtu():
    assert tftp_transfer.blksize_for_mtu(1500) == 1468
    assert tftp_transfer.blksize_for_mtu(1500, ipv6=True) == 1448
    assert tftp_transfer.blksize_for_mtu(9000) == 8968
    assert tftp_transfer.blksize_for_mtu(20) == 8
    assert tftp_transfer.blksize_for_mtu(1 << 20) == 65464


# ---------------------------------------------------------- state machine

def transfer(size, blocks="cached", retries=3, gso=0, **options):
    data = bytes(i % 251 for i in range(size))
    neg = tftp_transfer.negotiate({k: str(v) for k, v in options.items()}, size, max_blksize=65464)
    cache = tftp_transfer.DataBlocks(data, neg.blksize, gso) if blocks == "cached" else None
    return data, tftp_transfer.Transfer(data, neg, retries, cache)


def receive(t, packets, data, received):
    for p in packets:
        if p[:2] == b"\x00\x03":
            received.append(bytes(p[4:]))


@pytest.mark.parametrize("blocks", ["cached", None])
def test_plain_transfer_without_options(blocks):
    data, t = transfer(1200, blocks)
    out = t.start()
    assert len(out) == 1 and block_of(out[0]) == 1 and len(out[0]) == 516
    assert t.started and not t.done
    out = t.on_packet(ack(1))
    assert block_of(out[0]) == 2
    out = t.on_packet(ack(2))
    assert block_of(out[0]) == 3 and len(out[0]) == 4 + 1200 - 1024
    assert t.on_packet(ack(3)) == []
    assert t.outcome == "finished" and t.bytes_acked == 1200


def test_exact_multiple_ends_with_empty_block():
    data, t = transfer(1024)
    assert t.total == 3
    t.start()
    t.on_ack(1)
    last = t.on_ack(2)
    assert block_of(last[0]) == 3 and len(last[0]) == 4
    t.on_ack(3)
    assert t.outcome == "finished" and t.bytes_acked == 1024


def test_empty_file_is_one_empty_block():
    data, t = transfer(0)
    out = t.start()
    assert out == [b"\x00\x03\x00\x01"]
    t.on_ack(1)
    assert t.outcome == "finished"


def test_oack_then_ack0_starts_data():
    data, t = transfer(3000, blksize=1468, tsize=0)
    out = t.start()
    assert out[0][:2] == b"\x00\x06"
    assert tftp_wire.parse_oack(out[0]) == {"blksize": "1468", "tsize": "3000"}
    assert not t.started
    assert t.on_ack(1) == []  # not the ACK of the OACK
    out = t.on_ack(0)
    assert block_of(out[0]) == 1 and len(out[0]) == 1472
    assert t.on_ack(0) == []  # duplicate ACK 0 ignored


def test_tsize_probe_error8_is_quiet_abort():
    data, t = transfer(3000, tsize=0)
    t.start()
    assert t.on_packet(tftp_wire.build_error(8, "tsize probe")) == []
    assert t.outcome == "aborted" and t.error_code == 8


def test_client_error_during_data_fails():
    data, t = transfer(3000)
    t.start()
    t.on_packet(tftp_wire.build_error(0, "disk full"))
    assert t.outcome == "failed" and "disk full" in t.error
    assert t.on_ack(1) == []


def test_duplicate_ack_does_not_retransmit():
    data, t = transfer(3000)
    t.start()
    assert t.on_ack(1)
    assert t.on_ack(1) == []  # Sorcerer's Apprentice
    assert t.on_ack(0) == []
    assert t.on_ack(7) == []  # not sent yet


def test_garbage_from_client_ignored():
    data, t = transfer(3000)
    t.start()
    assert t.on_packet(b"\x00") == []
    assert t.on_packet(b"\x00\x03\x00\x01abc") == []
    assert not t.done


@pytest.mark.parametrize("blocks", ["cached", None])
def test_window_transfer(blocks):
    data, t = transfer(512 * 10 + 7, blocks, windowsize=4)
    t.start()
    out = t.on_ack(0)
    assert [block_of(p) for p in out] == [1, 2, 3, 4]
    out = t.on_ack(4)
    assert [block_of(p) for p in out] == [5, 6, 7, 8]
    out = t.on_ack(8)
    assert [block_of(p) for p in out] == [9, 10, 11]
    assert len(out[-1]) == 4 + 7
    assert t.on_ack(11) == [] and t.outcome == "finished"


def test_window_partial_ack_resends_from_gap():
    data, t = transfer(512 * 20, windowsize=4)
    t.start()
    t.on_ack(0)
    out = t.on_ack(2)  # client missed block 3
    assert [block_of(p) for p in out] == [3, 4, 5, 6]


def test_timeout_retransmits_from_last_acked_then_gives_up():
    data, t = transfer(512 * 20, retries=2, windowsize=4)
    t.start()
    t.on_ack(0)
    t.on_ack(4)
    assert [block_of(p) for p in t.on_timeout()] == [5, 6, 7, 8]
    assert [block_of(p) for p in t.on_timeout()] == [5, 6, 7, 8]
    assert t.on_timeout() == []
    assert t.outcome == "failed" and "timed out" in t.error


def test_progress_resets_retries():
    data, t = transfer(512 * 20, retries=1)
    t.start()
    t.on_timeout()
    t.on_ack(1)
    assert t.retries == 0
    assert t.on_timeout()
    assert not t.done


def test_timeout_before_oack_ack_resends_oack():
    data, t = transfer(100, retries=1, tsize=0)
    first = t.start()
    assert t.on_timeout() == first
    assert t.on_timeout() == [] and t.outcome == "failed"


def test_on_retransmit_does_not_count():
    data, t = transfer(512 * 20, retries=1, windowsize=2)
    t.start()
    t.on_ack(0)
    for dummy in range(3):
        assert [block_of(p) for p in t.on_retransmit()] == [1, 2]
    assert t.retries == 0


@pytest.mark.parametrize("blocks", ["cached", None])
def test_block_number_wraps_after_65535(blocks):
    size = 8 * 65540 + 3
    data, t = transfer(size, blocks, blksize=8, windowsize=3)
    got = []
    receive(t, t.start(), data, got)
    out = t.on_ack(0)
    wire = []
    while not t.done:
        assert out, "stalled at %d" % t.acked
        receive(t, out, data, got)
        wire += [block_of(p) for p in out]
        out = t.on_ack(block_of(out[-1]))
    assert t.outcome == "finished"
    assert b"".join(got) == data
    i = wire.index(65535)
    assert wire[i + 1:i + 3] == [0, 1]
    assert t.total == 65541 and wire[-1] == 65541 & 0xFFFF


def test_ack_after_wrap_is_mapped_to_the_right_block():
    data, t = transfer(8 * 65600, blksize=8, windowsize=4)
    t.start()
    t.on_ack(0)
    t.acked, t.sent = 65534, 65534  # jump near the wrap
    out = t.on_ack(65534)  # duplicate, ignored
    assert out == []
    out = t.on_retransmit()
    assert [block_of(p) for p in out] == [65535, 0, 1, 2]
    assert t.on_ack(0) and t.acked == 65536
    assert t.on_ack(65535) == []  # stale ACK from before the wrap
    assert [block_of(p) for p in t.on_ack(2)][0] == 3 and t.acked == 65538


def test_gso_window_is_contiguous_datagrams():
    data, t = transfer(1468 * 10 + 5, gso=4, blksize=1468, windowsize=6)
    t.start()
    out = t.on_ack(0)
    # 6 blocks in slices of at most 4 datagrams of 1472 bytes
    assert [len(p) for p in out] == [4 * 1472, 2 * 1472]
    flat = b"".join(bytes(p) for p in out)
    plain = tftp_transfer.build_data_packets(data, 1468)
    assert flat == b"".join(plain[:6])
    t.on_ack(6)
    out = t.on_ack(6) or t.on_retransmit()
    assert b"".join(bytes(p) for p in out) == b"".join(plain[6:11])
    assert [len(p) for p in out] == [4 * 1472, 4 + 5]  # blocks 7-10, then the short block 11


def test_data_blocks_single_block_window_is_plain():
    blocks = tftp_transfer.DataBlocks(b"a" * 100, 8, gso_segments=4)
    assert blocks.window(3, 3) == [blocks[2]]
