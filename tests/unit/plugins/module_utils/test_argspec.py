# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared argument specs against the doc fragments that document them, and the modules that use both."""

from __future__ import annotations

import ast
import pathlib

import pytest
import yaml

from ansible_collections.nixie.metal.plugins.doc_fragments import _attributes, _netboot_server, _nix
from ansible_collections.nixie.metal.plugins.module_utils import _argspec, _pxe_server

MODULES = pathlib.Path(__file__).resolve().parents[4] / "plugins" / "modules"

# Each shared spec and the fragment text that documents it.
PAIRS = [
    ("nix_call", _argspec.nix_call, _nix.ModuleDocFragment.DOCUMENTATION),
    ("flake_inputs", _argspec.flake_inputs, _nix.ModuleDocFragment.FLAKE_INPUTS),
    ("netboot_server", _argspec.netboot_server, _netboot_server.ModuleDocFragment.DOCUMENTATION),
]


def documentation_of(path):
    """The DOCUMENTATION of a module file, read without importing it."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and [target.id for target in node.targets] == ["DOCUMENTATION"]:
            return yaml.safe_load(node.value.value)
    raise AssertionError("%s has no DOCUMENTATION" % path)


@pytest.mark.parametrize("name, spec_of, fragment", PAIRS, ids=[pair[0] for pair in PAIRS])
def test_spec_matches_its_fragment(name, spec_of, fragment):
    documented = yaml.safe_load(fragment)["options"]
    spec = spec_of()
    assert sorted(documented) == sorted(spec), name
    for option, doc in documented.items():
        for key in ("type", "elements", "default", "choices", "required"):
            assert doc.get(key) == spec[option].get(key), (name, option, key)
        assert doc["description"], (name, option)


@pytest.mark.parametrize("spec_of", [pair[1] for pair in PAIRS], ids=[pair[0] for pair in PAIRS])
def test_every_call_gives_new_defaults(spec_of):
    """A module that changes its spec, or AnsibleModule that fills a {} default, touches no other module's."""
    first, second = spec_of(), spec_of()
    for option, spec in first.items():
        assert spec is not second[option], option
        if isinstance(spec.get("default"), (dict, list)):
            assert spec["default"] is not second[option]["default"], option


def test_dhcp6_default_is_what_the_server_plans_without_one():
    """preflight once had no default for dhcp6; the shared one must plan exactly as no value did."""
    links = [{"ifname": "lo", "flags": ["UP", "LOOPBACK"], "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
             {"ifname": "eth0", "flags": ["UP"], "addr_info": [
                 {"family": "inet", "local": "192.0.2.1", "prefixlen": 24, "scope": "global"},
                 {"family": "inet6", "local": "fd00:1::1", "prefixlen": 64, "scope": "global"}]}]
    default = _argspec.netboot_server()["dhcp6"]["default"]
    assert _pxe_server.choose_addresses(links, {"dhcp6": default}) == _pxe_server.choose_addresses(links, {"dhcp6": None})
    for mode in _argspec.netboot_server()["dhcp6"]["choices"]:
        _pxe_server.choose_addresses(links, {"dhcp6": mode})
    with pytest.raises(_pxe_server.ControlError, match="dhcp6 must be"):
        _pxe_server.choose_addresses(links, {"dhcp6": "relay"})


def test_every_module_takes_the_attributes_from_the_fragment():
    shared = yaml.safe_load(_attributes.ModuleDocFragment.DOCUMENTATION)["attributes"]
    modules = sorted(MODULES.glob("*.py"))
    assert len(modules) >= 9
    for path in modules:
        doc = documentation_of(path)
        fragments = doc.get("extends_documentation_fragment", [])
        assert "nixie.metal._attributes" in fragments, path.name
        assert not any(name.startswith("ansible.builtin.action_common_attributes") for name in fragments), path.name
        # What the fragment says is not said again; a module only adds details or differs.
        for attribute, own in (doc.get("attributes") or {}).items():
            assert "description" not in own, (path.name, attribute)
            for key, value in own.items():
                assert shared.get(attribute, {}).get(key) != value, (path.name, attribute, key)


def test_action_group_fragment_matches_the_runtime_group():
    runtime = yaml.safe_load((MODULES.parents[1] / "meta" / "runtime.yml").read_text(encoding="utf-8"))
    members = set(runtime["action_groups"]["nixie"])
    fragment = yaml.safe_load(_attributes.ModuleDocFragment.ACTION_GROUP)["attributes"]["action_group"]
    assert fragment["membership"] == ["nixie.metal.nixie"]
    extending = {path.stem for path in MODULES.glob("*.py")
                 if "nixie.metal._attributes.action_group" in documentation_of(path).get("extends_documentation_fragment", [])}
    assert extending == members
