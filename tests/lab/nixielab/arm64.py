# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The arm64 side of the lab: iPXE for arm64 UEFI and an arm64 lab installer.

* :func:`ipxe_dir` -- Debian 13 (trixie) is the first release whose
  architecture-independent ``ipxe`` package ships ``ipxe-arm64.efi``; the
  .deb comes from Debian's registry through :class:`nixielab.debian.PrivateApt`
  and its ``/usr/lib/ipxe/*.efi`` are unpacked into the cache.
* :func:`build` -- the lab installer (see :mod:`nixielab.installer`) built
  from bookworm's ``linux-image-arm64`` (its ``vmlinuz`` is an uncompressed
  EFI-stub Image that iPXE boots as it is) and ``busybox-static:arm64``;
  console on ``ttyAMA0`` (QEMU virt's PL011 UART).

Everything is cached under the lab cache (``$NIXIE_LAB_CACHE``), keyed by
content like the x86_64 installer: only the first build downloads
(≈65 MB) and no later build calls apt.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from . import installer
from .debian import PrivateApt, extract

#: The arm64 kernel has virtio and virtio_ring built in; the rest are modules.
ARM64_MODULES = tuple(m for m in installer.NIC_MODULES if m not in ("virtio_ring", "virtio"))
KERNEL_METAPACKAGE = "linux-image-arm64:arm64"
CONSOLE = "ttyAMA0"


def private_apt(cache: Path | None = None) -> PrivateApt:
    return PrivateApt((cache or installer.cache_dir()) / "apt")


def ipxe_dir(cache: Path | None = None) -> Path:
    """A directory holding trixie's iPXE EFI binaries, ``ipxe-arm64.efi`` among them."""
    cache = cache or installer.cache_dir()
    deb = private_apt(cache).download("ipxe", "ipxe_*_all.deb")
    target = cache / "ipxe" / deb.stem
    if not (target / "ipxe-arm64.efi").is_file():
        with tempfile.TemporaryDirectory(dir=installer._mkdir(cache / "ipxe")) as tmp:
            extract(deb, ["./usr/lib/ipxe/*.efi"], Path(tmp))
            staged = Path(tmp) / "staged"
            shutil.copytree(Path(tmp) / "usr/lib/ipxe", staged, symlinks=False)
            try:
                os.rename(staged, target)
            except OSError:
                if not (target / "ipxe-arm64.efi").is_file():
                    raise
    return installer.readable_by_everyone(target)


def kernel_deb(cache: Path | None = None) -> Path:
    """bookworm's arm64 kernel .deb (the package linux-image-arm64 points at), downloaded once."""
    apt = private_apt(cache)
    cached = sorted(apt.debs.glob("linux-image-6.*-arm64_*_arm64.deb"))
    if cached:
        return cached[-1]
    match = re.search(r"Depends:\s*(linux-image-6\.\S+-arm64)", apt.depends(KERNEL_METAPACKAGE))
    if not match:
        raise RuntimeError(f"cannot find the kernel package behind {KERNEL_METAPACKAGE}")
    name = match.group(1).split(":")[0]
    return apt.download(f"{name}:arm64", f"{name}_*_arm64.deb")


def busybox(cache: Path | None = None) -> Path:
    """The static arm64 busybox binary (bookworm's busybox-static:arm64)."""
    cache = cache or installer.cache_dir()
    deb = private_apt(cache).download("busybox-static:arm64", "busybox-static_*_arm64.deb")
    target = installer._mkdir(cache / "busybox-arm64" / deb.stem)
    binary = target / "busybox"
    if not binary.is_file():
        with tempfile.TemporaryDirectory(dir=target) as tmp:
            extract(deb, ["./bin/busybox"], Path(tmp))
            os.replace(Path(tmp) / "bin" / "busybox", binary)  # atomic: a concurrent twin is harmless
    return binary


def build(agent: str | os.PathLike | None = None, *, cache: Path | None = None) -> installer.Installer:
    """Build (or fetch from the cache) the arm64 lab installer: kernel + busybox initramfs."""
    cache = cache or installer.cache_dir()
    agent_path = Path(agent).resolve() if agent else None
    if agent_path and not agent_path.is_file():
        raise FileNotFoundError(f"agent script {agent_path} does not exist")
    deb = kernel_deb(cache)
    bb = busybox(cache)
    digest = hashlib.sha256(b"arm64\0")
    digest.update(installer._build_key(deb, agent_path, False).encode())
    digest.update(installer._sha256_file(bb).encode())
    digest.update(",".join(ARM64_MODULES).encode())
    key = "arm64-" + digest.hexdigest()[:16]
    out = cache / "builds" / key
    manifest = out / "manifest.json"
    if not manifest.exists():
        kdir = installer.unpack_kernel(deb, cache, modules=ARM64_MODULES)
        tmp_out = Path(tempfile.mkdtemp(dir=installer._mkdir(cache / "builds")))
        os.chmod(tmp_out, 0o755)
        with tempfile.TemporaryDirectory() as tree:
            os.chmod(tree, 0o755)
            installer._initramfs_tree(Path(tree), kdir, agent_path, busybox=str(bb), modules=ARM64_MODULES)
            installer._pack_cpio(Path(tree), tmp_out / "initrd")
        shutil.copy(kdir / "vmlinuz", tmp_out / "kernel")
        (tmp_out / "manifest.json").write_text(json.dumps({
            "deb": deb.name, "kernel_version": (kdir / "version").read_text(),
            "agent": str(agent_path) if agent_path else None, "busybox": str(bb),
            "modules": installer.load_order(kdir / "modules", ARM64_MODULES), "arch": "aarch64-linux",
        }, indent=2))
        installer._publish(tmp_out, out)
    meta = json.loads(manifest.read_text())
    return installer.Installer(kernel=installer.readable_by_everyone(out / "kernel"),
                               initrd=installer.readable_by_everyone(out / "initrd"),
                               kernel_version=meta["kernel_version"], key=key, console=CONSOLE)


def main() -> None:
    """``python3 -m nixielab.arm64 [AGENT]``: fetch iPXE, build the installer, print the paths."""
    import argparse
    import time
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("agent", nargs="?", help="agent script to include")
    args = parser.parse_args()
    start = time.monotonic()
    directory = ipxe_dir()
    inst = build(args.agent)
    print(json.dumps({"ipxe_dir": str(directory), "kernel": str(inst.kernel), "initrd": str(inst.initrd),
                      "kernel_version": inst.kernel_version, "key": inst.key,
                      "seconds": round(time.monotonic() - start, 3)}))


if __name__ == "__main__":
    main()
