# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

# Unit tests of the TFTP server's own parts that need no socket: files loaded, names refused, client addresses.

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import tftp


def test_server_rejects_non_bare_registered_names():
    with pytest.raises(ValueError):
        tftp.TftpServer({"../x": b""})


def test_load_files(tmp_path):
    (tmp_path / "ipxe.efi").write_bytes(b"efi")
    (tmp_path / "undionly.kpxe").write_bytes(b"bios")
    (tmp_path / "other.bin").write_bytes(b"no")
    (tmp_path / "link").mkdir()
    (tmp_path / "snponly.efi").symlink_to(tmp_path / "ipxe.efi")
    files = tftp.load_files(str(tmp_path))
    assert files == {"ipxe.efi": b"efi", "undionly.kpxe": b"bios", "snponly.efi": b"efi"}
    with pytest.raises(ValueError):
        tftp.load_files(str(tmp_path), ["../etc/passwd"])
    with pytest.raises(ValueError):
        tftp.load_files(str(tmp_path), ["ipxe.efi"], max_size=2)


def test_client_address_normalised():
    assert tftp._client_address(("::ffff:10.0.0.5", 1234, 0, 0)) == ("10.0.0.5", 1234)
    assert tftp._client_address(("fd77::5", 1234, 0, 0)) == ("fd77::5", 1234)
    assert tftp._client_address(("10.0.0.5", 69)) == ("10.0.0.5", 69)
