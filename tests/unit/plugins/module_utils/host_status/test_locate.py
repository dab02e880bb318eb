# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding the machine again after its reboot (plugins/module_utils/_host_status/locate.py): the judgement of
one address and the rounds, on made-up answers and a clock the test turns; the SSH banner check on real
loopback sockets. The whole thing against real dnsmasq, sshd and ARP runs in role_nixos_anywhere."""

from __future__ import annotations

import socket
import threading

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._host_status import common, locate, status
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.host_status.samples import MAC, SYSTEM

OTHER_MAC = "52:54:00:99:99:99"
INSTALLED = {"outcome": "ok", "os_id": "nixos", "current_system": SYSTEM, "stderr": ""}


class Segment:
    """What the addresses on the segment answer, turn by turn: banners, neighbour table, SSH probes."""

    def __init__(self, banners=None, owners=None, probes=None):
        self.banners = dict(banners or {})
        self.owners = dict(owners or {})
        self.probes = dict(probes or {})
        self.looked = []

    def banner(self, ip, port):
        self.looked.append(ip)
        return self.banners.get(ip, "unreachable")

    def owner(self, ip):
        return self.owners.get(ip)

    def probe(self, ip):
        found = self.probes.get(ip, INSTALLED)
        if isinstance(found, Exception):
            raise found
        return found

    def look_at(self, ip, source):
        return locate.look(ip, source, MAC, 22, self.banner, self.owner, self.probe)


class Clock:
    def __init__(self, per_round=0.0):
        self.now = 100.0
        self.per_round = per_round
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds + self.per_round


# --- one address --------------------------------------------------------------------------


def test_the_last_address_answering_as_the_machine_is_taken():
    seen = Segment(banners={"10.0.0.5": "ssh"}, owners={"10.0.0.5": MAC}).look_at("10.0.0.5", "last_address")
    assert seen.answered and seen.probe == INSTALLED


@pytest.mark.parametrize("segment, note", [
    (Segment(), "10.0.0.5: no answer"),
    (Segment(banners={"10.0.0.5": "closed"}), "10.0.0.5: SSH port 22 closed"),
    (Segment(banners={"10.0.0.5": "not_ssh"}), "10.0.0.5: port 22 answers, but not with SSH"),
    (Segment(banners={"10.0.0.5": "ssh"}, owners={"10.0.0.5": OTHER_MAC}), "10.0.0.5 is held by another machine (MAC %s)" % OTHER_MAC),
    (Segment(banners={"10.0.0.5": "ssh"}, probes={"10.0.0.5": common.HostKeyMismatch("key")}),
     "10.0.0.5 shows a host key none of known_host_keys: another machine holds it"),
    (Segment(banners={"10.0.0.5": "ssh"}, probes={"10.0.0.5": dict(INSTALLED, outcome="closed")}), "10.0.0.5: SSH closed"),
])
def test_the_last_address_is_passed_over_when_it_is_not_the_machine(segment, note):
    seen = segment.look_at("10.0.0.5", "last_address")
    assert not seen.answered and seen.note == note


def test_with_known_host_keys_the_key_decides_alone():
    # Behind proxy ARP every neighbour entry holds the router's MAC: the pinned key still says it is the machine.
    segment = Segment(banners={"10.0.0.5": "ssh"}, owners={"10.0.0.5": OTHER_MAC})
    seen = locate.look("10.0.0.5", "last_address", MAC, 22, segment.banner, segment.owner, segment.probe, pinned=True)
    assert seen.answered
    segment.probes["10.0.0.5"] = common.HostKeyMismatch("key")
    seen = locate.look("10.0.0.5", "last_address", MAC, 22, segment.banner, segment.owner, segment.probe, pinned=True)
    assert not seen.answered and "shows a host key none of known_host_keys" in seen.note


def test_another_machine_at_the_last_address_is_not_even_connected_to():
    segment = Segment(banners={"10.0.0.5": "ssh"}, owners={"10.0.0.5": OTHER_MAC})
    segment.look_at("10.0.0.5", "last_address")
    assert segment.looked == []


def test_a_host_key_mismatch_where_the_mac_was_found_is_an_error():
    segment = Segment(banners={"10.0.0.9": "ssh"}, owners={"10.0.0.9": OTHER_MAC},
                      probes={"10.0.0.9": common.HostKeyMismatch("the SSH host key of 10.0.0.9 is none of known_host_keys")})
    with pytest.raises(common.HostKeyMismatch):
        segment.look_at("10.0.0.9", "arp")


# --- rounds ---------------------------------------------------------------------------------


def test_the_installed_system_is_found_at_its_new_address():
    segment = Segment()
    rounds = []

    def discover(skip):
        rounds.append(list(skip))
        if len(rounds) >= 3:  # the machine's new lease, after two rounds of booting
            segment.banners["10.0.0.9"] = "ssh"
            return "10.0.0.9", "arp"
        return None, None

    clock = Clock()
    found = locate.locate(MAC, 22, 900, None, "10.0.0.5", discover, segment.look_at, clock=clock, sleep=clock.sleep)
    assert (found.ip, found.source, found.probe, found.rounds) == ("10.0.0.9", "arp", INSTALLED, 3)
    assert rounds == [["10.0.0.5"]] * 3  # the silent last address never stands in for the sweep
    assert segment.looked == ["10.0.0.5", "10.0.0.5", "10.0.0.5", "10.0.0.9"]
    assert clock.slept == [locate.ROUND_PAUSE] * 2


def test_the_last_address_still_answering_needs_no_search():
    def discover(skip):
        raise AssertionError("no search when the last address answers")

    segment = Segment(banners={"10.0.0.5": "ssh"}, owners={"10.0.0.5": MAC})
    found = locate.locate(MAC, 22, 900, None, "10.0.0.5", discover, segment.look_at, clock=Clock(), sleep=None)
    assert (found.ip, found.source, found.rounds, found.waited) == ("10.0.0.5", "last_address", 1, 0.0)


def test_a_machine_that_never_comes_back_is_given_up_after_the_wait():
    clock = Clock(per_round=2.0)
    found = locate.locate(MAC, 22, 10, None, "10.0.0.5", lambda skip: (None, None), Segment().look_at,
                          clock=clock, sleep=clock.sleep)
    # Rounds at 0, 3, 6, 9 s and one more at 12 s: the wait is over only once a round ends past it.
    assert found.ip is None and found.waited == 12.0 and found.rounds == 5
    reason = locate.absent_reason(MAC, found, 10)
    assert reason == "%s not found within 10 s (5 rounds): 10.0.0.5: no answer; %s: no address found for it (neighbour table, ARP sweep)" % (
        MAC, MAC)


def test_an_address_found_silent_is_swept_past_in_the_next_rounds():
    # The neighbour table still calls the address the machine had before confirmed; the machine is elsewhere by now.
    segment = Segment(banners={"10.0.0.11": "ssh"})
    skips = []

    def discover(skip):
        skips.append(list(skip))
        return ("10.0.0.11", "arp") if "10.0.0.9" in skip else ("10.0.0.9", "neighbour")

    clock = Clock()
    found = locate.locate(MAC, 22, 60, None, "10.0.0.5", discover, segment.look_at, clock=clock, sleep=clock.sleep)
    assert (found.ip, found.source, found.rounds) == ("10.0.0.11", "arp", 2)
    assert skips == [["10.0.0.5"], ["10.0.0.5", "10.0.0.9"]]


def test_an_address_found_silent_is_looked_at_again_when_only_it_answers_arp():
    segment = Segment()
    clock = Clock()
    found = locate.locate(MAC, 22, 2, None, "10.0.0.5", lambda skip: ("10.0.0.9", "arp"), segment.look_at,
                          clock=clock, sleep=clock.sleep)
    assert segment.looked.count("10.0.0.9") == found.rounds == 3 and found.ip == "10.0.0.9"


def test_the_machine_found_without_ssh_is_what_is_reported():
    segment = Segment(banners={"10.0.0.9": "closed"})
    clock = Clock()
    found = locate.locate(MAC, 22, 3, None, "10.0.0.5", lambda skip: ("10.0.0.9", "arp"), segment.look_at,
                          clock=clock, sleep=clock.sleep)
    assert (found.ip, found.source) == ("10.0.0.9", "arp")
    assert found.notes == ["10.0.0.5: no answer", "%s found at 10.0.0.9 (arp), SSH port 22 closed" % MAC]


def test_an_address_given_is_the_only_one_looked_at():
    def discover(skip):
        raise AssertionError("no search with an address given")

    segment = Segment()
    clock = Clock()
    found = locate.locate(MAC, 22, 2, "10.0.0.7", None, discover, segment.look_at, clock=clock, sleep=clock.sleep)
    assert (found.ip, found.source) == ("10.0.0.7", "address") and set(segment.looked) == {"10.0.0.7"}


def test_no_search_possible_leaves_the_last_address_watched_with_a_warning():
    def discover(skip):
        raise common.HostStatusError("the ARP sweep needs root (raw sockets)")

    warnings = []
    clock = Clock()
    found = locate.locate(MAC, 22, 2, None, "10.0.0.5", discover, Segment().look_at, warnings=warnings, clock=clock,
                          sleep=clock.sleep)
    assert found.ip is None and found.rounds == 3
    assert warnings == ["%s cannot be looked for by its MAC: the ARP sweep needs root (raw sockets)" % MAC]
    with pytest.raises(common.HostStatusError, match="needs root"):
        locate.locate(MAC, 22, 2, None, None, discover, Segment().look_at, clock=clock, sleep=clock.sleep)


# --- host_status with last_address and wait ------------------------------------------------------


def test_host_status_finds_the_installed_system_by_its_mac():
    segment = Segment(banners={"10.0.0.9": "ssh"})
    probed = []

    def probe(ssh, ip, **kwargs):
        probed.append(ip)
        return INSTALLED

    def discover(mac, skip=(), **kwargs):
        assert list(skip) == ["10.0.0.5"]
        return "10.0.0.9", "arp"

    clock = Clock()
    result = status.host_status(
        dict(mac=MAC, address=None, last_address="10.0.0.5", wait=60, interface=None, subnet=None, arp_timeout=2.0,
             ssh_user="root", ssh_key=None, ssh_port=22, known_host_keys=[], expected_system=SYSTEM, flake=None, attribute=None,
             nix_executable=None, timeout=10, eval_timeout=600, override_inputs={}, agent_flake=None),
        discover=discover, probe=probe, neighbours=lambda interface: [], banner=lambda ip, port, timeout: segment.banner(ip, port),
        read_ssh_version=lambda ssh: "OpenSSH_9.2p1\n", clock=clock, sleep=clock.sleep)
    assert (result["state"], result["ip"], result["address_source"], result["waited"]) == ("installed", "10.0.0.9", "arp", 0.0)
    assert probed == ["10.0.0.9"]


def test_host_status_not_found_in_time_says_what_it_saw():
    clock = Clock(per_round=1.0)
    result = status.host_status(
        dict(mac=MAC, address=None, last_address="10.0.0.5", wait=4, interface=None, subnet=None, arp_timeout=2.0,
             ssh_user="root", ssh_key=None, ssh_port=22, known_host_keys=[], expected_system=SYSTEM, flake=None, attribute=None,
             nix_executable=None, timeout=10, eval_timeout=600, override_inputs={}, agent_flake=None),
        discover=lambda mac, **kwargs: (None, None), probe=None, neighbours=lambda interface: [],
        banner=lambda ip, port, timeout: "unreachable", read_ssh_version=None, clock=clock, sleep=clock.sleep)
    assert result["state"] == "absent" and result["ip"] is None and result["waited"] >= 4
    assert result["reason"].startswith("%s not found within 4 s (3 rounds): 10.0.0.5: no answer; " % MAC)


# --- the SSH banner, on real sockets ---------------------------------------------------------------


def _serve_once(greeting):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer():
        conn, _peer = server.accept()
        with conn:
            conn.sendall(greeting)
        server.close()

    threading.Thread(target=answer, daemon=True).start()
    return server.getsockname()[1]


def test_ssh_banner_on_loopback():
    assert locate.ssh_banner("127.0.0.1", _serve_once(b"SSH-2.0-OpenSSH_9.2p1\r\n"), 2.0) == "ssh"
    assert locate.ssh_banner("127.0.0.1", _serve_once(b"HTTP/1.1 400 Bad Request\r\n"), 2.0) == "not_ssh"
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # bound, then released: nothing listens there
    assert locate.ssh_banner("127.0.0.1", port, 2.0) == "closed"
    assert locate.ssh_banner("name.invalid", 22, 1.0) == "unreachable"
