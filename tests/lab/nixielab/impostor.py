# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""TEST STAND-IN: an impostor on the lab segment that keeps asking for the machines' boots.

Issue 22's threat, played for real: another machine on the same bridge, with
its own MAC and an address the site's DHCP range does not hand out, that knows
every machine's MAC (every DHCP broadcast shows it) and tries, again and
again, to take a machine's install. It is a test stand-in: production code
never knows it exists; only the molecule scenario's ``molecule_lab`` target
turns it on (``NIXIE_LAB_IMPOSTOR=1``, see tests/lab/README.md).

Every ``--interval`` seconds (0.5), for every MAC of ``--hosts-json`` (the
lab's hosts.json, read again each round, so it may be written after the
impostor starts), it

* GETs ``/boot/<mac>/script.ipxe`` and ``/boot/<mac>/kernel`` (at most 64 KiB
  of a kernel are read: what matters is whether it is served);
* POSTs ``/api/v1/phone-home`` with a forged report (the host's MAC, the
  impostor's own address, a made-up SSH host key, all valid as a report) and
  each token it could get: a made-up one; the real one, read from the
  netboot server's root-only state file (``--server-state``) when that file
  belongs to a server in the lab's network namespace (``--server-netns``);
  and one read from a script, should the server ever hand one out.

Each answer (or connection error) is one JSON line in ``--log``:
``{"time", "mac", "route": "script|kernel|phone_home", "token": null|"made_up"|"state_file"|"script",
"status", "code", "body", "token_seen", "error"}``. Tokens are never
written: ``token_seen`` says whether an answer carried one (``nixie.token=``).
``body`` is the head of an answer that was not 2xx. Other lines:
``{"event": "start"|"tokens"|"stopped", ...}``.

``python -m nixielab.impostor summary --log L --hosts-json H [--server-result R]``
condenses a log for the scenario's verify step (:func:`summarize`).

``nixielab.libvirt up --impostor-hosts`` gives it a namespace of its own on
the lab bridge (``Lab.add_machine``: ``eth0`` with ``DEFAULT_MAC`` and
``<subnet>.50``) and starts it there; ``down`` stops it and deletes the
namespace.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import re
import signal
import struct
import sys
import time
from pathlib import Path

# 02: a locally administered MAC, so it can be no real NIC's.
DEFAULT_MAC = "02:00:00:bb:00:50"
# Host part of the impostor's address: outside the site DHCP range (.100-.199) and the lab's .1-.3.
HOST_PART = 50
DEFAULT_SERVER_STATE = "/run/nixie-metal/pxe_server.json"
KERNEL_READ_LIMIT = 64 * 1024
BODY_HEAD = 240
TOKEN_ON_CMDLINE = re.compile(r"nixie\.token=([A-Za-z0-9_-]{16,128})")
ROUTES = ("script", "kernel", "phone_home")
TOKEN_SOURCES = ("made_up", "state_file", "script")
# What a server that refuses the impostor answers: 403 for every request of an unfinished host; a host that
# finished (phoned home) is no longer booted at all, so its script and kernel get this 404, whoever asks.
FINISHED_404 = re.compile(r"is already (phoned_home|failed) in this run")


# ------------------------------------------------------------------ pure parts
def made_up_host_key(seed: bytes) -> str:
    """An OpenSSH ed25519 public key line that no machine of the lab holds (32 bytes derived from ``seed``)."""
    def field(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data
    blob = field(b"ssh-ed25519") + field(hashlib.sha256(b"nixielab impostor " + seed).digest())
    return "ssh-ed25519 " + base64.b64encode(blob).decode("ascii") + " root@impostor"


def made_up_token(mac: str) -> str:
    """A token of the server's shape (32 URL-safe characters) that is no host's."""
    return base64.urlsafe_b64encode(hashlib.sha256(b"made up for " + mac.encode()).digest()[:24]).decode("ascii")


def forged_report(mac: str, own_mac: str, own_ip: str, host_key: str) -> dict:
    """The phone-home body an impostor sends as host ``mac``: a valid report, with its own address and key."""
    return {"mac": mac, "addresses": [{"ifname": "eth0", "mac": own_mac, "address": own_ip, "prefix": 24}],
            "ssh_host_keys": [host_key], "hostname": "impostor", "uptime": 1.0}


def macs_of_hosts_json(text: str) -> list[str]:
    """The MACs of a hosts.json text (``{"name": {"mac_address": ...}}``), lower case, in file order."""
    data = json.loads(text)
    return [str(entry["mac_address"]).lower() for entry in data.values()
            if isinstance(entry, dict) and entry.get("mac_address")]


def tokens_of_state(record: object, macs: list[str]) -> dict[str, str]:
    """``{mac: token}`` of the lab's MACs in a netboot server's state record (its ``tokens``)."""
    tokens = record.get("tokens") if isinstance(record, dict) else None
    if not isinstance(tokens, dict):
        return {}
    return {mac: token for mac, token in tokens.items() if mac in macs and isinstance(token, str) and token}


def route_key(record: dict) -> str:
    """``script``, ``kernel`` or ``phone_home:<token source>``: the rows a summary counts by."""
    return record["route"] + (":" + record["token"] if record["route"] == "phone_home" else "")


def expected_refusal(record: dict) -> bool:
    """Whether an answer is what a server that refuses the impostor gives (see FINISHED_404)."""
    if record.get("token_seen"):
        return False
    if record.get("status") == 403:
        return True
    return (record.get("status") == 404 and record["route"] in ("script", "kernel")
            and bool(FINISHED_404.search(record.get("body") or "")))


def _host_window(server_host: dict | None) -> tuple[float | None, float | None]:
    """(first DHCP answer, phone-home) times of a host in the netboot server's result, when it has them."""
    events = (server_host or {}).get("events") or []
    offered = [e["time"] for e in events if e.get("event") in ("offered", "script_offered", "boot_file_acked", "script_acked")]
    phoned = [e["time"] for e in events if e.get("event") == "phoned_home"]
    return (min(offered) if offered else None, min(phoned) if phoned else None)


def summarize(records: list[dict], macs: list[str], server_result: dict | None = None, max_unexpected: int = 5) -> dict:
    """What the impostor got, per MAC: for the scenario's verify step to assert on.

    Per MAC: ``answers`` (``{route key: {status: count}}``), ``codes`` (the API's ``code`` of the
    phone-home answers), ``unexpected`` (the first answers that are not a refusal, see
    :func:`expected_refusal`), ``token_seen``, and, with the netboot server's result,
    ``window`` (from the server's first DHCP answer for the MAC to its phone-home),
    ``refused_in_window`` and ``max_gap`` (the longest time in that window without a
    refused script request: the impostor kept asking *throughout* the boot).
    """
    hosts = {mac: {"answers": {}, "codes": {}, "unexpected": [], "token_seen": 0, "refused_script_times": []}
             for mac in macs}
    tokens_read: set[str] = set()
    errors = 0
    answered = 0
    times = []
    for record in records:
        if record.get("event") == "tokens":
            tokens_read.update(record.get("macs") or [])
            continue
        if "route" not in record or record.get("mac") not in hosts:
            continue
        times.append(record["time"])
        host = hosts[record["mac"]]
        if record.get("status") is None:
            errors += 1
            continue
        answered += 1
        key = route_key(record)
        statuses = host["answers"].setdefault(key, {})
        statuses[str(record["status"])] = statuses.get(str(record["status"]), 0) + 1
        if record["route"] == "phone_home" and record.get("code"):
            codes = host["codes"].setdefault(key, {})
            codes[record["code"]] = codes.get(record["code"], 0) + 1
        if record.get("token_seen"):
            host["token_seen"] += 1
        if not expected_refusal(record):
            if len(host["unexpected"]) < max_unexpected:
                host["unexpected"].append({k: record.get(k) for k in ("time", "route", "token", "status", "code", "body")})
        elif record["route"] == "script" and record["status"] == 403:
            host["refused_script_times"].append(record["time"])
    servers = {h.get("mac"): h for h in (server_result or {}).get("hosts") or [] if isinstance(h, dict)}
    for mac, host in hosts.items():
        refused = sorted(host.pop("refused_script_times"))
        start, end = _host_window(servers.get(mac)) if server_result is not None else (None, None)
        host["window"] = [start, end]
        if start is None or end is None:
            host["refused_in_window"] = 0
            host["max_gap"] = None
            continue
        inside = [t for t in refused if start <= t <= end]
        points = [start, *inside, end]
        host["refused_in_window"] = len(inside)
        host["max_gap"] = round(max(b - a for a, b in zip(points, points[1:])), 3)
    return {"macs": macs, "answered": answered, "errors": errors, "real_token_macs": sorted(tokens_read),
            "first": min(times) if times else None, "last": max(times) if times else None, "hosts": hosts}


# ------------------------------------------------------------------ the impostor
def _same_netns(pid: int, netns_path: str) -> bool:
    """Whether process ``pid`` lives in the network namespace bound at ``netns_path`` (/run/netns/<name>)."""
    try:
        ours, theirs = os.stat(f"/proc/{pid}/ns/net"), os.stat(netns_path)
    except OSError:
        return False
    return (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino)


class Impostor:
    """The loop described in the module docstring."""

    def __init__(self, base: str, hosts_json: Path, log: Path, own_ip: str, own_mac: str, *,
                 server_state: Path | None = None, server_netns: str | None = None,
                 interval: float = 0.5, timeout: float = 3.0) -> None:
        match = re.fullmatch(r"http://([^/:]+|\[[^\]]+\])(?::(\d+))?", base.rstrip("/"))
        if match is None:
            raise ValueError(f"--base {base!r}: want http://HOST[:PORT]")
        self.host = match.group(1).strip("[]")
        self.port = int(match.group(2) or 80)
        self.hosts_json = hosts_json
        self.log_path = log
        self.own_ip = own_ip
        self.own_mac = own_mac.lower()
        self.server_state = server_state
        self.server_netns = server_netns
        self.interval = interval
        self.timeout = timeout
        self.host_key = made_up_host_key(own_mac.encode())
        self.stolen: dict[str, dict[str, str]] = {"state_file": {}, "script": {}}
        self.stopping = False
        self._log = open(log, "a", encoding="utf-8")  # pylint: disable=consider-using-with

    def log(self, record: dict) -> None:
        self._log.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
        self._log.flush()

    def stop(self, *dummy) -> None:
        self.stopping = True

    def macs(self) -> list[str]:
        try:
            return macs_of_hosts_json(self.hosts_json.read_text())
        except (OSError, ValueError, KeyError):
            return []

    def read_state_tokens(self, macs: list[str]) -> None:
        """Take the real tokens from the server's state file, if it is this lab's server's (root can read it)."""
        if self.server_state is None:
            return
        try:
            record = json.loads(self.server_state.read_text())
        except (OSError, ValueError):
            return
        pid = record.get("pid") if isinstance(record, dict) else None
        if not isinstance(pid, int) or (self.server_netns and not _same_netns(pid, self.server_netns)):
            return
        found = tokens_of_state(record, macs)
        if found and found != self.stolen["state_file"]:
            self.stolen["state_file"] = found
            self.log({"event": "tokens", "source": "state_file", "macs": sorted(found)})

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                limit: int | None = None) -> tuple[int | None, bytes, str | None]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers={"Connection": "close", **(headers or {})})
            response = conn.getresponse()
            data = response.read(limit) if limit else response.read()
            return response.status, data, None
        except (OSError, http.client.HTTPException) as exc:
            return None, b"", f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()

    def answer(self, mac: str, route: str, token: str | None, status: int | None, data: bytes, error: str | None) -> None:
        text = data.decode("utf-8", "replace")
        seen = TOKEN_ON_CMDLINE.search(text) if route == "script" else None
        if seen and mac not in self.stolen["script"]:
            self.stolen["script"][mac] = seen.group(1)
            self.log({"event": "tokens", "source": "script", "macs": [mac]})
        code = None
        if route == "phone_home" and status is not None:
            try:
                code = json.loads(text).get("code")
            except (ValueError, AttributeError):
                code = None
        ok = status is not None and 200 <= status < 300
        self.log({"mac": mac, "route": route, "token": token, "status": status, "code": code,
                  "body": None if ok or status is None else text[:BODY_HEAD], "token_seen": bool(seen), "error": error})

    def ask_once(self, macs: list[str]) -> None:
        self.read_state_tokens(macs)
        for mac in macs:
            status, data, error = self.request("GET", f"/boot/{mac}/script.ipxe")
            self.answer(mac, "script", None, status, data, error)
            status, data, error = self.request("GET", f"/boot/{mac}/kernel", limit=KERNEL_READ_LIMIT)
            self.answer(mac, "kernel", None, status, data, error)
            report = json.dumps(forged_report(mac, self.own_mac, self.own_ip, self.host_key)).encode()
            tokens = [("made_up", made_up_token(mac))]
            tokens += [(source, self.stolen[source][mac]) for source in ("state_file", "script") if mac in self.stolen[source]]
            for source, token in tokens:
                status, data, error = self.request("POST", "/api/v1/phone-home", body=report,
                                                   headers={"Authorization": "Bearer " + token,
                                                            "Content-Type": "application/json"})
                self.answer(mac, "phone_home", source, status, data, error)

    def run(self, ready: Path | None = None) -> None:
        self.log({"event": "start", "pid": os.getpid(), "address": self.own_ip, "mac": self.own_mac,
                  "server": f"{self.host}:{self.port}", "hosts_json": str(self.hosts_json)})
        if ready is not None:
            ready.write_text(str(os.getpid()))
        while not self.stopping:
            started = time.monotonic()
            self.ask_once(self.macs())
            time.sleep(max(0.05, self.interval - (time.monotonic() - started)))
        self.log({"event": "stopped", "pid": os.getpid()})
        self._log.close()


def read_log(path: Path) -> list[dict]:
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line cut short when the impostor was killed
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nixielab.impostor", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="ask for the machines' boots until SIGTERM (run it in the impostor's namespace)")
    run.add_argument("--base", required=True, help="the netboot server, http://HOST:PORT")
    run.add_argument("--hosts-json", required=True, type=Path)
    run.add_argument("--log", required=True, type=Path)
    run.add_argument("--address", required=True, help="the impostor's own address (what its reports claim)")
    run.add_argument("--mac", default=DEFAULT_MAC, help="the impostor's own MAC")
    run.add_argument("--server-state", type=Path, default=Path(DEFAULT_SERVER_STATE))
    run.add_argument("--server-netns", help="/run/netns/<lab namespace>: only a server living there is this lab's")
    run.add_argument("--interval", type=float, default=0.5)
    run.add_argument("--ready", type=Path, help="file written (with the PID) once the loop starts")
    summary = sub.add_parser("summary", help="condense a log (JSON on stdout)")
    summary.add_argument("--log", required=True, type=Path)
    summary.add_argument("--hosts-json", required=True, type=Path)
    summary.add_argument("--server-result", type=Path, help="the pxe_server module's result (JSON)")
    args = parser.parse_args(argv)
    if args.command == "summary":
        server = json.loads(args.server_result.read_text()) if args.server_result else None
        print(json.dumps(summarize(read_log(args.log), macs_of_hosts_json(args.hosts_json.read_text()), server)))
        return 0
    impostor = Impostor(args.base, args.hosts_json, args.log, args.address, args.mac, server_state=args.server_state,
                        server_netns=args.server_netns, interval=args.interval)
    signal.signal(signal.SIGTERM, impostor.stop)
    signal.signal(signal.SIGINT, impostor.stop)
    impostor.run(args.ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
