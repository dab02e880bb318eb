# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reference boot services in the lab: dnsmasq as proxyDHCP + TFTP, and the
HTTP stand-in (:mod:`nixielab.httpstub`).

Together they are the *baseline*: what the product's own server is
compared against (boot time, packets), and the source of the real
captures kept as unit-test fixtures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from .installer import Installer
from .net import Lab, wait_for_file_text

PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
IPXE_DIR = "/usr/lib/ipxe"


def proxy_dnsmasq_config(lab: Lab, script_url: str, tftp_root: str = IPXE_DIR) -> str:
    """dnsmasq lines for proxyDHCP + TFTP on the lab bridge.

    Firmware PXE (no user class iPXE) gets the iPXE binary by TFTP; iPXE
    (option 77 "iPXE") gets the HTTP script URL, else it would load iPXE
    again, forever.  UEFI x86-64 entries are given under both CSA names:
    dnsmasq calls arch 7 "BC_EFI" and arch 9 "X86-64_EFI" (RFC 4578 numbers),
    while OVMF x86-64 sends 7.
    """
    lines = [
        "port=0", f"interface={lab.bridge}", "bind-interfaces",
        f"dhcp-range={lab.subnet}.0,proxy,255.255.255.0",
        "log-dhcp", f"log-facility={lab.workdir / 'proxy-dnsmasq.log'}",
        "user=root", "group=root", "pid-file=",
        "enable-tftp", f"tftp-root={tftp_root}",
        "dhcp-userclass=set:ipxe,iPXE",
        'pxe-prompt="nixie lab",0',
    ]
    for csa in ("x86PC",):
        lines += [f'pxe-service=tag:!ipxe,{csa},"undionly",undionly.kpxe',
                  f'pxe-service=tag:ipxe,{csa},"script",{script_url}']
    for csa in ("X86-64_EFI", "BC_EFI"):
        lines += [f'pxe-service=tag:!ipxe,{csa},"ipxe.efi",ipxe.efi',
                  f'pxe-service=tag:ipxe,{csa},"script",{script_url}']
    return "\n".join(lines) + "\n"


def start_proxy_dnsmasq(lab: Lab, script_url: str | None = None, tftp_root: str = IPXE_DIR,
                        extra: list[str] | None = None) -> subprocess.Popen:
    """Run dnsmasq as proxyDHCP + TFTP in the lab namespace (in place of our server)."""
    script_url = script_url or f"http://{lab.controller_ip}:8080/boot.ipxe"
    conf = lab.workdir / "proxy-dnsmasq.conf"
    conf.write_text(proxy_dnsmasq_config(lab, script_url, tftp_root) + "\n".join(extra or []) + "\n")
    log = lab.workdir / "proxy-dnsmasq.log"
    proc = lab.popen(["dnsmasq", "-k", f"--conf-file={conf}"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_for_file_text(log, "TFTP root", 10, proc)
    return proc


def httpboot_site_lines(url: str) -> list[str]:
    """Extra site-dnsmasq lines that answer UEFI HTTP boot clients.

    dnsmasq's proxy mode knows only PXE, so for ``ovmf-httpboot`` the
    address server itself answers: OVMF accepts an offer only if it echoes
    vendor class "HTTPClient" and carries an http:// boot file URL.
    """
    return ["dhcp-vendorclass=set:httpclient,HTTPClient",
            "dhcp-option-force=tag:httpclient,60,HTTPClient",
            f"dhcp-boot=tag:httpclient,{url}"]


class HttpStub:
    """The HTTP stand-in running in the lab namespace, with its request log."""

    def __init__(self, lab: Lab, installer: Installer, port: int = 8080,
                 token: str = "lab-token", append: str = "") -> None:
        self.lab = lab
        self.port = port
        self.base = f"http://{lab.controller_ip}:{port}"
        self.log = lab.workdir / f"httpstub-{port}.jsonl"
        argv = [sys.executable, "-m", "nixielab.httpstub", "--port", str(port),
                "--kernel", str(installer.kernel), "--initrd", str(installer.initrd),
                "--token", token, "--log", str(self.log)]
        if append:
            argv += ["--append", append]
        with open(lab.workdir / f"httpstub-{port}.err", "wb") as err:
            self.proc = lab.popen(argv, cwd=PACKAGE_PARENT, stdout=err, stderr=err)
        wait_for_file_text(self.log, '"listening"', 10, self.proc)

    def requests(self) -> list[dict]:
        """Every request so far, oldest first."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def phone_homes(self) -> list[dict]:
        return [r for r in self.requests() if r.get("path") == "/api/v1/phone-home"]

    def get_json(self, path: str) -> dict:
        """GET from inside the namespace (the stub is not reachable from the root ns)."""
        out = self.lab.run(["curl", "-sS", "--max-time", "5", f"{self.base}{path}"]).stdout
        return json.loads(out)

    def wait_for_path(self, fragment: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.requests():
                if fragment in (record.get("path") or ""):
                    return record
            time.sleep(0.1)
        raise TimeoutError(f"no request for {fragment!r} in {timeout}s")
