# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab installer (tests/lab/nixielab/installer.py, a stand-in for the NixOS netboot image): how its init
chooses between DHCP and a static network, and that its cache key follows what goes into the initramfs.

The choice is run as the initramfs holds it, with busybox sh (the installer's only shell), on kernel
command lines as pxe_server writes them (decide/kernel_network.py) and as an operator might.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._hosts import HostNetwork
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.kernel_network import network_arguments

REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "lab"))

from nixielab import installer  # noqa: E402  pylint: disable=wrong-import-position,import-error

MAC = "52:54:00:12:34:51"
BASE = "console=ttyS0 panic=-1 nixie.api=http://10.77.0.1:8080/api/v1 nixie.token=%s nixie.mac=%s" % ("t" * 32, MAC)


@pytest.fixture(name="tree")
def tree_fixture(tmp_path):
    """The initramfs tree as a build lays it out, from stand-in kernel modules (no .deb needed)."""
    kdir = tmp_path / "kernel"
    (kdir / "modules").mkdir(parents=True)
    for name in installer.BOOT_MODULES:
        (kdir / "modules" / ("%s.ko" % name)).write_bytes(b"\x00depends=\x00")
    root = tmp_path / "root"
    installer._initramfs_tree(root, kdir, None)  # pylint: disable=protected-access
    return root


def in_the_initramfs(tree):
    """The environment of the helper: the initramfs's busybox applets, nothing of this machine's."""
    return {"PATH": "%s:%s" % (tree / "bin", tree / "sbin")}


def network_mode(tree, tmp_path, cmdline):
    (tmp_path / "cmdline").write_text(cmdline + "\n", encoding="utf-8")
    done = subprocess.run([str(tree / "bin" / "sh"), str(tree / "bin" / "nixie-lab-network-mode"), str(tmp_path / "cmdline")],
                          env=in_the_initramfs(tree), capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stderr == "", done
    return done.stdout


def test_the_helper_is_in_the_initramfs_and_the_init_asks_it(tree):
    helper = tree / "bin" / "nixie-lab-network-mode"
    assert helper.read_text(encoding="utf-8") == installer.NETWORK_MODE_SCRIPT
    assert helper.stat().st_mode & 0o111 == 0o111
    init = (tree / "init").read_text(encoding="utf-8")
    assert 'netmode="$(nixie-lab-network-mode)"' in init
    # udhcpc starts only on the branch after the static one
    assert init.index('= static ]; then') < init.index("udhcpc -i")


def test_the_static_network_pxe_server_writes_starts_no_dhcp_client(tree, tmp_path):
    for network in (HostNetwork(address="10.77.0.50/24", interface=MAC, gateway="10.77.0.1", nameservers=("10.77.0.53",)),
                    HostNetwork(address="10.77.0.50/24", interface=MAC),
                    HostNetwork(address="10.78.0.50/24", interface=MAC, vlan=20)):
        arguments = network_arguments(network, "static1")
        (ip_argument,) = [argument for argument in arguments if argument.startswith("ip=")]
        cmdline = "BOOT_IMAGE=/bzImage initrd=initrd %s %s" % (BASE, " ".join(arguments))
        assert network_mode(tree, tmp_path, cmdline) == "static %s\n" % ip_argument[len("ip="):]


@pytest.mark.parametrize("arguments, expected", [
    ("", "dhcp\n"),
    ("ip=dhcp", "dhcp\n"),
    ("ip=on", "dhcp\n"),
    ("ip=10.77.0.50::10.77.0.1:255.255.255.0:n1:eth0:dhcp", "dhcp\n"),
    ("ip=10.77.0.50::10.77.0.1:255.255.255.0:n1:eth0", "dhcp\n"),
    ("ip=10.77.0.50:::255.255.255.0::eth0:off", "static 10.77.0.50:::255.255.255.0::eth0:off\n"),
    ("ip=10.77.0.50:::255.255.255.0::eth0:static", "static 10.77.0.50:::255.255.255.0::eth0:static\n"),
    ("ip=10.77.0.50:::24::eth0:none:10.77.0.53", "static 10.77.0.50:::24::eth0:none:10.77.0.53\n"),
    # the last ip= wins, as for the kernel and nixie-agent
    ("ip=10.77.0.50:::24::eth0:none ip=dhcp", "dhcp\n"),
    ("ip=dhcp ip=10.77.0.50:::24::eth0:none", "static 10.77.0.50:::24::eth0:none\n"),
    # a word that merely holds "ip=" is not the argument
    ("nixie.lab.ip=10.77.0.50:::24::eth0:none", "dhcp\n"),
])
def test_other_command_lines_keep_dhcp_unless_static(tree, tmp_path, arguments, expected):
    assert network_mode(tree, tmp_path, "%s %s" % (BASE, arguments)) == expected


def test_a_glob_on_the_command_line_is_a_word_not_file_names(tree, tmp_path):
    """Unexpanded: were ``*`` read as a pattern, the file named ip=dhcp in the working directory would be the last ip=."""
    (tmp_path / "ip=dhcp").write_text("", encoding="utf-8")
    (tmp_path / "cmdline").write_text("%s ip=10.77.0.50:::24::eth0:none *\n" % BASE, encoding="utf-8")
    done = subprocess.run([str(tree / "bin" / "sh"), str(tree / "bin" / "nixie-lab-network-mode"), "cmdline"],
                          env=in_the_initramfs(tree), cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout == "static 10.77.0.50:::24::eth0:none\n"


def test_the_cache_key_follows_the_init_and_its_helper(tmp_path, monkeypatch):
    deb = tmp_path / "linux-image-6.1.0-99-amd64_6.1.999-1_amd64.deb"
    deb.write_bytes(b"stand-in kernel package")
    key = installer._build_key(deb, None, False)  # pylint: disable=protected-access
    assert installer._build_key(deb, None, False) == key  # pylint: disable=protected-access
    for name in ("INIT_SCRIPT", "NETWORK_MODE_SCRIPT", "UDHCPC_SCRIPT", "POSE_SCRIPT"):
        with monkeypatch.context() as patch:
            patch.setattr(installer, name, getattr(installer, name) + "# changed\n")
            assert installer._build_key(deb, None, False) != key, name  # pylint: disable=protected-access
