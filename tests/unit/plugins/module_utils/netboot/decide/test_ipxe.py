# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import re

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._hosts import normalize_mac
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import ipxe

BASE = "http://192.0.2.1:8080"
MAC = "52:54:00:12:34:01"
TOKEN = "Abc_def-0123456789xyz"


def render(**kwargs):
    args = dict(base_url=BASE, mac=MAC, token=TOKEN, extra_cmdline="console=ttyS0,115200 loglevel=4", host_name="node1")
    args.update(kwargs)
    return ipxe.render_script(**args)


def lines_starting(script, word):
    return [line for line in script.splitlines() if line.split()[:1] == [word]]


def test_script_shape():
    script = render()
    lines = script.splitlines()
    assert lines[0] == "#!ipxe"
    assert script.endswith("\n")
    (kernel,) = lines_starting(script, "kernel")
    assert kernel == (
        "kernel http://192.0.2.1:8080/boot/52:54:00:12:34:01/kernel initrd=initrd console=ttyS0,115200 loglevel=4 "
        "nixie.api=http://192.0.2.1:8080/api/v1 nixie.token=Abc_def-0123456789xyz nixie.mac=52:54:00:12:34:01 "
        "|| goto nixie_failed")
    (initrd,) = lines_starting(script, "initrd")
    # nothing but --name and the URL: any further argument makes iPXE wrap the initrd in a cpio archive
    assert initrd.split(" || ")[0].split() == ["initrd", "--name", "initrd", "http://192.0.2.1:8080/boot/52:54:00:12:34:01/initrd"]
    assert lines_starting(script, "boot") == ["boot || goto nixie_failed"]
    # order: network, kernel, initrd, boot, failure path ending in exit
    order = [next(i for i, line in enumerate(lines) if line.startswith(w)) for w in
             (":nixie_net_ok", "kernel", "initrd", "boot", ":nixie_failed", "exit")]
    assert order == sorted(order)
    assert lines[-1] == "exit 1"


def test_dhcp_retries_with_sleeps_and_skip_when_configured():
    script = render(dhcp_delays=(1, 3))
    lines = script.splitlines()
    assert lines[2].startswith("isset ${ip} && goto nixie_net_ok")
    dhcp = [line for line in lines if line.startswith("dhcp")]
    assert dhcp == [
        "dhcp && goto nixie_net_ok || sleep 1",
        "dhcp && goto nixie_net_ok || sleep 3",
        "dhcp && goto nixie_net_ok || goto nixie_failed",
    ]


def test_failure_path_tells_the_operator_and_exits():
    script = render(fail_delay=7)
    tail = script.split(":nixie_failed\n", 1)[1].splitlines()
    assert tail[0].startswith("echo ") and "node1 (52:54:00:12:34:01)" in tail[0]
    assert BASE in tail[1]
    assert tail[2:] == ["sleep 7", "exit 1"]


def test_every_goto_has_a_label():
    script = render()
    labels = set(re.findall(r"^:(\S+)$", script, re.M))
    assert set(re.findall(r"goto (\S+)", script)) <= labels


def test_api_url_override_and_ipv6_base():
    script = render(base_url="http://[fd77::1]:8080/", api_url="http://[fd77::1]:8080/api/v1")
    assert "kernel http://[fd77::1]:8080/boot/52:54:00:12:34:01/kernel" in script
    assert "nixie.api=http://[fd77::1]:8080/api/v1 " in script


def test_mac_is_taken_in_the_one_spelling_only():
    """Another spelling is normalised where it enters (the HTTP path, test_http.py), never here."""
    assert "/boot/52:54:00:12:34:01/kernel" in render(mac=normalize_mac("52-54-00-12-34-01"))
    for not_canonical in ("52-54-00-12-34-01", "5254.0012.3401", "52:54:00:12:34:0A", "nope"):
        with pytest.raises(ValueError, match="not a MAC address"):
            render(mac=not_canonical)


@pytest.mark.parametrize("extra", [
    "console=ttyS0 ${evil}",
    "a=b\nkernel http://evil/",
    "quiet || shell",
    "x=\"y\"",
    "x='y'",
    "back\\slash",
    "# comment",
    "a;b",
    "a&&b",
    ["two words\nline"],
    ["ok", 5],
    ["ok", ""],
    "ünicode=1",
])
def test_unsafe_extra_cmdline_is_refused(extra):
    with pytest.raises(ValueError):
        render(extra_cmdline=extra)


@pytest.mark.parametrize("extra", ["nixie.token=stolen", "nixie.api=http://x/", "nixie.mac=00:11:22:33:44:55", "initrd=other"])
def test_reserved_arguments_are_refused(extra):
    with pytest.raises(ValueError, match="set by the nixie.metal server"):
        render(extra_cmdline=extra)


def test_extra_cmdline_forms():
    assert ipxe.split_cmdline(None) == []
    assert ipxe.split_cmdline("  a=1   b ") == ["a=1", "b"]
    assert ipxe.split_cmdline(["a=1 b", "c"]) == ["a=1", "b", "c"]
    assert ipxe.split_cmdline("init=/nix/store/abc-nixos-system/init root=LABEL=x ip=dhcp") == [
        "init=/nix/store/abc-nixos-system/init", "root=LABEL=x", "ip=dhcp"]


@pytest.mark.parametrize("base", ["ftp://x", "http://x y", "http://x/${a}", "http://x/a?b", "192.0.2.1", None])
def test_bad_base_url(base):
    with pytest.raises(ValueError):
        render(base_url=base)


@pytest.mark.parametrize("token", ["short", "has space in it here", "tok${x}0123456789", None])
def test_bad_token(token):
    with pytest.raises(ValueError):
        render(token=token)


def test_odd_host_name_is_not_echoed():
    script = render(host_name="x ${y}")
    assert "${y}" not in script
    assert "for 52:54:00:12:34:01" in script


def test_no_special_characters_outside_our_own_constructs():
    script = render()
    for line in script.splitlines()[1:]:
        stripped = line.replace("${ip}", "").replace("${errno}", "")
        assert "$" not in stripped and "\\" not in stripped and '"' not in stripped and "'" not in stripped
