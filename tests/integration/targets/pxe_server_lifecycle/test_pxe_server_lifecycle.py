# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pxe_server's lifecycle as a playbook author meets it, run through ansible in a private namespace."""

from __future__ import annotations

import json
import os
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

from nixielab.net import IPV6_PREFIX, Lab  # noqa: E402  pylint: disable=wrong-import-position
from nixielab.probes import SERVER_PORTS, bound_ports, wait_until  # noqa: E402  pylint: disable=wrong-import-position,import-error

sys.path.insert(0, str(COLLECTION / "tests" / "reliability"))
from record import record  # noqa: E402  pylint: disable=wrong-import-position,import-error

TEST = "tests/integration/targets/pxe_server_lifecycle/test_pxe_server_lifecycle.py::"


@pytest.fixture
def lab():
    # Not pytest's tmp_path (under /tmp/pytest-of-root, root's only): the server reads the kernel and initrd as nobody.
    files = Path(tempfile.mkdtemp(prefix="nixie-pxe-lifecycle-"))
    files.chmod(0o755)
    try:
        with Lab(site_dhcp=False) as made:
            (files / "kernel").write_bytes(b"kernel")
            (files / "initrd").write_bytes(b"initrd")
            (files / "hosts.json").write_text('{"node1": {"mac_address": "52:54:00:12:34:01"}}', encoding="utf-8")
            made.files = files
            made.run_dir = str(files / "run")
            yield made
            assert bound_ports(made) == set(), "a server port is still bound after the test"
    finally:
        shutil.rmtree(files)


def server_args(lab, **extra):
    args = {"hosts_file": str(lab.files / "hosts.json"), "kernel": str(lab.files / "kernel"),
            "initrd": str(lab.files / "initrd"), "interface": lab.bridge, "run_dir": lab.run_dir}
    args.update(extra)
    return args


def ansible(lab, module, args, *options, check=True):
    """Run one ad-hoc task inside the lab namespace; return its result dict."""
    command = ["ansible", "localhost", "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable,
               "-m", module, "-a", json.dumps(args), *options]
    completed = lab.run(command, check=False, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    # The ad-hoc output is "localhost | STATUS => {json}".
    try:
        status, body = completed.stdout.split(" => ", 1)
        result = json.loads(body)
    except ValueError:
        pytest.fail("no JSON result from ansible:\n%s\n%s" % (completed.stdout[-3000:], completed.stderr[-3000:]))
    result["failed"] = "FAILED" in status
    if check:
        assert not result.get("failed"), result.get("msg")
    return result


def start_async(lab, **extra):
    job = ansible(lab, "nixie.metal.pxe_server", server_args(lab, **extra), "-B", "120", "-P", "0")
    wait_until(lambda: state_record(lab) is not None, "the server did not write its state file")
    return job["ansible_job_id"]


def job_result(lab, jid, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = ansible(lab, "ansible.builtin.async_status", {"jid": jid}, check=False)
        if status.get("finished"):
            return status
        time.sleep(0.5)
    pytest.fail("the server job did not finish in %ds" % timeout)


def state_record(lab):
    try:
        return json.loads(Path(lab.run_dir, "pxe_server.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def test_check_mode_binds_nothing(lab):
    result = ansible(lab, "nixie.metal.pxe_server", server_args(lab), "--check")
    assert result["changed"] is False
    # The lab's bridge is dual-stack (fd77::1): the plan also names the IPv6 side it would serve.
    assert result["server"] == {"interface": lab.bridge, "address": lab.controller_ip, "http_port": 8080,
                                "address6": IPV6_PREFIX + "1", "dhcp": "proxy", "dhcp6": "proxy"}
    assert [host["name"] for host in result["hosts"]] == ["node1"]
    assert bound_ports(lab) == set()
    assert state_record(lab) is None


def test_state_stopped_ends_a_running_server_and_a_second_run_is_refused(lab):
    jid = start_async(lab)
    assert bound_ports(lab) == SERVER_PORTS

    first_pid = state_record(lab)["pid"]
    second = ansible(lab, "nixie.metal.pxe_server", server_args(lab), check=False)
    assert second["failed"]
    assert "a nixie.metal PXE server is already running (pid %d" % first_pid in second["msg"]
    assert "state=stopped" in second["msg"]
    # Refused before anything was bound: the first server still serves, and its state is untouched.
    assert state_record(lab)["pid"] == first_pid and bound_ports(lab) == SERVER_PORTS
    record("lifecycle.second_run_refused", TEST + "test_state_stopped_ends_a_running_server_and_a_second_run_is_refused",
           "refused before binding: \"%s\"" % second["msg"].split(";")[0])

    stopped = ansible(lab, "nixie.metal.pxe_server", {"state": "stopped", "run_dir": lab.run_dir})
    assert stopped["changed"] is True
    result = job_result(lab, jid)
    assert result["stop_reason"] == "state=stopped"
    assert result["hosts"][0]["state"] == "known"
    assert "token" not in json.dumps(result).lower().replace("token_", "")
    assert state_record(lab) is None

    again = ansible(lab, "nixie.metal.pxe_server", {"state": "stopped", "run_dir": lab.run_dir})
    assert again["changed"] is False


def test_sigterm_returns_the_timeline(lab):
    jid = start_async(lab)
    os.kill(state_record(lab)["pid"], signal.SIGTERM)
    result = job_result(lab, jid)
    assert result["stop_reason"] == "signal SIGTERM"
    assert state_record(lab) is None


def test_sigkill_leaves_a_stale_state_that_the_next_run_recovers_from(lab):
    start_async(lab)
    stale = state_record(lab)
    killed = time.monotonic()
    os.kill(stale["pid"], signal.SIGKILL)  # what Ansible's async timeout does
    wait_until(lambda: bound_ports(lab) == set(), "the kernel did not release the ports")
    released = time.monotonic() - killed
    assert state_record(lab) is not None
    result = ansible(lab, "nixie.metal.pxe_server", server_args(lab, idle_timeout=1))
    assert "removed the state of an earlier server (pid %d)" % stale["pid"] in result["recovered"]
    assert result["stop_reason"].startswith("idle_timeout")
    assert bound_ports(lab) == set() and state_record(lab) is None
    record("lifecycle.sigkill", TEST + "test_sigkill_leaves_a_stale_state_that_the_next_run_recovers_from",
           "SIGKILL: ports free %.1f s later; the next run said \"%s\" and served" % (released, result["recovered"]),
           seconds_to_release=round(released, 2))


def test_a_taken_port_names_its_holder_and_leaves_nothing_bound(lab):
    holder = lab.popen([sys.executable, "-c", "import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                        "s.bind(('0.0.0.0', 69)); print('bound', flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"bound"
    result = ansible(lab, "nixie.metal.pxe_server", server_args(lab), check=False)
    assert result["failed"]
    assert "UDP/69 (TFTP) is already in use by python" in result["msg"], result["msg"]
    assert "(pid %d)" % holder.pid in result["msg"] or "pid" in result["msg"]
    holder.kill()
    holder.wait()
    assert state_record(lab) is None


@pytest.mark.parametrize("args, message", [
    ({"kernel": "/nonexistent/bzImage"}, "kernel /nonexistent/bzImage does not exist"),
    ({"hosts_file": "/nonexistent/hosts.json"}, "/nonexistent/hosts.json: no such file"),
    ({"interface": "nope0"}, "interface 'nope0' has no IPv4 address"),
    ({"address": "10.99.0.1"}, "address 10.99.0.1 is not configured"),
    ({"ipxe_dir": "/nonexistent"}, "iPXE directory /nonexistent does not exist"),
    ({"cmdline": "quiet\nboot"}, "cmdline"),
    ({"user": "nixie-no-such-user"}, "user: there is no account 'nixie-no-such-user' on this machine"),
])
def test_bad_input_is_a_clear_error_and_binds_nothing(lab, args, message):
    result = ansible(lab, "nixie.metal.pxe_server", server_args(lab, **args), check=False)
    assert result["failed"]
    assert message in result["msg"], result["msg"]
    assert "Traceback" not in json.dumps(result)
    assert state_record(lab) is None


def test_a_kernel_the_server_could_not_read_once_switched_is_refused_before_binding(lab):
    (lab.files / "kernel").chmod(0o600)
    result = ansible(lab, "nixie.metal.pxe_server", server_args(lab), check=False)
    assert result["failed"]
    assert ("user: the server serves as nobody once bound, and nobody cannot read %s (Permission denied); put the files "
            "where every user may read them (the Nix store is), or set user to root" % (lab.files / "kernel")) in result["msg"], result["msg"]
    assert bound_ports(lab) == set() and state_record(lab) is None
    # user=root is the way out: root reads it (and still gives up every capability).
    served = ansible(lab, "nixie.metal.pxe_server", server_args(lab, user="root", idle_timeout=1))
    assert not served["failed"] and served["stop_reason"].startswith("idle_timeout"), served


def test_the_api_port_is_reachable_while_serving(lab):
    jid = start_async(lab)
    health = lab.run(["curl", "-sf", "http://%s:8080/api/v1/health" % lab.controller_ip]).stdout
    assert json.loads(health)["ok"] is True
    ansible(lab, "nixie.metal.pxe_server", {"state": "stopped", "run_dir": lab.run_dir})
    job_result(lab, jid)


def test_the_server_ends_with_the_run_that_owns_it(lab):
    # Stands in for ansible-playbook: an interrupted run must not leave the server serving.
    owner = subprocess.Popen(["sleep", "120"])
    try:
        jid = start_async(lab, owner_pid=owner.pid)
        owner.kill()
        owner.wait()
        result = job_result(lab, jid)
        assert result["stop_reason"] == "the ansible-playbook run that started the server (pid %d) ended" % owner.pid
    finally:
        owner.kill()
    assert state_record(lab) is None


def test_an_owner_that_is_gone_is_refused(lab):
    result = ansible(lab, "nixie.metal.pxe_server", server_args(lab, owner_pid=2 ** 22 + 1), check=False)
    assert result["failed"] and "owner_pid %d is not a running process" % (2 ** 22 + 1) in result["msg"]
