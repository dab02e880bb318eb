# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hostile input against the real pxe_server (started by Ansible in a private namespace), no VM needed.

Hostile clients sit in the lab's "site" namespace, across the bridge from the server, and speak
raw UDP and raw HTTP request lines (probe.py), since curl and tftp clients clean paths up:

* nothing outside the registered files is served, over TFTP or HTTP, whatever the path trick;
  TFTP write requests are refused and write nothing;
* a phone-home with no token, a wrong one, another host's, or replayed after the host finished
  changes nothing;
* a TFTP client that vanishes mid-transfer gives its socket back;
* the server runs with no capability once bound;
* the real agent keeps retrying while the server is killed and started again, and succeeds
  with the new server;
* and when it stops, no process and no bound port remain.

Each case writes its figures with tests/reliability/record.py for docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

COLLECTION = Path(os.environ.get("NIXIE_COLLECTION", Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(COLLECTION / "tests" / "lab"))
sys.path.insert(0, str(COLLECTION / "tests" / "reliability"))

from nixielab.net import Lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
from nixielab.probes import SERVER_PORTS, bound_ports, wait_until  # noqa: E402  pylint: disable=wrong-import-position,import-error
from record import record  # noqa: E402  pylint: disable=wrong-import-position,import-error

HERE = Path(__file__).resolve().parent
PROBE = HERE / "probe.py"
AGENT = COLLECTION / "nix" / "agent" / "nixie-agent"
MACS = {"node1": "52:54:00:12:34:01", "node2": "52:54:00:12:34:02"}
# Where each machine's stand-in sends from: its own namespace on the bridge with its own MAC, since the server serves
# a host's boot and phone-home only to that MAC (docs/security.md). The site namespace is another machine.
MACHINE_IPS = {"node1": "10.77.0.61", "node2": "10.77.0.62"}
TEST = "tests/integration/targets/reliability_paths/test_reliability_paths.py::"
# What a leak would look like in an answer: each secret file's marker and /etc/passwd's first line.
MARKERS = (b"NIXIE-SECRET-BESIDE-IPXE", b"NIXIE-SECRET-BESIDE-KERNEL", b"root:x:0:0")


@pytest.fixture(scope="module")
def site():
    # Not pytest's tmp_path (under /tmp/pytest-of-root, root's only): the server reads its files as nobody once bound.
    files = Path(tempfile.mkdtemp(prefix="nixie-reliability-paths-"))
    files.chmod(0o755)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, files)
        lab = cleanup.enter_context(Lab(site_dhcp=False))
        ipxe_dir = files / "ipxe"
        ipxe_dir.mkdir()
        # Stand-ins for the iPXE binaries, big enough for a transfer of many blocks.
        lab.registered = {}
        for name, size in (("ipxe.efi", 300 * 1024), ("undionly.kpxe", 70 * 1024), ("snponly.efi", 4096)):
            content = (name.encode() + b"-") * (size // (len(name) + 1))
            (ipxe_dir / name).write_bytes(content)
            lab.registered[name] = content
        (ipxe_dir / "secret.txt").write_bytes(MARKERS[0])
        (ipxe_dir / "evil.efi").symlink_to("/etc/passwd")        # a symlink out of the directory
        (ipxe_dir / "root").symlink_to("/")                       # a directory symlink to /
        (files / "kernel").write_bytes(b"KERNEL" * 1000)
        (files / "initrd").write_bytes(b"INITRD" * 1000)
        (files / "kernel.gz").write_bytes(MARKERS[1])             # a sibling that must never be served
        (files / "hosts.json").write_text(json.dumps({n: {"mac_address": m} for n, m in MACS.items()}), encoding="utf-8")
        lab.registered["kernel"] = (files / "kernel").read_bytes()
        lab.registered["initrd"] = (files / "initrd").read_bytes()
        lab.files = files
        lab.machines = {MACS[name]: lab.add_machine(MACS[name], address) for name, address in MACHINE_IPS.items()}
        lab.ipxe_dir = ipxe_dir
        lab.run_dir = str(files / "run")
        lab.env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_ASYNC_DIR=str(files / "async"))
        lab.server = start_server(lab)
        yield lab
        stop_server(lab)


def server_args(lab, **extra):
    args = {"hosts_file": str(lab.files / "hosts.json"), "kernel": str(lab.files / "kernel"),
            "initrd": str(lab.files / "initrd"), "interface": lab.bridge, "run_dir": lab.run_dir,
            "ipxe_dir": str(lab.ipxe_dir), "idle_timeout": 600, "max_duration": 600}
    args.update(extra)
    return args


def ansible(lab, module, args, *options):
    command = ["ansible", "localhost", "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable,
               "-m", module, "-a", json.dumps(args), *options]
    completed = lab.run(command, check=False, env=lab.env)
    try:
        status, body = completed.stdout.split(" => ", 1)
        result = json.loads(body)
    except ValueError:
        pytest.fail("no JSON result from ansible:\n%s\n%s" % (completed.stdout[-3000:], completed.stderr[-3000:]))
    result["failed"] = "FAILED" in status
    result["_output"] = completed.stdout + completed.stderr
    return result


def state_record(lab):
    try:
        return json.loads(Path(lab.run_dir, "pxe_server.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def start_server(lab, **extra):
    """pxe_server as an async job; returns {jid, pid, server_pid, ready (monotonic when the ports were bound)}."""
    job = ansible(lab, "nixie.metal.pxe_server", server_args(lab, **extra), "-B", "300", "-P", "0")
    assert not job["failed"], job
    record_ = wait_until(lambda: state_record(lab), "the server did not write its state file")
    wait_until(lambda: bound_ports(lab) == SERVER_PORTS, "the server did not bind its ports: %s" % bound_ports(lab))
    # pid: the module's process, root, which keeps the state file; server_pid: its child that binds and serves.
    return {"jid": job["ansible_job_id"], "pid": record_["pid"], "server_pid": record_["server_pid"], "ready": time.monotonic()}


def job_result(lab, jid, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = ansible(lab, "ansible.builtin.async_status", {"jid": jid})
        if status.get("finished"):
            return status
        time.sleep(0.5)
    pytest.fail("the server job did not finish in %ds" % timeout)


def stop_server(lab):
    if state_record(lab) is None:
        return None
    stopped = ansible(lab, "nixie.metal.pxe_server", {"state": "stopped", "run_dir": lab.run_dir})
    assert not stopped["failed"], stopped
    return job_result(lab, lab.server["jid"])


def udp_sockets_of(lab, pid):
    """How many UDP sockets the process holds (its three listeners plus one per running TFTP transfer)."""
    listing = lab.run(["ss", "-H", "-u", "-a", "-n", "-p"], check=False).stdout
    return sum(1 for line in listing.splitlines() if "pid=%d," % pid in line)


def tcp_connections_of(lab, pid):
    """How many TCP sockets the process holds (its listener plus one per open connection)."""
    listing = lab.run(["ss", "-H", "-t", "-a", "-n", "-p"], check=False).stdout
    return sum(1 for line in listing.splitlines() if "pid=%d," % pid in line)


def probe(lab, command, args, ns=None):
    done = lab.run([sys.executable, str(PROBE), command, json.dumps(args)], ns=ns or lab.site_ns)
    return json.loads(done.stdout)


# -- nothing outside the registered files ----------------------------------------------------------

HALF_SENT = {}


def test_half_sent_requests_are_opened(site):
    """The first half of the half-sent case: 200 connections opened now, checked after the next cases ran."""
    pid = site.server["server_pid"]
    HALF_SENT["baseline"] = tcp_connections_of(site, pid)
    HALF_SENT["count"] = 200
    command = [sys.executable, str(PROBE), "http-hold", json.dumps({"connections": HALF_SENT["count"], "wait": 40})]
    HALF_SENT["proc"] = subprocess.Popen(site.wrap(command, ns=site.site_ns), stdout=subprocess.PIPE, text=True)
    assert json.loads(HALF_SENT["proc"].stdout.readline())["opened"] == HALF_SENT["count"]
    HALF_SENT["held"] = tcp_connections_of(site, pid) - HALF_SENT["baseline"]
    assert HALF_SENT["held"] >= HALF_SENT["count"] * 0.9, HALF_SENT


TFTP_REFUSED = [
    b"../ipxe.efi", b"../../../../etc/passwd", b"/etc/passwd", b"/ipxe.efi", b"./ipxe.efi", b"ipxe.efi/",
    b"%2e%2e/ipxe.efi", b"%2e%2e%2f%2e%2e%2fetc%2fpasswd", b"..\\..\\etc\\passwd", b"C:\\ipxe.efi",
    b"ipxe.efi\x00../../etc/passwd", b"\xc0\xae\xc0\xae/etc/passwd", b"....//....//etc/passwd", b"~root/.ssh/id_rsa",
    b"file:///etc/passwd", b"evil.efi", b"root/etc/passwd", b"secret.txt", b"IPXE.EFI", b" ipxe.efi", b"ipxe.efi\n",
    b"a" * 300, b"a" * 1990, b"..", b".", b"",
]


def test_tftp_serves_nothing_outside_the_registered_files(site):
    requests = [{"name": name.decode("latin-1"), "packet": (b"\x00\x01" + name + b"\x00octet\x00").hex()} for name in TFTP_REFUSED]
    # netascii of a registered file, and a request far over the size limit
    requests.append({"name": "ipxe.efi (netascii)", "packet": (b"\x00\x01ipxe.efi\x00netascii\x00").hex()})
    requests.append({"name": "4 KiB request", "packet": (b"\x00\x01" + b"b" * 4096 + b"\x00octet\x00").hex()})
    control = [{"name": name, "packet": (b"\x00\x01" + name.encode() + b"\x00octet\x00").hex(), "control": True}
               for name in ("ipxe.efi", "undionly.kpxe")]
    results = probe(site, "tftp", {"requests": requests + control})
    refused = [r for r in results if not r.get("control")]
    for result in refused:
        answer = result["answer"]
        assert answer is not None and answer["opcode"] == 5, "TFTP answered %r with %r" % (result["name"], answer)
        assert answer["number"] in (1, 2, 4, 0), result
    for result in results:
        if result.get("control"):
            assert result["answer"]["opcode"] == 3, "the control request %s was not served: %r" % (result["name"], result)
    codes = {}
    for result in refused:
        codes[result["answer"]["number"]] = codes.get(result["answer"]["number"], 0) + 1
    record("paths.tftp", TEST + "test_tftp_serves_nothing_outside_the_registered_files",
           "%d hostile read requests (../, absolute, %%2e%%2e, NUL, backslash, symlinks out, overlong, netascii) "
           "all refused with a TFTP error; 0 DATA" % len(refused),
           requests=len(refused), error_codes=codes, controls_served=len(control))


def test_tftp_refuses_writes_and_writes_nothing(site):
    before = sorted(os.listdir(site.ipxe_dir))
    results = probe(site, "tftp-write", {"names": ["ipxe.efi", "new.efi", "../../tmp/planted"]})
    for result in results[:-1]:
        assert result["answer"] and result["answer"]["opcode"] == 5 and result["answer"]["number"] == 2, result
    assert results[-1]["answer"] is None, "a stray DATA packet on port 69 got an answer: %r" % results[-1]
    assert sorted(os.listdir(site.ipxe_dir)) == before
    assert not os.path.exists("/tmp/planted")
    record("paths.tftp_write", TEST + "test_tftp_refuses_writes_and_writes_nothing",
           "%d write requests refused (error 2, access violation), a stray DATA ignored, no file written" % (len(results) - 1),
           requests=len(results))


HTTP_TARGETS = [
    "/ipxe/../../etc/passwd", "/ipxe/..%2f..%2fetc%2fpasswd", "/ipxe/%2e%2e/%2e%2e/etc/passwd", "/ipxe/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/ipxe/%252e%252e%252fetc%252fpasswd", "/ipxe/..%5c..%5cetc%5cpasswd", "/ipxe/....//....//etc/passwd", "/ipxe/evil.efi",
    "/ipxe/root/etc/passwd", "/ipxe/root%2fetc%2fpasswd", "/ipxe/secret.txt", "/ipxe/ipxe.efi%00.txt", "/ipxe/ipxe.efi%00",
    "/ipxe/%c0%ae%c0%ae/etc/passwd", "/ipxe/ipxe.efi/../../../../etc/passwd", "//etc/passwd", "/etc/passwd", "/../../etc/passwd",
    "http://10.77.0.1:8080/../../etc/passwd", "/boot/52:54:00:12:34:01/../../../etc/passwd",
    "/boot/52:54:00:12:34:01/kernel/../../../../etc/passwd", "/boot/..%2f..%2fetc%2fpasswd/kernel",
    "/boot/52:54:00:12:34:01/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/boot/52:54:00:12:34:01/kernel.gz",
    "/boot/52:54:00:12:34:01/kernel%00", "/boot/52:54:00:12:34:01/kernel/", "/boot/%2fetc%2fpasswd/kernel",
    "/ipxe/" + "a" * 9000, "/boot/52:54:00:12:34:01/" + "../" * 3000 + "etc/passwd",
]


def http_request(target, extra_headers=b""):
    return b"GET " + target.encode("latin-1") + b" HTTP/1.1\r\nHost: 10.77.0.1:8080\r\nConnection: close\r\n" + extra_headers + b"\r\n"


def test_http_serves_nothing_outside_the_registered_files(site):
    requests = [{"target": target[:120], "raw": http_request(target).hex()} for target in HTTP_TARGETS]
    # Header tricks on a registered file: a compressed sibling must not be picked, a Range stays inside the file.
    requests.append({"target": "/boot/52:54:00:12:34:01/kernel + Accept-Encoding: gzip",
                     "raw": http_request("/boot/52:54:00:12:34:01/kernel", b"Accept-Encoding: gzip\r\n").hex()})
    requests.append({"target": "/boot/52:54:00:12:34:01/kernel + Range: bytes=-99999999",
                     "raw": http_request("/boot/52:54:00:12:34:01/kernel", b"Range: bytes=-99999999\r\n").hex()})
    requests.append({"target": "NUL in the request line", "raw": b"GET /ipxe/ipxe.efi\x00/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".hex()})
    # From node1's own link, so the header tricks reach its kernel rather than the check in front of it.
    results = probe(site, "http", {"requests": requests}, ns=site.machines[MACS["node1"]])
    registered = set(site.registered.values())
    statuses = {}
    for result in results:
        body = bytes.fromhex(result["body"])
        for marker in MARKERS:
            assert marker not in body, "%s leaked %r" % (result["target"], marker)
        status = result["status"]
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status in (200, 206):
            # Only a registered file (or a part of one) may come back.
            assert any(body and body in content for content in registered), "%s answered 200 with %r" % (result["target"], body[:80])
        else:
            assert status is None or 400 <= status < 500, "%s: %s" % (result["target"], result["status_line"])
    record("paths.http", TEST + "test_http_serves_nothing_outside_the_registered_files",
           "%d raw request lines (../, %%2e%%2e, %%252e, backslash, NUL, absolute-form, symlinks out, 9 KB paths, header tricks): "
           "no byte outside the registered files" % len(results), requests=len(results), statuses=statuses)


# -- only the machines we own --------------------------------------------------------------------

def api(lab, method, path, token=None, body=None, authorization=None, ns=None):
    command = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method, "http://%s:8080/api/v1%s" % (lab.controller_ip, path)]
    if token is not None:
        authorization = "Bearer " + token
    if authorization is not None:
        command += ["-H", "Authorization: " + authorization]
    if body is not None:
        command += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    out = lab.run(command, ns=ns or lab.site_ns).stdout
    text, dummy, code = out.rpartition("\n")
    return int(code), json.loads(text) if text.strip() else None


def token_of(lab, mac):
    """The token in the host's script, fetched from the host's own link."""
    script = lab.run(["curl", "-sf", "http://%s:8080/boot/%s/script.ipxe" % (lab.controller_ip, mac)], ns=lab.machines[mac]).stdout
    return re.search(r"nixie\.token=(\S+)", script).group(1)


def report(mac, address, key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBt0k3nPl9HnRCYuTBnUxw8ns9oz6ZOV2x1uS5kNTy8S"):
    return {"mac": mac, "addresses": [{"ifname": "eth0", "mac": mac, "address": address, "prefix": 24}],
            "ssh_host_keys": [key], "hostname": "nixos"}


def hosts_view(lab):
    code, answer = api(lab, "GET", "/hosts")
    assert code == 200
    # A refusal from another MAC is recorded as the host's `impostor` event by design; nothing else may change.
    return {h["mac"]: (h["state"], h["address"], tuple(h["ssh_host_keys"]), len([e for e in h["events"] if e["event"] != "impostor"]))
            for h in answer["hosts"]}


def test_only_a_hosts_own_token_changes_it(site):
    node1, node2 = MACS["node1"], MACS["node2"]
    token1, token2 = token_of(site, node1), token_of(site, node2)
    at1, ip1 = site.machines[node1], MACHINE_IPS["node1"]
    before = hosts_view(site)
    attempts = {
        "no token": api(site, "POST", "/phone-home", None, report(node1, ip1), ns=at1),
        "wrong token": api(site, "POST", "/phone-home", "W" * 32, report(node1, ip1), ns=at1),
        "another host's token": api(site, "POST", "/phone-home", token2, report(node1, ip1), ns=at1),
        "not a bearer token": api(site, "POST", "/phone-home", None, report(node1, ip1), authorization="Basic " + token1, ns=at1),
        "the host's token from another MAC": api(site, "POST", "/phone-home", token1, report(node1, site.site_ip)),
    }
    for what, (code, answer) in attempts.items():
        assert code in (401, 403) and answer["ok"] is False, (what, code, answer)
    assert attempts["the host's token from another MAC"][1]["code"] == "impostor", attempts
    assert hosts_view(site) == before, "a refused phone-home changed a host"

    code, answer = api(site, "POST", "/phone-home", token1, report(node1, ip1), ns=at1)
    assert code == 200 and answer["state"] == "phoned_home", answer
    done = hosts_view(site)
    code, answer = api(site, "POST", "/phone-home", token1, report(node1, ip1), ns=at1)
    assert code == 200 and answer["repeat"] is True
    attempts["replay of the same report"] = (code, answer)
    assert hosts_view(site) == done, "a replayed report added an event or changed the host"
    impostor = report(node1, "10.77.0.66", key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIImpostorImpostorImpostorImpostorImpostorImpo")
    code, answer = api(site, "POST", "/phone-home", token1, impostor, ns=at1)
    attempts["replay after done, other address and key"] = (code, answer)
    assert code == 409 and answer["code"] == "already_finished", answer
    code, answer = api(site, "POST", "/phone-home", token1, impostor)
    attempts["replay after done from another MAC"] = (code, answer)
    assert code == 403 and answer["code"] == "impostor", answer
    code, answer = api(site, "POST", "/phone-home", token1, report(node2, ip1), ns=at1)
    attempts["one host's token for another MAC"] = (code, answer)
    assert code == 403
    assert hosts_view(site) == done, "the finished host or the other host changed"
    assert done[node2] == before[node2]
    # The host got no more boot files once done.
    code = site.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://%s:8080/boot/%s/script.ipxe" % (site.controller_ip, node1)],
                    ns=site.site_ns).stdout
    assert code == "404"
    record("owned.phone_home", TEST + "test_only_a_hosts_own_token_changes_it",
           "%d forged or replayed phone-homes refused or idempotent (no token 401, wrong 403, other host's 403, "
           "the host's own token from another MAC 403, replay after done 409, and 403 from another MAC); no host changed"
           % len(attempts),
           answers={what: code for what, (code, dummy) in attempts.items()})


# -- a TFTP client that vanishes ------------------------------------------------------------------

def test_a_vanishing_tftp_client_gives_its_socket_back(site):
    pid = site.server["server_pid"]
    baseline = udp_sockets_of(site, pid)
    figures = {}
    for how in ("close", "silent"):
        proc = subprocess.Popen(site.wrap([sys.executable, str(PROBE), "tftp-vanish", json.dumps({"how": how, "acks": 3, "linger": 12})],
                                          ns=site.site_ns), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        midway = json.loads(proc.stdout.readline())
        assert midway["acked"] == 3, midway
        assert udp_sockets_of(site, pid) == baseline + 1, "the server holds no socket for the running transfer"
        proc.stdin.write("vanish\n")
        proc.stdin.flush()
        started = time.monotonic()
        # It is freed once the client is gone: at once when its port answers ICMP unreachable,
        # after the retransmission budget (5 retries of 1 s) when it is just silent.
        wait_until(lambda: udp_sockets_of(site, pid) == baseline, "the %s client's transfer socket was not freed" % how,
                   timeout=15, interval=0.05)
        figures[how] = round(time.monotonic() - started, 2)
        proc.wait(timeout=30)
    assert figures["close"] < 3, figures
    assert figures["silent"] < 10, figures
    record("faults.tftp_vanish", TEST + "test_a_vanishing_tftp_client_gives_its_socket_back",
           "transfer socket freed %.1f s after the client closed its port, %.1f s after it fell silent (5 retries x 1 s)"
           % (figures["close"], figures["silent"]), seconds=figures)


def test_abandoned_transfers_from_one_host_leave_room_for_the_others(site):
    pid = site.server["server_pid"]
    baseline = udp_sockets_of(site, pid)
    abandon = subprocess.Popen(site.wrap([sys.executable, str(PROBE), "tftp-abandon", json.dumps({"transfers": 1100})], ns=site.site_ns),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        held = json.loads(abandon.stdout.readline())
        during = udp_sockets_of(site, pid) - baseline
        # Another machine (another address: the lab side of the bridge) still gets its file, at once.
        started = time.monotonic()
        fetched = site.run(["curl", "-sS", "--max-time", "5", "-o", "-", "tftp://%s/ipxe.efi" % site.controller_ip],
                           text=False, check=False)
        seconds = time.monotonic() - started
    finally:
        abandon.stdin.write("vanish\n")
        abandon.stdin.flush()
        abandon.wait(timeout=30)
    assert held["sent"] == 1100 and 1 <= held["answered"] <= 4, held
    assert during <= 4, during
    assert fetched.returncode == 0 and fetched.stdout == site.registered["ipxe.efi"], fetched.stderr
    wait_until(lambda: udp_sockets_of(site, pid) == baseline, "the abandoned transfers were not freed", timeout=15)
    record("storm.tftp_abandoned", TEST + "test_abandoned_transfers_from_one_host_leave_room_for_the_others",
           "1,100 transfers opened from one host and abandoned: %d started (the per-client cap), the rest dropped; "
           "another machine fetched ipxe.efi in %.1f s meanwhile" % (held["answered"], seconds),
           answered=held["answered"], other_fetch_seconds=round(seconds, 2))


# -- privileges ------------------------------------------------------------------------------------

def proc_status(pid, tid=None):
    path = "/proc/%d/status" % pid if tid is None else "/proc/%d/task/%s/status" % (pid, tid)
    fields = {}
    for line in Path(path).read_text(encoding="ascii").splitlines():
        name, dummy, value = line.partition(":")
        fields[name] = value.split()
    return fields


def port_holders(lab):
    """PIDs of the processes holding the server's ports, from ss in the lab's namespace."""
    listing = lab.run(["ss", "-H", "-lnup", "-lntp"], check=False).stdout
    holders = {}
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 5 and ":" in fields[4]:
            protocol = "udp" if fields[0].startswith("udp") or fields[0] == "UNCONN" else "tcp"
            port = (protocol, int(fields[4].rsplit(":", 1)[1]))
            if port in SERVER_PORTS:
                holders.setdefault(port, set()).update(int(pid) for pid in re.findall(r"pid=(\d+),", line))
    return holders


def test_the_server_runs_as_nobody_with_no_privilege_once_bound(site):
    supervisor, serving = site.server["pid"], site.server["server_pid"]
    assert proc_status(supervisor)["Uid"] == ["0"] * 4, "the server should have been started as root for this test"
    # The process that holds every port is the serving child, not the root supervisor, which holds none.
    holders = port_holders(site)
    assert holders == {port: {serving} for port in SERVER_PORTS}, holders
    nobody = pwd.getpwnam("nobody")
    threads = sorted(os.listdir("/proc/%d/task" % serving))
    for tid in threads:  # capabilities belong to each thread; user IDs to the process
        status = proc_status(serving, tid)
        assert status["Uid"] == [str(nobody.pw_uid)] * 4, "thread %s: Uid (real, effective, saved, fs) %s" % (tid, status["Uid"])
        assert status["Gid"] == [str(nobody.pw_gid)] * 4, "thread %s: Gid %s" % (tid, status["Gid"])
        assert status["Groups"] == [], "thread %s: supplementary groups %s" % (tid, status["Groups"])
        for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[field][0], 16) == 0, "thread %s: %s is %s" % (tid, field, status[field])
        assert status["NoNewPrivs"] == ["1"]
    # What those credentials may do: a process with exactly them (read from /proc, replayed with setpriv)
    # cannot write a root-owned 0600 file in a directory it may enter, nor signal a root process.
    status = proc_status(serving)
    victim = site.files / "root-only"
    victim.write_text("root's", encoding="utf-8")
    victim.chmod(0o600)
    as_server = ["setpriv", "--reuid", status["Uid"][3], "--regid", status["Gid"][3], "--clear-groups",
                 "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    write = subprocess.run(as_server + ["sh", "-c", "echo owned > %s" % victim], capture_output=True, text=True, check=False)
    assert write.returncode != 0 and "Permission denied" in write.stderr, (write.returncode, write.stderr)
    assert victim.read_text(encoding="utf-8") == "root's"
    kill = subprocess.run(as_server + ["kill", "-0", str(supervisor)], capture_output=True, text=True, check=False)
    assert kill.returncode != 0, "a process with the server's credentials may signal root's processes"
    # It still serves: as nobody, an iPXE binary over HTTP (a file it opens per request) and the API.
    fetched = site.run(["curl", "-sS", "--max-time", "5", "-o", "-", "http://%s:8080/ipxe/ipxe.efi" % site.controller_ip],
                       ns=site.site_ns, text=False, check=False)
    assert fetched.returncode == 0 and fetched.stdout == site.registered["ipxe.efi"], fetched.stderr
    code, answer = api(site, "GET", "/hosts")
    assert code == 200, answer
    record("privileges.dropped", TEST + "test_the_server_runs_as_nobody_with_no_privilege_once_bound",
           "started as root; the process holding UDP 67/69/4011 and TCP 8080 is a child that, in all %d threads, runs as "
           "nobody (Uid and Gid real/effective/saved/fs %d/%d, no group), with CapEff = CapPrm = CapBnd = CapAmb = 0 and "
           "NoNewPrivs = 1; its credentials cannot write a root-owned 0600 file or signal root; the root parent holds no "
           "port; it still serves" % (len(threads), nobody.pw_uid, nobody.pw_gid),
           status={field: " ".join(status[field]) for field in ("Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs")},
           threads=len(threads))


def test_half_sent_requests_do_not_hold_connections(site):
    assert HALF_SENT, "test_half_sent_requests_are_opened did not run"
    pid, count = site.server["server_pid"], HALF_SENT["count"]
    result = json.loads(HALF_SENT["proc"].stdout.readline())
    HALF_SENT["proc"].wait(timeout=10)
    assert result["still_open"] == 0, result["still_open"]
    slowest = {kind: max(entry["after"] for entry in result["closed"] if entry["kind"] == kind)
               for kind in ("headers", "body", "boot_headers")}
    # Half a request head: closed after 15 s, by the API's connections (checked once a second) or by
    # aiohttp (a boot route). A body that never comes: 408 at 15 s, and the connection closed with it.
    assert slowest["headers"] < 15 + 5, slowest
    assert slowest["boot_headers"] < 15 + 5, slowest
    assert slowest["body"] < 15 + 5, slowest
    bodies = [entry for entry in result["closed"] if entry["kind"] == "body"]
    assert bodies and all(entry["status"].startswith("HTTP/1.1 408") for entry in bodies), bodies[:3]
    wait_until(lambda: tcp_connections_of(site, pid) <= HALF_SENT["baseline"], "the server still holds the connections", timeout=5)
    record("storm.half_sent_http", TEST + "test_half_sent_requests_do_not_hold_connections",
           "%d connections sending half a request and waiting: closed by the server after %.0f s (API request head never "
           "ended), %.0f s (boot request head never ended, served by aiohttp) and %.0f s (API body never came: 408); "
           "aiohttp's default held them an hour" % (count, slowest["headers"], slowest["boot_headers"], slowest["body"]),
           connections=count, slowest_close_seconds=slowest, held_at_peak=HALF_SENT["held"])


# -- the agent across a server that dies and comes back --------------------------------------------

def test_the_agent_retries_while_the_server_restarts_and_succeeds_after(site):
    mac = MACS["node2"]
    token = token_of(site, mac)
    installer = site.files / "installer"
    (installer / "ssh").mkdir(parents=True)
    (installer / "ssh" / "ssh_host_ed25519_key.pub").write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBt0k3nPl9HnRCYuTBnUxw8ns9oz6ZOV2x1uS5kNTy8S root@installer\n", encoding="utf-8")
    (installer / "cmdline").write_text("initrd=initrd console=ttyS0 nixie.api=http://%s:8080/api/v1 nixie.token=%s nixie.mac=%s\n"
                                       % (site.controller_ip, token, mac), encoding="utf-8")
    # The server dies the way an async timeout kills it: SIGKILL, no cleanup.
    killed = site.server["pid"]
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: bound_ports(site) == set(), "the kernel did not release the ports")
    log = site.files / "agent.log"
    with open(log, "wb") as out:
        agent = site.popen(["sh", str(AGENT)], ns=site.machines[mac], stdout=out, stderr=subprocess.STDOUT,
                           env=dict(os.environ, NIXIE_CMDLINE=str(installer / "cmdline"), NIXIE_SSH_DIR=str(installer / "ssh"),
                                    NIXIE_MAX_DELAY="2", NIXIE_NET_WAIT="0", NIXIE_HTTP_TIMEOUT="3"))
    wait_until(lambda: log.read_text(errors="replace").count(" to reach ") >= 2 or agent.poll() is not None,
               "the agent did not try while the server was down", timeout=30)
    assert agent.poll() is None, "the agent gave up while the server was down:\n" + log.read_text(errors="replace")
    failed_tries = log.read_text(errors="replace").count(" to reach ")
    site.server = start_server(site)
    restarted = site.server["ready"]
    assert agent.wait(timeout=30) == 0, log.read_text(errors="replace")
    accepted_after = time.monotonic() - restarted
    code, answer = api(site, "GET", "/hosts/" + mac)
    assert code == 200 and answer["host"]["state"] == "phoned_home", answer
    assert answer["host"]["address"] == MACHINE_IPS["node2"]
    text = log.read_text(errors="replace")
    assert "phoned home" in text, text
    record("faults.agent_restart", TEST + "test_the_agent_retries_while_the_server_restarts_and_succeeds_after",
           "server SIGKILLed; the agent failed %d attempts, the restarted server kept the host's token, phone-home "
           "accepted %.1f s after it was up" % (failed_tries, accepted_after),
           failed_attempts=failed_tries, seconds_after_restart=round(accepted_after, 2))


# -- lifecycle: after the run, nothing is left ------------------------------------------------------

def test_after_the_run_nothing_is_left_and_tokens_were_never_shown(site):
    tokens = list(state_record(site)["tokens"].values())
    pid = site.server["pid"]
    result = stop_server(site)
    assert result["stop_reason"] == "state=stopped", result
    # Nothing was imported after the switch to nobody (it may not read Python's own files: pyenv in /root).
    assert "after it switched" not in result["_output"], result["_output"][-3000:]
    assert "keep their tokens" in result.get("recovered", ""), result
    wait_until(lambda: not os.path.exists("/proc/%d" % pid), "the server process outlived its stop", timeout=10)
    assert not os.path.exists("/proc/%d" % site.server["server_pid"]), "the serving child outlived its parent"
    wait_until(lambda: bound_ports(site) == set(), "ports still bound after the stop", timeout=5)
    assert state_record(site) is None
    # No token anywhere Ansible shows or keeps: the job's result, the ad-hoc output, the async directory.
    shown = json.dumps(result) + result.get("_output", "")
    for path in Path(site.env["ANSIBLE_ASYNC_DIR"]).rglob("*"):
        if path.is_file():
            shown += path.read_text(errors="replace")
    for token in tokens:
        assert token not in shown, "a host token appears in Ansible's output"
    # The next run starts cleanly on the same run directory.
    again = ansible(site, "nixie.metal.pxe_server", server_args(site, idle_timeout=1))
    assert not again["failed"] and again["stop_reason"].startswith("idle_timeout"), again
    assert "recovered" not in again
    assert bound_ports(site) == set()
    record("lifecycle.stop_clean", TEST + "test_after_the_run_nothing_is_left_and_tokens_were_never_shown",
           "after state=stopped: no process, no bound port, no state file, no token in Ansible's output; the next run starts cleanly",
           tokens_checked=len(tokens))
