# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run serve_and_wait.yml (pxe_server + wait_for_agent) inside a lab and read its result.

Shared by the end-to-end targets that need more than netboot_qemu's play:
several architectures (``artifacts``), another iPXE directory, IPv6.
Each run gets its own run_dir inside the lab's work directory, so parallel
servers of other tests never meet this one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLAYBOOK = HERE / "serve_and_wait.yml"
AGENT_TIMEOUT = 180


class PlayFailed(AssertionError):
    """The play did not produce what the test needs; the message carries the log tail."""


def start_play(lab, hosts, artifacts, api_url, *, expect_macs=None, health_url=None, **server_vars):
    """Start the play in the lab namespace; return (process, result path) once the API answers.

    ``hosts``: ``{name: {"mac_address": ..., "arch": ...}}`` (hosts.json);
    ``artifacts``: ``{system: {"kernel", "initrd", "cmdline"}}``; ``api_url``: what
    wait_for_agent polls; ``server_vars``: address, address6, dhcp6, ipxe_dir (optional).
    """
    hosts_file = lab.workdir / "hosts.json"
    hosts_file.write_text(json.dumps(hosts), encoding="utf-8")
    result_file = lab.workdir / "result.json"
    variables = {
        "hosts_file": str(hosts_file),
        "artifacts": {system: {key: str(value) for key, value in files.items()} for system, files in artifacts.items()},
        "interface": lab.bridge,
        "run_dir": str(lab.workdir / "run"),
        "api_url": api_url,
        "expect_macs": expect_macs or [entry["mac_address"] for entry in hosts.values()],
        "agent_timeout": AGENT_TIMEOUT,
        "result_file": str(result_file),
        "ansible_python_interpreter": sys.executable,
    }
    variables.update({key: value for key, value in server_vars.items() if value is not None})
    (lab.workdir / "vars.json").write_text(json.dumps(variables), encoding="utf-8")
    log = open(lab.workdir / "play.log", "wb")  # pylint: disable=consider-using-with
    play = lab.popen(["ansible-playbook", "-i", "localhost,", "-c", "local", "-e", "@%s" % (lab.workdir / "vars.json"),
                      str(PLAYBOOK)], stdout=log, stderr=subprocess.STDOUT)
    wait_for_api(lab, play, health_url or api_url + "/health")
    return play, result_file


def play_log(lab):
    return (lab.workdir / "play.log").read_text(errors="replace")


def wait_for_api(lab, play, url, timeout=60):
    """Return once the server answers its health endpoint (from inside the lab namespace)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if play.poll() is not None:
            raise PlayFailed("the play ended before the server came up:\n" + play_log(lab)[-3000:])
        if lab.run(["curl", "-sf", "-g", "-o", "/dev/null", url], check=False).returncode == 0:
            return
        time.sleep(0.3)
    raise PlayFailed("the server did not answer %s in %ds:\n%s" % (url, timeout, play_log(lab)[-3000:]))


def finish_play(lab, play, result_file, timeout=AGENT_TIMEOUT + 120):
    """Wait for the play; return (result dict, play log)."""
    play.wait(timeout=timeout)
    log = play_log(lab)
    if not result_file.exists():
        raise PlayFailed("the play wrote no result:\n" + log[-4000:])
    return json.loads(result_file.read_text(encoding="utf-8")), log


def agent_result(result, mac):
    """wait_for_agent's answer for one MAC."""
    for item in result["agents"]:
        if item["item"] == mac:
            return item
    raise PlayFailed("no wait_for_agent result for %s" % mac)


def event_names(agent):
    return [event["event"] for event in agent["events"]]


def events_named(agent, name):
    return [event for event in agent["events"] if event["event"] == name]
