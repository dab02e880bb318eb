# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files pxe_server's plan reads (kernel, initrd, iPXE binary, hosts.json), for its unit tests."""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil
import tempfile


@contextlib.contextmanager
def served_site(prefix):
    """A directory with a kernel, an initrd and ipxe/ipxe.efi, removed afterwards.

    Not pytest's tmp_path: /tmp/pytest-of-root is root's only, and the server reads its files as nobody once bound.
    """
    top = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    top.chmod(0o755)
    for name in ("bzImage", "initrd"):
        (top / name).write_bytes(b"x")
    ipxe = top / "ipxe"
    ipxe.mkdir(mode=0o755)
    (ipxe / "ipxe.efi").write_bytes(b"efi")
    try:
        yield top
    finally:
        shutil.rmtree(top)


def site_params(site, hosts, **extra):
    """pxe_server's options serving ``site`` to ``hosts`` (hosts.json's content), with ``extra`` on top."""
    (site / "hosts.json").write_text(json.dumps(hosts), encoding="utf-8")
    values = {"hosts_file": str(site / "hosts.json"), "kernel": str(site / "bzImage"), "initrd": str(site / "initrd"),
              "ipxe_dir": str(site / "ipxe")}
    values.update(extra)
    return values
