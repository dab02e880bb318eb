# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""QEMU netboot clients attached to a lab tap.

Kinds (what the network sees):

``ovmf-pxe``        UEFI firmware's own PXE client (EDK2): DHCP + 4011 + TFTP.
``ovmf-ipxe``       UEFI + QEMU's iPXE ROM: iPXE does DHCP/HTTP itself.
``ovmf-httpboot``   UEFI HTTP boot first (IPv4/IPv6 PXE switched off by fw_cfg).
``seabios-ipxe``    legacy BIOS + QEMU's iPXE ROM (client arch 0).
``aavmf-pxe``       arm64 UEFI (AAVMF, qemu-system-aarch64 -M virt) with its own PXE
                    client (client arch 11); serial console ttyAMA0.
``aavmf-httpboot``  arm64 UEFI HTTP boot first (client arch 19).

Always TCG: KVM cannot run guests on these machines and hangs.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from pathlib import Path

from .net import Lab, stop_process

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
AAVMF_CODE = "/usr/share/AAVMF/AAVMF_CODE.fd"
AAVMF_VARS = "/usr/share/AAVMF/AAVMF_VARS.fd"
KINDS = ("ovmf-pxe", "ovmf-ipxe", "ovmf-httpboot", "seabios-ipxe")
#: arm64 kinds (qemu-system-aarch64); kept apart from KINDS, which baseline.py boots through dnsmasq.
ARM64_KINDS = ("aavmf-pxe", "aavmf-httpboot")
#: Firmware (code, variables template) per UEFI family of kinds.
UEFI_FIRMWARE = {"ovmf": (OVMF_CODE, OVMF_VARS), "aavmf": (AAVMF_CODE, AAVMF_VARS)}


def default_mac(index: int) -> str:
    """Fixed, readable MACs: 52:54:00:12:34:01, :02, ... (lower case, as iPXE prints)."""
    return f"52:54:00:12:34:{index:02x}"


def qemu_argv(kind: str, *, tap: str, mac: str, vm_uuid: str, serial_log: Path,
              vars_file: Path | None, memory: int = 512, nic: str = "virtio-net-pci",
              extra: list[str] | None = None) -> list[str]:
    """The QEMU command line for one client kind (pure: easy to read and test)."""
    if kind not in KINDS + ARM64_KINDS:
        raise ValueError(f"unknown VM kind {kind!r}; one of {KINDS + ARM64_KINDS}")
    family = kind.split("-")[0]
    uefi = family in UEFI_FIRMWARE
    if family == "aavmf":
        machine = ["qemu-system-aarch64", "-machine", "virt", "-cpu", "cortex-a57"]
    else:
        machine = ["qemu-system-x86_64"]
    argv = machine + [
        "-accel", "tcg", "-m", str(memory), "-smp", "1",
        "-uuid", vm_uuid, "-name", f"nixielab-{mac}",
        "-nographic", "-vga", "none", "-monitor", "none",
        "-serial", f"file:{serial_log}", "-no-reboot",
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
    ]
    device = f"{nic},netdev=n0,mac={mac},bootindex=1"
    if kind in ("ovmf-pxe", "ovmf-httpboot") or family == "aavmf":
        # No option ROM: the firmware's own network stack boots (QEMU's default ROM is x86 iPXE).
        device += ",romfile="
    argv += ["-device", device]
    if uefi:
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={UEFI_FIRMWARE[family][0]}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={vars_file}"]
    else:
        argv += ["-boot", "order=n"]
    if kind in ("ovmf-httpboot", "aavmf-httpboot"):
        # Skip the PXEv4/PXEv6 attempts (≈2 min under TCG) so HTTP boot goes first.
        argv += ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no",
                 "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no"]
    return argv + list(extra or [])


class VM:
    """One QEMU client inside a Lab.  Start with :meth:`start`, stop by PID."""

    def __init__(self, lab: Lab, kind: str, *, mac: str | None = None, name: str | None = None,
                 memory: int = 512, nic: str = "virtio-net-pci", extra: list[str] | None = None) -> None:
        index = len(lab.taps) + 1
        self.lab = lab
        self.kind = kind
        self.mac = (mac or default_mac(index)).lower()
        self.name = name or f"vm{index}-{kind}"
        self.uuid = str(uuid.uuid4())  # own DHCPv6 client id / option 97 per VM
        self.memory = memory
        self.nic = nic
        self.extra = extra
        self.serial_log = lab.workdir / f"{self.name}.serial.log"
        self.qemu_log = lab.workdir / f"{self.name}.qemu.log"
        self.tap: str | None = None
        self.proc = None
        self.started_at: float | None = None

    def start(self) -> "VM":
        """Create the tap and launch QEMU in the lab namespace."""
        self.tap = self.lab.add_tap()
        vars_file = None
        family = self.kind.split("-")[0]
        if family in UEFI_FIRMWARE:
            vars_file = self.lab.workdir / f"{self.name}.{family.upper()}_VARS.fd"
            shutil.copy(UEFI_FIRMWARE[family][1], vars_file)  # firmware writes boot entries into it
        argv = qemu_argv(self.kind, tap=self.tap, mac=self.mac, vm_uuid=self.uuid,
                         serial_log=self.serial_log, vars_file=vars_file, memory=self.memory,
                         nic=self.nic, extra=self.extra)
        self.serial_log.touch()
        with open(self.qemu_log, "wb") as log:
            self.started_at = time.monotonic()
            self.proc = self.lab.popen(argv, stdout=log, stderr=log)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def serial(self) -> str:
        """The serial console so far (firmware, iPXE, kernel, installer)."""
        return self.serial_log.read_text(errors="replace") if self.serial_log.exists() else ""

    def wait_for(self, pattern: str, timeout: float = 180.0) -> re.Match:
        """Wait until ``pattern`` (a regexp) appears on the serial console.

        Fails early, with the log tail, if QEMU exits first.  Returns the match;
        ``self.elapsed`` then holds seconds since QEMU was started.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.serial())
            if match:
                self.elapsed = time.monotonic() - self.started_at
                return match
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: QEMU exited ({self.proc.returncode}) before "
                                   f"{pattern!r}\n{self._tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {pattern!r} not seen in {timeout}s\n{self._tail()}")
            time.sleep(0.1)

    def _tail(self, chars: int = 3000) -> str:
        qemu = self.qemu_log.read_text(errors="replace") if self.qemu_log.exists() else ""
        return f"--- serial tail ---\n{self.serial()[-chars:]}\n--- qemu ---\n{qemu[-1000:]}"

    def stop(self) -> None:
        """Stop QEMU by its PID (the lab stops it too on close)."""
        if self.proc is not None:
            stop_process(self.proc)

    def __enter__(self) -> "VM":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
