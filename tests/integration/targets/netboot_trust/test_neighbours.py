# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""RouteNeighbours against the real kernel, in the server namespace, as nobody (trustlab.py draws the lab).

Each case is a real TCP connection from a namespace on the segment (or
behind the router), looked up by probe.py the moment it is accepted, the way
the server will look up a boot or phone-home request; the answers are also
fed to ``trust.verdict`` so the two halves are seen to fit. The impostor
cases come last: they leave the server's entry of the host's address
pointing at the impostor.
"""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest

from trustlab import (FAR, HOST, HOST_MAC, IMPOSTOR, IMPOSTOR_MAC, NOBODY, PORT, ROUTER, SERVER, wait_until)

from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import trust
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.neighbours import Entry, VALID_STATES

FAMILIES = ("v4", "v6")
NOBODY_UID = 65534
LOOPBACK_INDEX = 1


def connect_and_look(lab, probe, name, destination, source=None):
    """A connection from namespace ``name``, and what the server namespace's lookup said while it was open."""
    probe.send(op="accept", timeout=5)
    try:
        lab.peer(name, "connect", destination, str(PORT), *([source] if source else []))
    finally:
        # Read even when the client failed (the probe then answers its accept's timeout): the next ask stays in step.
        answer = probe.answer()
    return answer


def entry(answer):
    return Entry(**answer["neighbour"]) if answer["neighbour"] else None


def on_link(lab):
    return {"kind": "unicast", "ifindex": lab.ifindex("srv"), "gateway": None}


def test_the_probe_runs_as_nobody_without_capabilities(probe):
    status = probe.ask(op="status")
    assert status["uid"] == [NOBODY_UID] * 4
    assert status["cap_eff"] == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_the_host_connecting_is_seen_with_its_mac(lab, probe, family):
    answer = connect_and_look(lab, probe, "host", SERVER[family])
    # A dual-stack listener sees an IPv4 peer as IPv4-mapped; the entry is of the IPv4 address.
    assert answer["ip"] == ("::ffff:" + HOST["v4"] if family == "v4" else HOST["v6"])
    assert answer["route"] == on_link(lab)
    found = entry(answer)
    assert found.ip == HOST[family] and found.dev == "eth0" and found.mac == HOST_MAC
    assert found.state in VALID_STATES
    assert trust.verdict(answer["ip"], HOST_MAC, found).outcome == trust.MATCH


@pytest.mark.parametrize("family", FAMILIES)
def test_the_impostor_at_its_own_address_is_seen_with_its_own_mac(lab, probe, family):
    answer = connect_and_look(lab, probe, "imp", SERVER[family])
    found = entry(answer)
    assert found.ip == IMPOSTOR[family] and found.mac == IMPOSTOR_MAC and found.state in VALID_STATES
    assert answer["route"] == on_link(lab)
    judged = trust.verdict(answer["ip"], HOST_MAC, found)
    assert (judged.outcome, judged.seen_mac) == (trust.IMPOSTOR, IMPOSTOR_MAC)


def test_a_link_local_peer_is_looked_up_on_its_interface(lab, probe):
    host = lab.link_local("host")
    answer = connect_and_look(lab, probe, "host", lab.link_local("srv") + "%eth0", source=host + "%eth0")
    assert answer["ip"] == "%s%%%d" % (host, lab.ifindex("srv"))
    assert answer["route"] == on_link(lab)
    assert entry(answer).ip == host and entry(answer).mac == HOST_MAC


@pytest.mark.parametrize("family", FAMILIES)
def test_a_routed_client_is_unicast_through_the_gateway_with_no_entry_of_its_own(lab, probe, family):
    answer = connect_and_look(lab, probe, "far", SERVER[family])
    assert answer["ip"].endswith(FAR[family])
    assert answer["route"] == {"kind": "unicast", "ifindex": lab.ifindex("srv"), "gateway": ROUTER[family]}
    assert answer["neighbour"] is None
    # The entry that exists is the router's: the one that proves nothing about the client.
    router = probe.ask(op="neighbour", ip=ROUTER[family], ifindex=lab.ifindex("srv"))["neighbour"]
    assert router["mac"] is not None and router["ip"] == ROUTER[family]


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", SERVER["v4"], SERVER["v6"], "::ffff:127.0.0.1"])
def test_loopback_and_the_servers_own_addresses_are_local(probe, address):
    answer = probe.ask(op="lookup", ip=address)
    assert answer["route"] == {"kind": "local", "ifindex": LOOPBACK_INDEX, "gateway": None}
    assert answer["neighbour"] is None


def test_a_connection_over_loopback_is_local(lab, probe):
    answer = connect_and_look(lab, probe, "srv", "127.0.0.1")
    assert answer["ip"] == "::ffff:127.0.0.1"
    assert answer["route"]["kind"] == "local"


@pytest.mark.parametrize("family", FAMILIES)
def test_an_address_nobody_has_gets_an_entry_without_a_mac_once_resolved(lab, probe, family):
    before = probe.ask(op="lookup", ip=NOBODY[family])
    assert before["route"] == on_link(lab)
    assert before["neighbour"] is None
    assert probe.ask(op="resolve", ip=NOBODY[family]) == {"resolve": None}

    def unresolved():
        found = probe.ask(op="neighbour", ip=NOBODY[family], ifindex=lab.ifindex("srv"))["neighbour"]
        return found if found and found["state"] in ("INCOMPLETE", "FAILED") else None
    found = wait_until(unresolved, 2)
    assert found, "no INCOMPLETE or FAILED entry of %s after resolve()" % NOBODY[family]
    assert found["mac"] is None and found["dev"] == "eth0"
    assert trust.verdict(NOBODY[family], HOST_MAC, Entry(**found)).reason == "unresolved"


@pytest.mark.parametrize("family", FAMILIES)
def test_resolve_makes_the_kernel_learn_a_machine_that_is_there(lab, probe, family):
    # As root, outside the probe: forget the host, so only resolve() can bring its entry back.
    lab.run(["ip", "neigh", "del", HOST[family], "dev", "eth0"], "srv", check=False)
    ifindex = lab.ifindex("srv")
    gone = probe.ask(op="neighbour", ip=HOST[family], ifindex=ifindex)["neighbour"]
    assert gone is None or gone["mac"] is None
    probe.ask(op="resolve", ip=HOST[family])

    def learnt():
        found = probe.ask(op="neighbour", ip=HOST[family], ifindex=ifindex)["neighbour"]
        return found if found and found["mac"] else None
    found = wait_until(learnt, 2)
    assert found and found["mac"] == HOST_MAC and found["state"] == "REACHABLE"


def test_resolve_never_raises(probe):
    for address in ("not an address", "192.0.2.1", "2001:db8::1", "fe80::1%nosuchif", "255.255.255.255", ""):
        assert probe.ask(op="resolve", ip=address) == {"resolve": None}


def test_a_refusal_names_the_request(lab, probe):
    answer = probe.ask(op="neighbour", ip=HOST["v4"], ifindex=9999)
    assert answer["error"] == "NetlinkError" and answer["errno"] == errno.ENODEV
    assert "RTM_GETNEIGH 10.90.0.10 on ifindex 9999: the kernel answered ENODEV" in answer["message"]
    assert probe.ask(op="neighbour", ip="10.90.0", ifindex=2)["error"] == "ValueError"
    assert probe.ask(op="neighbour", ip=HOST["v4"], ifindex=0)["error"] == "ValueError"
    assert probe.ask(op="neighbour", ip=HOST["v4"], ifindex=LOOPBACK_INDEX) == {"neighbour": None}
    assert probe.ask(op="route", ip="192.0.2.1") == {"route": None}
    assert probe.ask(op="ifname", ifindex=lab.ifindex("srv")) == {"ifname": "eth0"}
    assert probe.ask(op="ifname", ifindex=9999) == {"ifname": None}


def test_a_late_answer_to_an_earlier_request_is_skipped(lab, probe):
    answer = probe.ask(op="stale_then_route", ip=FAR["v4"])
    assert answer["route"] == {"kind": "unicast", "ifindex": lab.ifindex("srv"), "gateway": ROUTER["v4"]}
    # The socket is still in step afterwards.
    assert probe.ask(op="route", ip="127.0.0.1")["route"]["kind"] == "local"


def test_a_kernel_that_does_not_answer_is_a_timeout_not_a_hang(probe):
    answer = probe.ask(op="unanswered", timeout=0.2)
    assert answer["error"] == "NetlinkError" and answer["errno"] == errno.ETIMEDOUT
    assert "an unanswered message: no answer from the kernel within 0.2 s" in answer["message"]
    assert 0.2 <= answer["elapsed"] < 2
    assert probe.ask(op="route", ip="::1")["route"]["kind"] == "local"


def test_cost_of_one_lookup(probe, lab):
    """route()+neighbour() of an on-link peer, 10,000 times: tens of microseconds, not a subprocess's milliseconds."""
    figures = probe.ask(op="measure", ip=HOST["v4"], n=10000, wait=120)
    sys.stderr.write("\nnetboot_trust cost of route()+neighbour() in %s, %d calls: median %.1f us, p99 %.1f us, "
                     "max %.1f us (route median %.1f us, neighbour median %.1f us)\n"
                     % (lab.ns("srv"), figures["n"], figures["pair"]["median_us"], figures["pair"]["p99_us"],
                        figures["pair"]["max_us"], figures["route"]["median_us"], figures["neighbour"]["median_us"]))
    # Not a performance claim (bench/ makes those): a guard that the lookup stays a syscall, not a subprocess
    # (`ip neigh get` takes milliseconds). Only the median, 18 times today's, so a loaded machine cannot fail it.
    assert figures["pair"]["median_us"] < 500


def test_lost_notices_make_the_watch_forget_everything(lab, probe):
    """A receive buffer too small for a burst of neighbour changes: the kernel drops notices (ENOBUFS), and the
    watch, which can no longer tell what changed, forgets every entry it kept and asks again."""
    ifindex = lab.ifindex("srv")
    connect_and_look(lab, probe, "host", SERVER["v4"])
    kept = probe.ask(op="watch", ip=HOST["v4"], ifindex=ifindex, buffer=1024)
    assert (kept["kept"], kept["neighbour"]["mac"]) == (1, HOST_MAC)
    burst = "".join("neigh replace 10.90.1.%d lladdr 02:00:00:cc:00:%02x dev eth0 nud permanent\n" % (n, n)
                    for n in range(1, 201))
    try:
        done = subprocess.run(["ip", "netns", "exec", lab.ns("srv"), "ip", "-batch", "-"], input=burst, text=True,
                              capture_output=True, check=False, timeout=30)
        assert done.returncode == 0, done.stderr
        after = probe.ask(op="watch_drain")
        assert after["resyncs"] >= 1 and after["kept"] == 0
    finally:
        lab.run(["ip", "neigh", "flush", "to", "10.90.1.0/24", "dev", "eth0"], "srv", check=False)
    again = probe.ask(op="watch", ip=HOST["v4"], ifindex=ifindex, buffer=1024 * 1024)
    assert again["neighbour"]["mac"] == HOST_MAC


# -- last: the impostor takes the host's address ---------------------------------------


@pytest.mark.parametrize("family, announce", [("v4", "garp"), ("v6", "una")])
def test_an_impostor_claiming_the_hosts_address_is_seen_with_its_own_mac(lab, probe, family, announce):
    ifindex = lab.ifindex("srv")
    assert entry(connect_and_look(lab, probe, "host", SERVER[family])).mac == HOST_MAC
    prefix = HOST[family] + ("/24" if family == "v4" else "/64")
    lab.run(["ip", "addr", "add", prefix, "dev", "eth0", *(["nodad"] if family == "v6" else [])], "imp")
    try:
        lab.peer("imp", announce, "eth0", HOST[family])
        poisoned = wait_until(lambda: (probe.ask(op="neighbour", ip=HOST[family], ifindex=ifindex)["neighbour"]
                                       or {}).get("mac") == IMPOSTOR_MAC, 3)
        assert poisoned, "the server's entry of %s did not take the impostor's MAC" % HOST[family]
        answer = connect_and_look(lab, probe, "imp", SERVER[family], source=HOST[family])
        assert answer["ip"].endswith(HOST[family])
        found = entry(answer)
        assert found.ip == HOST[family] and found.mac == IMPOSTOR_MAC and found.state in VALID_STATES
        judged = trust.verdict(answer["ip"], HOST_MAC, found)
        assert (judged.outcome, judged.seen_mac) == (trust.IMPOSTOR, IMPOSTOR_MAC)
    finally:
        lab.run(["ip", "addr", "del", prefix, "dev", "eth0"], "imp", check=False)
