# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_status's verdict and one run (plugins/module_utils/_host_status/status.py) without network,
SSH or nix: the processes are fakes here. The real thing runs in tests/integration/targets/host_status."""

from __future__ import annotations

import os
import sys

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._host_status import common, status
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.host_status.samples import ED25519, MAC, OTHER, SYSTEM


# --- classification ----------------------------------------------------------


def probe(outcome="ok", os_id=None, current=None, stderr=""):
    return {"outcome": outcome, "os_id": os_id, "current_system": current, "stderr": stderr}


@pytest.mark.parametrize("ip, found, expected, state", [
    (None, None, SYSTEM, "absent"),
    ("10.0.0.5", probe("closed"), SYSTEM, "absent"),
    ("10.0.0.5", probe("unreachable"), SYSTEM, "absent"),
    ("10.0.0.5", probe("auth", stderr="Permission denied (publickey)."), SYSTEM, "unknown_os"),
    ("10.0.0.5", probe("other"), SYSTEM, "unknown_os"),
    ("10.0.0.5", probe("timeout"), SYSTEM, "unknown_os"),
    ("10.0.0.5", probe("garbled"), SYSTEM, "unknown_os"),
    ("10.0.0.5", probe(os_id="nixie-lab-installer"), SYSTEM, "unknown_os"),
    ("10.0.0.5", probe(os_id=None), SYSTEM, "unknown_os"),
    ("10.0.0.5", probe(os_id="debian", current=SYSTEM), SYSTEM, "unknown_os"),
    ("10.0.0.5", probe(os_id="nixos"), SYSTEM, "other_system"),
    ("10.0.0.5", probe(os_id="nixos", current=OTHER), SYSTEM, "other_system"),
    ("10.0.0.5", probe(os_id="nixos", current=SYSTEM), None, "other_system"),
    ("10.0.0.5", probe(os_id="nixos", current=SYSTEM), SYSTEM, "installed"),
    ("10.0.0.5", probe(os_id="nixos", current=SYSTEM), SYSTEM + "/", "installed"),
])
def test_classify(ip, found, expected, state):
    got, reason = status.classify(ip, found, expected)
    assert got == state
    assert reason


def test_classify_reasons_name_the_cause():
    assert "Permission denied" in status.classify("10.0.0.5", probe("auth", stderr="x\nroot@h: Permission denied (publickey).\n"), SYSTEM)[1]
    assert "ID=debian" in status.classify("10.0.0.5", probe(os_id="debian"), SYSTEM)[1]
    assert OTHER in status.classify("10.0.0.5", probe(os_id="nixos", current=OTHER), SYSTEM)[1]


def params(**overrides):
    values = dict(mac="52-54-00-12-34-01", address=None, interface=None, subnet=None, arp_timeout=2.0, ssh_user="root",
                  ssh_key=None, ssh_port=22, known_host_keys=[], expected_system=None, flake="path:/site",
                  attribute="web1", nix_executable=None, timeout=10, eval_timeout=600, override_inputs={},
                  agent_flake=None)
    values.update(overrides)
    return values


def fake_probe(found):
    def probe_fn(ssh, ip, **kwargs):
        probe_fn.calls.append((ip, kwargs))
        return found
    probe_fn.calls = []
    return probe_fn


def test_host_status_installed_evaluates_flake():
    evaluated = []

    def evaluate(flake, attribute, nix=None, timeout=None, override_inputs=None, agent_flake=None, warnings=None):
        evaluated.append((flake, attribute, timeout, override_inputs, agent_flake))
        return SYSTEM

    result = status.host_status(params(override_inputs={"nixpkgs": "path:/m"}, agent_flake="/c"),
                                discover=lambda mac, **kw: ("10.0.0.5", "arp"),
                                probe=fake_probe(probe(os_id="nixos", current=SYSTEM)), evaluate=evaluate)
    assert result["state"] == "installed"
    assert result["mac"] == MAC
    assert result["ip"] == "10.0.0.5" and result["address_source"] == "arp"
    assert result["expected_system"] == SYSTEM and result["current_system"] == SYSTEM
    assert evaluated == [("path:/site", "web1", 600, {"nixpkgs": "path:/m"}, "/c")]


def test_host_status_no_evaluation_when_not_nixos():
    def evaluate(*args, **kwargs):
        raise AssertionError("no evaluation expected")

    result = status.host_status(params(address="10.0.0.7"), discover=None,
                                probe=fake_probe(probe(os_id="debian")), evaluate=evaluate)
    assert result["state"] == "unknown_os"
    assert result["address_source"] == "address"
    assert result["expected_system"] is None
    assert result["os_id"] == "debian"


def test_host_status_absent():
    probe_fn = fake_probe(None)
    result = status.host_status(params(expected_system=SYSTEM, flake=None), discover=lambda mac, **kw: (None, None), probe=probe_fn)
    assert result["state"] == "absent" and result["ip"] is None
    assert MAC in result["reason"]
    assert probe_fn.calls == []


def test_host_status_expected_system_given():
    result = status.host_status(params(address="10.0.0.7", expected_system=SYSTEM + "/", flake=None),
                                probe=fake_probe(probe(os_id="nixos", current=OTHER)))
    assert result["state"] == "other_system"
    assert result["expected_system"] == SYSTEM


def test_host_status_passes_ssh_options(tmp_path):
    key = tmp_path / "id"
    key.write_text("k", encoding="utf-8")
    probe_fn = fake_probe(probe(os_id="nixos", current=SYSTEM))
    status.host_status(params(address="h", expected_system=SYSTEM, flake=None, ssh_user="admin", ssh_port=2222,
                              ssh_key=str(key), known_host_keys=[ED25519], timeout=3), probe=probe_fn,
                       read_ssh_version=lambda ssh: "OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15\n")
    assert probe_fn.calls == [("h", {"user": "admin", "port": 2222, "key": str(key), "known_host_keys": [ED25519], "timeout": 3,
                                     "ssh_version": (9, 2)})]


def test_host_status_unknown_ssh_version_is_said():
    probe_fn = fake_probe(probe(os_id="nixos", current=SYSTEM))
    warnings = []
    result = status.host_status(params(address="h", expected_system=SYSTEM, flake=None), warnings=warnings, probe=probe_fn,
                                read_ssh_version=lambda ssh: "Dropbear v2022.83\n")
    assert result["state"] == "installed"
    assert probe_fn.calls[0][1]["ssh_version"] is None
    assert len(warnings) == 1 and "could not tell the OpenSSH version" in warnings[0] and "Dropbear" in warnings[0]


def test_host_status_reads_no_version_without_an_address():
    def read_ssh_version(ssh):
        raise AssertionError("no ssh without an address")

    result = status.host_status(params(expected_system=SYSTEM, flake=None), discover=lambda mac, **kw: (None, None),
                                probe=fake_probe(None), read_ssh_version=read_ssh_version)
    assert result["state"] == "absent"


@pytest.mark.parametrize("overrides, message", [
    ({"mac": "52:54:00:12:34"}, "not a MAC address"),
    ({"expected_system": "nix/store/x", "flake": None}, "absolute store path"),
    ({"ssh_key": "/nonexistent/key"}, "does not exist"),
    ({"known_host_keys": ["ssh-ed25519"]}, "not an SSH public key"),
    ({"override_inputs": {"nix pkgs": "path:/m"}}, "override_inputs: 'nix pkgs' is not an input name"),
])
def test_host_status_bad_options(overrides, message):
    with pytest.raises(common.HostStatusError, match=message):
        status.host_status(params(**overrides), discover=None, probe=None, evaluate=None)


def test_host_status_error_carries_partial_result():
    def probe_fn(ssh, ip, **kwargs):
        raise common.HostStatusError("key mismatch", ip=ip)

    with pytest.raises(common.HostStatusError) as info:
        status.host_status(params(), discover=lambda mac, **kw: ("10.0.0.5", "neighbour"), probe=probe_fn)
    assert info.value.result["ip"] == "10.0.0.5"
    assert info.value.result["address_source"] == "neighbour"
    assert info.value.result["mac"] == MAC


def test_scapy_is_not_imported_at_module_load():
    """Importing the module_utils must not pull in scapy (0.2-0.4 s, tens of MiB)."""
    code = ("import sys; from ansible_collections.nixie.metal.plugins.module_utils._host_status import address, probe, status; "
            "print(any(m == 'scapy' or m.startswith('scapy.') for m in sys.modules))")
    # <root>/ansible_collections/nixie/metal/plugins/module_utils/_host_status/status.py, not resolved: the
    # collection may be a symlink, and ansible-test loads collections without PYTHONPATH.
    root = os.path.abspath(status.__file__)
    for dummy in range(7):
        root = os.path.dirname(root)
    rc, out, err = common.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=root))
    assert rc == 0, err
    assert out.strip() == "False"
