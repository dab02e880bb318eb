# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tests/utils/apt_closure.py reads scripts/setup, apt-cache and dpkg output right (no apt run)."""

from __future__ import annotations

import pathlib
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "utils"))

import apt_closure  # noqa: E402  pylint: disable=wrong-import-position,import-error

SETUP = """\
#!/usr/bin/env bash
apt_packages=(
  git python3 curl
  # ps: the provision playbook (procps)
  procps
  qemu-system-x86 qemu-utils  # qemu-img
)

say() { printf 'setup: %s\\n' "$*" >&2; }
"""

# apt-cache depends --recurse --no-recommends ... (trimmed from bookworm's)
DEPENDS = """\
libvirt-daemon-system
  Depends: adduser
 |Depends: iptables
  Depends: firewalld
  Depends: logrotate
 |Depends: debconf
  Depends: <debconf-2.0>
    cdebconf
    debconf
  PreDepends: init-system-helpers
logrotate
 |Depends: cron
 |Depends: anacron
    systemd-cron
 |Depends: <cron-daemon>
    bcron
    cron
  Depends: systemd-sysv
  Depends: libpopt0
polkitd
 |Depends: <default-dbus-system-bus>
    dbus
  Depends: <dbus-system-bus>
    dbus-broker
    dbus
python3
  PreDepends: python3-minimal
  Depends: <python3:any>
    python3
adduser
iptables
  Depends: libip4tc2
firewalld
  Depends: python3-firewall
cron
anacron
debconf
cdebconf
init-system-helpers
libpopt0
libip4tc2
python3-minimal
dbus
dbus-broker
<debconf-2.0>
<python3:any>
"""


def test_setup_packages_are_read_from_the_array():
    assert apt_closure.setup_packages(SETUP) == ["git", "python3", "curl", "procps", "qemu-system-x86", "qemu-utils"]


def test_setup_without_the_array_is_an_error():
    with pytest.raises(ValueError):
        apt_closure.setup_packages("#!/bin/sh\necho hi\n")


def test_depends_are_grouped_with_their_alternatives_and_providers():
    graph = apt_closure.parse_depends(DEPENDS)
    assert graph["libvirt-daemon-system"] == [
        [("adduser", [])],
        [("iptables", []), ("firewalld", [])],
        [("logrotate", [])],
        [("debconf", []), ("<debconf-2.0>", ["cdebconf", "debconf"])],
        [("init-system-helpers", [])],
    ]
    assert graph["logrotate"] == [[("cron", []), ("anacron", ["systemd-cron"]), ("<cron-daemon>", ["bcron", "cron"]),
                                   ("systemd-sysv", [])], [("libpopt0", [])]]
    assert graph["polkitd"] == [[("<default-dbus-system-bus>", ["dbus"]), ("<dbus-system-bus>", ["dbus-broker", "dbus"])]]
    assert graph["adduser"] == [] and "debconf-2.0" in graph and "python3" in graph


def test_closure_takes_the_first_alternative_and_the_providers_of_a_virtual_one():
    graph = apt_closure.parse_depends(DEPENDS)
    assert apt_closure.closure(["libvirt-daemon-system", "polkitd"], graph) == {
        "libvirt-daemon-system", "adduser", "iptables", "libip4tc2", "logrotate", "cron", "libpopt0", "debconf",
        "init-system-helpers", "polkitd", "dbus",
    }
    assert apt_closure.closure(["python3:any"], graph) == {"python3", "python3-minimal"}


def test_an_alternative_apt_does_not_know_is_passed_over():
    graph = apt_closure.parse_depends("a\n |Depends: gone\n  Depends: b\nb\n")
    assert apt_closure.closure(["a"], graph) == {"a", "b"}


def test_base_packages_are_essential_or_required():
    output = "bash yes required\ncoreutils yes required\nmount  required\nlibc6:amd64  required\nless  important\ncurl  optional\n"
    assert apt_closure.base_packages(output) == {"bash", "coreutils", "mount", "libc6"}


def test_owners_from_dpkg_search():
    output = textwrap.dedent("""\
        iproute2: /bin/ip
        diversion by dash from: /bin/sh
        diversion by dash to: /bin/sh.distrib
        dash: /bin/sh
        ipxe, ipxe-qemu: /usr/lib/ipxe
        python3-pip-whl: /usr/share/python-wheels/pip-23.0.1-py3-none-any.whl
        libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6
        """)
    patterns = ["/bin/ip", "/usr/bin/ip", "/bin/sh", "/usr/lib/ipxe", "/usr/share/python-wheels/pip-*.whl",
                "/lib/x86_64-linux-gnu/libc.so.6", "/usr/bin/qemu-img"]
    assert apt_closure.parse_owners(output, patterns) == {
        "/bin/ip": {"iproute2"}, "/usr/bin/ip": set(), "/bin/sh": {"dash"}, "/usr/lib/ipxe": {"ipxe", "ipxe-qemu"},
        "/usr/share/python-wheels/pip-*.whl": {"python3-pip-whl"}, "/lib/x86_64-linux-gnu/libc.so.6": {"libc6"},
        "/usr/bin/qemu-img": set(),
    }


def test_merged_usr_twins():
    assert apt_closure.merged_twins("/usr/bin/ip") == ["/usr/bin/ip", "/bin/ip"]
    assert apt_closure.merged_twins("/sbin/dropbear") == ["/sbin/dropbear", "/usr/sbin/dropbear"]
    assert apt_closure.merged_twins("/lib/modules") == ["/lib/modules", "/usr/lib/modules"]
    assert apt_closure.merged_twins("/usr/share/OVMF/OVMF_CODE_4M.fd") == ["/usr/share/OVMF/OVMF_CODE_4M.fd"]
