# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tiny stand-in for the product's HTTP side, for the dnsmasq baseline.

It follows the contract's URL layout (engine-contract.md) with no state
machine: enough for iPXE to fetch a script, kernel and initrd, for UEFI
HTTP boot to fetch ipxe.efi, and for the agent to phone home.  Every
request is appended as one JSON line to ``--log`` so tests can see the
boot sequence; phone-home bodies are kept there too.

Run inside the lab namespace::

    python3 -m nixielab.httpstub --kernel K --initrd I --port 8080 --log requests.jsonl

Routes:
  GET  /boot.ipxe                  chains to the per-MAC script (${net0/mac})
  GET  /boot/{mac}/script.ipxe     kernel + initrd + boot
  GET  /boot/{mac}/kernel|initrd   the lab installer
  GET  /ipxe/{file}                files from --ipxe-dir (HEAD too: OVMF HEADs first)
  POST /api/v1/phone-home          stores the JSON body, answers {"ok": true}
  GET  /api/v1/hosts               phone-homes received so far
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHAIN_SCRIPT = """#!ipxe
echo NIXIE-LAB-IPXE: chain for ${net0/mac}
chain http://%(host)s/boot/${net0/mac}/script.ipxe
"""

# Keep the initrd line bare: anything after the URL makes iPXE wrap the
# initrd in another archive and the kernel panics (seen in the lab).  initrd=initrd
# on the kernel line is what an EFI-stub kernel needs under iPXE 2019.
HOST_SCRIPT = """#!ipxe
echo NIXIE-LAB-IPXE: booting lab installer for %(mac)s
kernel http://%(host)s/boot/%(mac)s/kernel initrd=initrd %(cmdline)s
initrd http://%(host)s/boot/%(mac)s/initrd
boot
"""


class State:
    """Shared by handler threads: configuration and what was received."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lock = threading.Lock()
        self.phone_homes: list[dict] = []

    def log(self, record: dict) -> None:
        record["t"] = time.time()
        with self.lock, open(self.args.log, "a") as out:
            out.write(json.dumps(record) + "\n")


class Handler(BaseHTTPRequestHandler):
    server_version = "nixielab-httpstub"
    state: State  # set on the class by serve()

    def log_message(self, fmt, *args):  # quiet: the JSON log is the record
        pass

    def _send(self, code: int, body: bytes, ctype: str = "text/plain", head: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_file(self, path: str, head: bool) -> None:
        """Stream a file (kernel/initrd/ipxe.efi) without loading it twice."""
        if not os.path.isfile(path):
            self._send(404, b"not found\n", head=head)
            return
        size = os.path.getsize(path)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if not head:
            with open(path, "rb") as src:
                while chunk := src.read(1 << 20):
                    self.wfile.write(chunk)

    def _host(self) -> str:
        return self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"

    def _get(self, head: bool) -> None:
        args = self.state.args
        self.state.log({"method": self.command, "path": self.path, "client": self.client_address[0],
                        "agent": self.headers.get("User-Agent")})
        host = self._host()
        # iPXE percent-encodes ${net0/mac} inside a URL: /boot/52%3A54%3A00.../script.ipxe
        path = urllib.parse.unquote(self.path)
        if path == "/boot.ipxe":
            self._send(200, (CHAIN_SCRIPT % {"host": host}).encode(), head=head)
            return
        match = re.fullmatch(r"/boot/([0-9a-f:]{17})/(script\.ipxe|kernel|initrd)", path)
        if match:
            mac, what = match.groups()
            if what == "script.ipxe":
                cmdline = (f"console=ttyS0 panic=-1 nixie.api=http://{host}/api/v1 "
                           f"nixie.token={args.token} nixie.mac={mac} {args.append}").strip()
                body = HOST_SCRIPT % {"host": host, "mac": mac, "cmdline": cmdline}
                self._send(200, body.encode(), head=head)
            else:
                self._send_file(args.kernel if what == "kernel" else args.initrd, head)
            return
        match = re.fullmatch(r"/ipxe/([A-Za-z0-9._-]+)", path)
        if match:
            self._send_file(os.path.join(args.ipxe_dir, match.group(1)), head)
            return
        if path == "/api/v1/hosts":
            with self.state.lock:
                body = json.dumps({"phone_homes": self.state.phone_homes}).encode()
            self._send(200, body, "application/json", head=head)
            return
        self._send(404, b"not found\n", head=head)

    def do_GET(self):  # noqa: N802 (http.server naming)
        self._get(head=False)

    def do_HEAD(self):  # noqa: N802
        self._get(head=True)

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        record = {"method": "POST", "path": self.path, "client": self.client_address[0],
                  "authorization": self.headers.get("Authorization"),
                  "body": raw.decode(errors="replace")}
        self.state.log(record)
        if self.path != "/api/v1/phone-home":
            self._send(404, b"not found\n")
            return
        with self.state.lock:
            self.state.phone_homes.append(record)
        self._send(200, b'{"ok": true}\n', "application/json")


def serve(args: argparse.Namespace) -> None:
    Handler.state = State(args)
    httpd = ThreadingHTTPServer((args.bind, args.port), Handler)
    Handler.state.log({"event": "listening", "bind": args.bind, "port": args.port})
    httpd.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="nixielab HTTP stand-in")
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--kernel", required=True)
    parser.add_argument("--initrd", required=True)
    parser.add_argument("--ipxe-dir", default="/usr/lib/ipxe")
    parser.add_argument("--token", default="lab-token")
    parser.add_argument("--append", default="", help="extra kernel command line")
    parser.add_argument("--log", required=True, help="JSON-lines request log")
    serve(parser.parse_args())


if __name__ == "__main__":
    main()
