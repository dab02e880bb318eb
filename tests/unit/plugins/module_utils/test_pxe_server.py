# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile

import pytest

from ansible_collections.nixie.metal.plugins.module_utils import _pxe_server
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import runtime
from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host
from ansible_collections.nixie.metal.plugins.module_utils._pxe_server import ControlError, choose_address, hosts_summary, plan


def link(name, *addresses, up=True, loopback=False):
    flags = (["UP"] if up else []) + (["LOOPBACK"] if loopback else [])
    return {"ifname": name, "flags": flags, "addr_info": [{"family": "inet", "local": a, "prefixlen": 24} for a in addresses]}


LO = link("lo", "127.0.0.1", loopback=True)


def test_the_one_usable_interface_is_chosen():
    assert choose_address([LO, link("eth0", "192.0.2.10")]) == ("eth0", "192.0.2.10")


def test_down_interfaces_do_not_count():
    assert choose_address([LO, link("eth0", "192.0.2.10"), link("eth1", "198.51.100.1", up=False)]) == ("eth0", "192.0.2.10")


def test_several_interfaces_are_ambiguous_and_listed():
    with pytest.raises(ControlError, match="several interfaces could serve \\(eth0 192.0.2.10, br0 10.0.0.1\\); set interface"):
        choose_address([LO, link("eth0", "192.0.2.10"), link("br0", "10.0.0.1")])


def test_none_usable():
    with pytest.raises(ControlError, match="no interface that is up has an IPv4 address"):
        choose_address([LO])


def test_interface_and_address_select():
    links = [LO, link("eth0", "192.0.2.10", "192.0.2.11"), link("br0", "10.0.0.1")]
    assert choose_address(links, interface="br0") == ("br0", "10.0.0.1")
    assert choose_address(links, address="192.0.2.11") == ("eth0", "192.0.2.11")
    with pytest.raises(ControlError, match="address 10.0.0.1 is not configured on eth0"):
        choose_address(links, interface="eth0", address="10.0.0.1")
    with pytest.raises(ControlError, match="interface 'wlan0' has no IPv4 address \\(interfaces with one: br0, eth0, lo\\)"):
        choose_address(links, interface="wlan0")


@pytest.fixture
def site():
    # Not pytest's tmp_path: /tmp/pytest-of-root is root's only, and the server reads its files as nobody once bound.
    top = pathlib.Path(tempfile.mkdtemp(prefix="nixie-test-pxe-server-"))
    top.chmod(0o755)
    for name in ("bzImage", "initrd", "Image", "initrd-arm"):
        (top / name).write_bytes(b"x")
    ipxe = top / "ipxe"
    ipxe.mkdir(mode=0o755)
    (ipxe / "ipxe.efi").write_bytes(b"efi")
    (ipxe / "undionly.kpxe").write_bytes(b"bios")
    (top / "hosts.json").write_text(json.dumps({
        "node1": {"mac_address": "52:54:00:12:34:01"},
        "arm1": {"mac_address": "52:54:00:12:34:02", "arch": "aarch64-linux"},
    }), encoding="utf-8")
    yield top
    shutil.rmtree(top)


def params(site, **extra):
    values = {"hosts_file": str(site / "hosts.json"), "kernel": str(site / "bzImage"), "initrd": str(site / "initrd"),
              "artifacts": {"aarch64-linux": {"kernel": str(site / "Image"), "initrd": str(site / "initrd-arm")}},
              "ipxe_dir": str(site / "ipxe"), "cmdline": "loglevel=4"}
    values.update(extra)
    return values


LINKS = [LO, link("eth0", "192.0.2.10")]


def test_plan_gathers_a_complete_run(site):
    options = plan(params(site), links=LINKS)
    assert options.server_ip == "192.0.2.10" and options.interface == "eth0"
    assert options.api_url == "http://192.0.2.10:8080/api/v1"
    assert [(h.name, h.arch) for h in options.hosts] == [("arm1", "aarch64-linux"), ("node1", "x86_64-linux")]
    assert options.artifacts["x86_64-linux"] == {"kernel": str(site / "bzImage"), "initrd": str(site / "initrd")}
    assert sorted(options.ipxe_files) == ["ipxe.efi", "undionly.kpxe"]
    assert options.admin_token and options.run_id


def test_plan_from_a_host_list(site):
    options = plan(params(site, hosts_file=None, artifacts=None,
                          hosts=[{"name": "web1", "mac": "BC-24-11-D0-28-34", "arch": "x86_64-linux"}]), links=LINKS)
    assert options.hosts == (Host("web1", "bc:24:11:d0:28:34"),)
    # What the module returns of them in check mode.
    assert hosts_summary(options.hosts) == [{"name": "web1", "mac": "bc:24:11:d0:28:34", "arch": "x86_64-linux"}]


@pytest.mark.parametrize("extra, message", [
    ({"artifacts": None}, "no kernel and initrd for aarch64-linux \\(hosts arm1\\)"),
    ({"kernel": "/nonexistent"}, "kernel /nonexistent does not exist"),
    ({"initrd": None}, "kernel and initrd go together"),
    ({"ipxe_dir": "/nonexistent"}, "iPXE directory /nonexistent does not exist"),
    ({"hosts_file": None}, "no hosts to serve"),
    ({"hosts": [{"name": "a", "mac": "zz"}]}, "give hosts_file or hosts, not both"),
    ({"cmdline": "a\nb"}, "cmdline: "),
    ({"cmdline": "nixie.token=stolen"}, "cmdline: "),
    ({"artifacts": {"aarch64-linux": {"kernel": "/etc/hostname", "initrd": "/etc/hostname", "cmdline": "a\nb"}}},
     "artifacts.aarch64-linux.cmdline: "),
    ({"address": "not-an-ip"}, "address 'not-an-ip' is not an IPv4 address"),
    ({"max_duration": 0}, "max_duration must be a positive number"),
    ({"linger": -1}, "linger must be zero or a positive number"),
    ({"http_port": 0}, "http_port must be a TCP port, 1 to 65535, got 0"),
    ({"http_port": 70000}, "http_port must be a TCP port, 1 to 65535, got 70000"),
])
def test_plan_refuses_bad_input(site, extra, message):
    with pytest.raises(ControlError, match=message):
        plan(params(site, **extra), links=LINKS)


def test_what_plan_is_not_given_keeps_the_servers_own_default(site):
    planned = plan(params(site), links=LINKS)
    assert (planned.http_port, planned.max_duration, planned.idle_timeout, planned.linger) == (8080, 3600.0, 900.0, 30.0)
    given = plan(params(site, http_port=8081, max_duration=60, idle_timeout=5, linger=0), links=LINKS)
    assert (given.http_port, given.max_duration, given.idle_timeout, given.linger) == (8081, 60, 5, 0)


def test_plan_switches_to_nobody_unless_told_otherwise(site):
    assert plan(params(site), links=LINKS).user == "nobody"
    assert plan(params(site, user="root"), links=LINKS).user == "root"


def test_plan_names_a_missing_account():
    with pytest.raises(ControlError, match="user: there is no account 'nixie-no-such-user' on this machine"):
        _pxe_server.check_switch(_pxe_server._account("nixie-no-such-user"), [])


def test_plan_refuses_a_file_the_account_cannot_read_and_names_it(site):
    assert os.geteuid() == 0, "checking files as another user needs root (CI runs the unit tests as root)"
    (site / "initrd").chmod(0o600)
    with pytest.raises(ControlError, match="user: the server serves as nobody once bound, and nobody cannot read %s "
                       "\\(Permission denied\\); put the files where every user may read them \\(the Nix store is\\), "
                       "or set user to root" % (site / "initrd")):
        plan(params(site), links=LINKS)
    # A directory on the way counts too; root reads everything.
    (site / "initrd").chmod(0o644)
    (site / "ipxe").chmod(0o700)
    with pytest.raises(ControlError, match="nobody cannot read %s/ipxe/ipxe.efi \\(Permission denied\\), %s/ipxe/undionly.kpxe" % (site, site)):
        plan(params(site), links=LINKS)
    assert plan(params(site, user="root"), links=LINKS).user == "root"


def test_plan_reports_a_bad_host_list_entry(site):
    with pytest.raises(ControlError, match="hosts: host 'web1', field 'mac_address': 'zz' is not a MAC address"):
        plan(params(site, hosts_file=None, hosts=[{"name": "web1", "mac": "zz"}]), links=LINKS)


def test_claim_refuses_a_live_server_and_cleans_a_stale_one(tmp_path):
    run_dir = str(tmp_path)
    assert _pxe_server.claim(run_dir) is None
    runtime.write_state(run_dir, {"api_url": "http://192.0.2.1:8080/api/v1", "started": 0})
    with pytest.raises(ControlError, match="already running \\(pid %d, serving http://192.0.2.1:8080/api/v1" % os.getpid()):
        _pxe_server.claim(run_dir)
    record = runtime.read_state(run_dir)
    record["start_time"] -= 1  # the writer is gone and its PID was reused
    with open(os.path.join(run_dir, runtime.STATE_FILE_NAME), "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    assert "ended without cleaning up" in _pxe_server.claim(run_dir)
    assert runtime.read_state(run_dir) is None


def test_stop_without_a_server_changes_nothing(tmp_path):
    assert _pxe_server.stop(str(tmp_path)) is False


def test_a_serving_child_that_cannot_bind_says_why_through_its_parent_and_leaves_nothing(site, tmp_path):
    options = plan(params(site, interface="nixie-none0", address="192.0.2.10"),
                   links=[LO, link("nixie-none0", "192.0.2.10")])
    run_dir = str(tmp_path / "run")
    # The child binds (here: to an interface that does not exist) and reports the error over its pipe.
    with pytest.raises(ControlError, match="interface not found while binding UDP/67 \\(proxyDHCP\\)"):
        _pxe_server.run(options, run_dir)
    assert runtime.read_state(run_dir) is None
    with pytest.raises(ChildProcessError):  # the child was reaped: no zombie, nothing left running
        os.waitpid(-1, os.WNOHANG)
