# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The iPXE binaries the netboot server hands to each architecture among the machines.

The file names are the server's own (_netboot.decide.policy): a machine whose binary is missing gets
no offer at all and sits in its firmware.
"""

from __future__ import annotations

import os
from collections.abc import Container, Iterable, Mapping

from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import policy
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.options import IPXE_DIR
from ansible_collections.nixie.metal.plugins.module_utils._preflight import report

# Per Nix system: (firmware, file) pairs the server may be asked for.
NEEDED = {
    "x86_64-linux": (("UEFI", policy.IPXE_EFI_X86_64), ("BIOS", policy.IPXE_BIOS)),
    "aarch64-linux": (("UEFI", policy.IPXE_EFI_ARM64),),
}

HINT_ARM64 = ("put ipxe-arm64.efi in %s (Debian 13's ipxe package has it), or correct the machines' arch in hosts.json")
HINT = "install the ipxe package (apt-get install ipxe), which puts %s in %s"


def ipxe_row(arches: Mapping[str, Iterable[str]], present: Container[str] | None, directory: str) -> report.Row:
    """The verdict for the machines' ``arches`` (``{arch: [host names]}``) given the file names
    ``present`` in ``directory`` (None: the directory does not exist)."""
    if not arches:
        return report.passed(report.IPXE, "no machines to boot")
    found, problems, hints = [], [], []
    for arch in sorted(arches):
        hosts = ", ".join(sorted(arches[arch]))
        needed = NEEDED.get(arch)
        if needed is None:
            problems.append("%s (hosts %s): the netboot server has no iPXE binary for this architecture" % (arch, hosts))
            hints.append("give these machines x86_64-linux or aarch64-linux in hosts.json")
            continue
        missing = [(firmware, name) for firmware, name in needed if name not in (present or ())]
        if missing:
            problems.append("%s (hosts %s): no %s in %s" % (arch, hosts, " or ".join(
                "%s (%s)" % (name, firmware) for firmware, name in missing), directory))
            names = " and ".join(name for dummy, name in missing)
            hints.append(HINT_ARM64 % directory if arch == "aarch64-linux" else HINT % (names, directory))
        else:
            found.append("%s: %s" % (arch, ", ".join(name for dummy, name in needed)))
    if problems:
        return report.failed(report.IPXE, "; ".join(problems), "; ".join(hints))
    return report.passed(report.IPXE, "%s in %s" % ("; ".join(found), directory))


def read_ipxe(arches: Mapping[str, Iterable[str]], directory: str | None = None) -> report.Row:
    directory = directory or IPXE_DIR
    try:
        present = {name for name in os.listdir(directory) if os.path.isfile(os.path.join(directory, name))}
    except OSError:
        present = None
    return ipxe_row(arches, present, directory)
