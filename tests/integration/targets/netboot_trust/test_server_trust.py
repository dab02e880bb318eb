# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real netboot server in the trust lab: a host's boot goes to that host, not to whoever asks first.

The server runs in the server namespace exactly as pxe_server runs it (plan, run,
privilege separation, both HTTP front ends), with ``peer_check`` at its default.
Clients are curl and scapy in the lab's namespaces (trustlab.py): the host with
its MAC, an impostor with another, the same impostor wearing the host's MAC (a
clone), and a client behind the router. The tests run in file order and share
one server: each step builds on what the previous ones did to the host's boot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from trustlab import FAR, HERE, HOST, HOST_MAC, IMPOSTOR, IMPOSTOR_MAC, SERVER, TrustLab, stop, wait_until

COLLECTION = Path(os.environ.get("NIXIE_COLLECTION", Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(COLLECTION / "tests" / "reliability"))
from record import record  # noqa: E402  pylint: disable=wrong-import-position,import-error

from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import runtime

SECOND_MAC = "52:54:00:aa:00:02"   # no namespace has it: only the routed client asks for it
KERNEL = b"netboot_trust stand-in kernel\n" * 100


def url(family, path):
    host = SERVER[family] if family == "v4" else "[%s]" % SERVER[family]
    return "http://%s:8080%s" % (host, path)


class Served:
    """serve.py in the server namespace, its files, and curl from any namespace of the lab."""

    def __init__(self, lab):
        self.lab = lab
        self.dir = Path(tempfile.mkdtemp(prefix="nixie-trust-"))
        self.dir.chmod(0o755)   # the server reads the kernel and initrd as nobody
        (self.dir / "kernel").write_bytes(KERNEL)
        (self.dir / "initrd").write_bytes(b"netboot_trust stand-in initrd\n")
        (self.dir / "hosts.json").write_text(json.dumps({"host1": {"mac_address": HOST_MAC},
                                                        "host2": {"mac_address": SECOND_MAC}}), encoding="utf-8")
        self.run_dir = self.dir / "run"
        params = {"hosts_file": str(self.dir / "hosts.json"), "kernel": str(self.dir / "kernel"),
                  "initrd": str(self.dir / "initrd"), "interface": "eth0", "address": SERVER["v4"],
                  "address6": SERVER["v6"], "ipxe_dir": "/usr/lib/ipxe", "run_dir": str(self.run_dir),
                  "max_duration": 600, "idle_timeout": 600, "linger": 0}
        (self.dir / "params.json").write_text(json.dumps(params), encoding="utf-8")
        self.result_path = self.dir / "result.json"
        self.log = open(self.dir / "server.log", "wb")  # pylint: disable=consider-using-with
        self.proc = lab.popen([sys.executable, str(HERE / "serve.py"), str(self.dir / "params.json"), str(self.result_path)],
                              "srv", stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_until(lambda: self.proc.poll() is not None or self.get("srv", "v4", "/api/v1/health")[0] == 200, 30):
            pytest.fail("the server did not come up:\n" + self.server_log())
        if self.proc.poll() is not None:
            pytest.fail("the server ended:\n" + self.server_log())
        self.token = runtime.read_state(str(self.run_dir))["tokens"][HOST_MAC]

    def server_log(self):
        return (self.dir / "server.log").read_text(errors="replace")[-4000:]

    def curl(self, name, args):
        done = self.lab.run(["curl", "-sS", "-g", "--max-time", "10", "-w", "\n%{http_code}", *args], name, check=False)
        body, dummy, status = done.stdout.rpartition("\n")
        return int(status or 0), body

    def get(self, name, family, path):
        return self.curl(name, [url(family, path)])

    def phone_home(self, name, family, token, address):
        report = {"mac": HOST_MAC, "addresses": [{"ifname": "eth0", "mac": HOST_MAC, "address": address, "prefix": 24}],
                  "ssh_host_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBt0k3nPl9HnRCYuTBnUxw8ns9oz6ZOV2x1uS5kNTy8S x"],
                  "hostname": "nixos"}
        status, body = self.curl(name, ["-H", "Authorization: Bearer " + token, "-H", "Content-Type: application/json",
                                        "--data-binary", json.dumps(report), url(family, "/api/v1/phone-home")])
        return status, json.loads(body) if body.startswith("{") else body

    def host(self, mac=HOST_MAC):
        status, body = self.get("srv", "v4", "/api/v1/hosts/" + mac)
        assert status == 200, body
        return json.loads(body)["host"]

    def stop(self):
        stop(self.proc, timeout=15)
        self.log.close()
        return json.loads(self.result_path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def served():
    with TrustLab() as lab:
        server = Served(lab)
        try:
            yield server
        finally:
            if server.proc.poll() is None:
                server.stop()
            shutil.rmtree(server.dir, ignore_errors=True)


def until_status(request, status, timeout=10):
    """``request()``'s (status, body) once its status is ``status``, or its last answer after ``timeout`` seconds."""
    answers = []

    def answered():
        answers.append(request())
        return answers[-1][0] == status
    wait_until(answered, timeout, interval=0.2)
    return answers[-1]


def impostor_rows(host, address=None):
    return [row for row in host["impostors"] if address is None or row["address"] == address]


def test_another_mac_gets_neither_the_script_nor_the_kernel_nor_the_phone_home(served):
    for family in ("v4", "v6"):
        status, body = served.get("imp", family, "/boot/%s/script.ipxe" % HOST_MAC)
        assert status == 403, body
        assert "%s is MAC %s" % (IMPOSTOR[family], IMPOSTOR_MAC) in body and served.token not in body, body
        status, body = served.get("imp", family, "/boot/%s/kernel" % HOST_MAC)
        assert status == 403 and KERNEL[:20].decode() not in body, body
    # With the host's own token (read from the run's state file, as if it had leaked):
    status, answer = served.phone_home("imp", "v4", served.token, IMPOSTOR["v4"])
    assert status == 403 and answer["code"] == "impostor", answer
    host = served.host()
    assert host["state"] == "known" and host["claimed_by"] is None, host
    events = [e for e in host["events"] if e["event"] == "impostor"]
    assert {(e["peer"], e["mac_seen"]) for e in events} == {(IMPOSTOR["v4"], IMPOSTOR_MAC), (IMPOSTOR["v6"], IMPOSTOR_MAC)}, events
    [row] = impostor_rows(host, IMPOSTOR["v4"])
    assert (row["mac"], row["reason"], row["count"], row["routes"]) == (IMPOSTOR_MAC, "impostor", 3,
                                                                        ["kernel", "phone_home", "script"]), row


def test_a_client_behind_the_router_is_served_unchecked_and_that_is_said(served):
    status, body = served.get("far", "v4", "/boot/%s/script.ipxe" % SECOND_MAC)
    assert status == 200 and "nixie.token=" in body, body
    host2 = served.host(SECOND_MAC)
    [note] = [e for e in host2["events"] if e["event"] == "binding_unchecked"]
    assert (note["peer"], note["scope"]) == (FAR["v4"], "routed"), note
    assert host2["claimed_by"] == FAR["v4"]


def test_a_clone_of_the_hosts_mac_claims_first_and_the_host_waits_for_its_next_boot(served):
    lab = served.lab
    # The documented limit (docs/security.md): a NIC wearing the host's MAC is the host as far as the segment can tell.
    lab.run(["ip", "link", "set", "dev", "eth0", "address", HOST_MAC], "imp")
    try:
        lab.peer("imp", "garp", "eth0", IMPOSTOR["v4"])
        got = until_status(lambda: served.get("imp", "v4", "/boot/%s/script.ipxe" % HOST_MAC), 200)
        assert got[0] == 200 and "nixie.token=" + served.token in got[1], got
        assert served.host()["claimed_by"] == IMPOSTOR["v4"]
        # The host itself, in the same boot, at another address: the token is taken.
        status, body = served.get("host", "v4", "/boot/%s/script.ipxe" % HOST_MAC)
        assert status == 403 and "already claimed from %s" % IMPOSTOR["v4"] in body and served.token not in body, body
        [row] = [r for r in impostor_rows(served.host(), HOST["v4"]) if r["reason"] == "claimed"]
        assert row["mac"] == HOST_MAC, row
    finally:
        lab.run(["ip", "link", "set", "dev", "eth0", "address", IMPOSTOR_MAC], "imp")
        lab.peer("imp", "garp", "eth0", IMPOSTOR["v4"])
    # A reboot starts with DHCP: the host's PXE DISCOVER begins a new boot, which it claims.
    before = served.host()["last_seq"]
    lab.peer("host", "pxe-discover", "eth0")
    assert wait_until(lambda: any(e["event"] == "offered" and e["seq"] > before for e in served.host()["events"]), 10)
    status, body = served.get("host", "v6", "/boot/%s/script.ipxe" % HOST_MAC)
    assert status == 200 and "nixie.token=" + served.token in body, body
    assert served.host()["claimed_by"] == HOST["v6"]


def test_the_host_boots_and_phones_home_and_the_impostor_still_gets_nothing(served):
    for kind in ("kernel", "initrd"):
        status, body = served.get("host", "v4", "/boot/%s/%s" % (HOST_MAC, kind))
        assert status == 200, body
    # The impostor, back at its own MAC, tries the token before the host phones home: refused, nothing changes.
    impostor = until_status(lambda: served.phone_home("imp", "v4", served.token, HOST["v4"]), 403)
    assert impostor[0] == 403 and impostor[1]["code"] == "impostor", impostor
    assert served.host()["state"] == "initrd_served"
    status, answer = served.phone_home("host", "v4", served.token, HOST["v4"])
    assert status == 200 and answer["address"] == HOST["v4"], answer
    host = served.host()
    assert host["state"] == "phoned_home" and host["address"] == HOST["v4"], host
    assert host["binding"] == {"checked": True, "method": "arp", "scope": "on_segment", "mac_seen": HOST_MAC,
                               "interface": "eth0"}, host["binding"]
    # After the phone-home: the impostor's replay is still refused as an impostor, not taken as a repeat.
    status, answer = served.phone_home("imp", "v4", served.token, HOST["v4"])
    assert status == 403 and answer["code"] == "impostor", answer
    assert served.host()["address"] == HOST["v4"]


def test_the_result_warns_about_every_peer_refused(served):
    result = served.stop()
    host = next(h for h in result["hosts"] if h["mac"] == HOST_MAC)
    warnings = "\n".join(host["warnings"])
    assert re.search(r"host1: refused \d+ requests \(kernel, phone_home, script\) from %s \(MAC %s\): another machine "
                     r"asked for its boot" % (re.escape(IMPOSTOR["v4"]), IMPOSTOR_MAC), warnings), warnings
    assert "from %s (MAC %s): its boot was already claimed" % (HOST["v4"], HOST_MAC) in warnings, warnings
    assert result["refused_requests"]["impostor"] >= 6 and result["refused_requests"]["claimed"] == 1, result["refused_requests"]
    assert result["counters"]["peer_check_errors"] == 0 and result["counters"]["peer_check_resyncs"] == 0
    assert not next(h for h in result["hosts"] if h["mac"] == SECOND_MAC)["warnings"]
    assert runtime.read_state(str(served.run_dir)) is None
    refused = result["refused_requests"]
    record("owned.impostor", "tests/integration/targets/netboot_trust/test_server_trust.py",
           "%d requests of an impostor refused (script, kernel over IPv4 and IPv6; phone-home with the host's own token before "
           "and after the host's); a clone of the host's MAC claimed first and the host was refused (claimed) until its next "
           "PXE DISCOVER; then the host itself was served and phoned home; the result warned: %s"
           % (refused["impostor"], host["warnings"][0]), refused_requests=refused)
