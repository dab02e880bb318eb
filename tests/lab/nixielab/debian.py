# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fetch .debs the machine's apt sources do not offer, without touching them.

The arm64 lab needs packages of another architecture (the bookworm arm64
kernel, busybox-static:arm64) and of another release (trixie's ``ipxe``,
the first Debian package with ``ipxe-arm64.efi``). Adding an architecture or
a release to the machine's apt would change what ``apt-get upgrade`` does
for everyone, so this module keeps a private apt root under the lab cache:
its own sources list, package lists and download cache, passed to apt with
``-o Dir::...``. Only Debian's registry (deb.debian.org) is contacted, with
the archive keyring the machine already trusts.

Downloads are cached by file name; the lists are fetched once and again only
when a package cannot be found or downloaded (the mirror moved on).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
#: (architecture, suite) pairs the private root knows about.
SOURCES = (("arm64", "bookworm"), ("amd64", "trixie"))


class PrivateApt:
    """apt-get/apt-cache with their own sources, lists and cache under ``root``."""

    def __init__(self, root: Path, sources=SOURCES, mirror: str = MIRROR) -> None:
        self.root = Path(root)
        self.sources = tuple(sources)
        self.mirror = os.environ.get("NIXIE_LAB_DEBIAN_MIRROR", mirror)
        self.debs = self.root / "debs"

    # -- apt plumbing -----------------------------------------------------------
    def _options(self) -> list[str]:
        arches = sorted({arch for arch, dummy in self.sources} | {"amd64"})
        return [
            "-q",
            f"-o=Dir::Etc::SourceList={self.root / 'sources.list'}",
            "-o=Dir::Etc::SourceParts=/dev/null",
            "-o=Dir::Etc::Preferences=/dev/null",
            "-o=Dir::Etc::PreferencesParts=/dev/null",
            f"-o=Dir::State={self.root / 'state'}",
            f"-o=Dir::State::status={self.root / 'state' / 'status'}",
            f"-o=Dir::Cache={self.root / 'cache'}",
            f"-o=APT::Architectures={','.join(arches)}",
            "-o=Debug::NoLocking=1",
        ]

    def _prepare(self) -> None:
        for sub in ("state/lists/partial", "cache/archives/partial", "debs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "state" / "status").touch()
        lines = [f"deb [arch={arch} signed-by={KEYRING}] {self.mirror} {suite} main" for arch, suite in self.sources]
        text = "\n".join(lines) + "\n"
        sources = self.root / "sources.list"
        if not sources.exists() or sources.read_text() != text:
            sources.write_text(text)
            shutil.rmtree(self.root / "state" / "lists", ignore_errors=True)
            (self.root / "state/lists/partial").mkdir(parents=True)

    def _has_lists(self) -> bool:
        return any((self.root / "state" / "lists").glob("*_Packages"))

    def update(self) -> None:
        subprocess.run(["apt-get", *self._options(), "update"], check=True, capture_output=True)

    @contextlib.contextmanager
    def _locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "w", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                self._prepare()
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _candidate(self, package: str) -> str | None:
        out = subprocess.run(["apt-cache", *self._options(), "policy", package],
                             check=False, capture_output=True, text=True).stdout
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("Candidate:"):
                version = line.split(":", 1)[1].strip()
                return None if version == "(none)" else version
        return None

    def depends(self, package: str) -> str:
        """``apt-cache depends`` output for ``package`` (lists fetched if needed)."""
        with self._locked():
            if not self._has_lists():
                self.update()
            return subprocess.run(["apt-cache", *self._options(), "depends", package],
                                  check=True, capture_output=True, text=True).stdout

    def download(self, package: str, glob: str) -> Path:
        """The .deb of ``package`` (``name`` or ``name:arch``), downloaded once.

        ``glob`` matches the cached file name (e.g. ``ipxe_*_all.deb``); when a
        file matches, apt is not called at all.
        """
        with self._locked():
            cached = sorted(self.debs.glob(glob))
            if cached:
                return cached[-1]
            for attempt in range(2):
                if attempt or not self._has_lists():
                    self.update()
                if self._candidate(package) is None:
                    continue
                with tempfile.TemporaryDirectory(dir=self.debs) as tmp:
                    os.chmod(tmp, 0o777)  # apt's _apt user writes the download
                    done = subprocess.run(["apt-get", *self._options(), "download", package],
                                          cwd=tmp, check=False, capture_output=True, text=True)
                    got = list(Path(tmp).glob("*.deb"))
                    if done.returncode == 0 and len(got) == 1:
                        final = self.debs / got[0].name
                        shutil.move(str(got[0]), final)
                        return final
            raise RuntimeError(f"cannot download {package} from {self.mirror} ({', '.join(s for dummy, s in self.sources)})")


def extract(deb: Path, members: list[str], dest: Path) -> Path:
    """Unpack ``members`` (tar wildcards such as ``./usr/lib/ipxe/*.efi``) of a .deb into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    tar = subprocess.Popen(["tar", "-x", "-C", str(dest), "--wildcards", *members], stdin=subprocess.PIPE)
    subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=tar.stdin, check=True)
    tar.stdin.close()
    if tar.wait() != 0:
        raise RuntimeError(f"unpacking {members} from {deb} failed")
    return dest
