# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""scripts/setup installs every program and system file the collection's code uses.

The programs and files come from the code itself (tests/utils/programs.py reads the
Python, shell and YAML of the product, the demo, the tests and the benches), plus the
few listed by hand below because they are named only at run time. Each one must be:

* a console script of the Python virtualenv (pip installs it from requirements.txt or
  test-requirements.txt), or
* a file of a package that ``apt-get install --no-install-recommends`` of scripts/setup's
  apt_packages brings (their Depends and Pre-Depends, recursively), or of an Essential
  or Priority: required package, which every Debian and Ubuntu system has, or
* listed below as deliberately not installed by scripts/setup, with the reason.

A program installed on this machine by hand, or pulled in by a Recommends or by another
package, fails the test just like a missing one: a fresh machine would not have it.
Runs after scripts/setup (scripts/test runs it first), as CI does on a fresh machine.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

COLLECTION = Path(os.environ.get("NIXIE_COLLECTION") or Path(__file__).resolve().parents[4])
sys.path.insert(0, str(COLLECTION / "tests" / "utils"))

import apt_closure  # noqa: E402  pylint: disable=wrong-import-position,import-error
import programs  # noqa: E402  pylint: disable=wrong-import-position,import-error

#: The product (plugins, roles, playbooks), the demo and the scripts, the tests, molecule, the benches, CI;
#: and the installer's agent, which the netboot_agent target also runs on this machine under dash.
SCANNED = ("plugins", "roles", "playbooks", "scripts", "tests", "extensions", "bench", ".ci", "nix/agent")
NOT_SCANNED = {
    "tests/output": "ansible-test's work directory (copies of the targets, results)",
    "tests/lab/nixielab/data/lab-agent.sh": "runs inside the lab VMs' initramfs, whose programs are busybox applets",
    "tests/unit/utils/test_programs.py": "its strings are example code for the scanner, not calls",
    "tests/unit/utils/test_apt_closure.py": "its strings are example apt and dpkg output",
    "tests/integration/targets/programs_installed/test_programs_installed.py": "its strings are the lists below, not calls",
}

#: What the scanner cannot see: names built or written at run time. Name -> where it is used.
BY_HAND = {
    "libvirtd": "tests/lab/nixielab/libvirt.py starts it from a shell prologue it writes at run time",
    "shellcheck": "ansible-test sanity (scripts/test sanity) runs it, and skips its test with only a warning when it is missing",
    "nixos-anywhere": "roles/nixos_anywhere runs nixos_anywhere_executable, which defaults to nixos-anywhere",
    "ssh": "playbooks/provision.yml and roles/nixos_anywhere/tasks/main.yml check their tools with `command -v` in a loop",
    "ssh-keyscan": "the same loops",
    "ssh-keygen": "the same loops",
    "timeout": "the same loops",
    "nix": "the same loops",
    "/usr/lib/ipxe/undionly.kpxe": "pxe_server serves the iPXE binaries of policy.py by name from ipxe_dir (default /usr/lib/ipxe)",
    "/usr/lib/ipxe/ipxe.efi": "the same",
    "/usr/lib/ipxe/snponly.efi": "the same",
    "/usr/share/seabios/bios-256k.bin": "QEMU's own BIOS, which the lab's SeaBIOS machines boot",
    "/usr/lib/ipxe/qemu/efi-virtio.rom": "QEMU's own option ROM for virtio-net-pci, which the lab's *-ipxe machines boot",
    "gcc": "pip builds libvirt-python (test-requirements.txt) from source with it",
    "pkg-config": "the same build finds libvirt with it",
}

#: Words the scanner takes for programs that are not.
NOT_PROGRAMS = {
    "hosts": "bench/agent_api.py: burst.run(['hosts']) runs the HTTP burst named hosts",
}

#: Deliberately not installed by scripts/setup. Name -> why.
NOT_INSTALLED = {
    "nixos-anywhere": "built with nix by the real demo (extensions/molecule/default/tasks/provision-prepare-real.yml) or "
                      "brought by the user; the lab demo and the tests use a stand-in",
    "sudo": "scripts/setup runs apt-get through it only when not run as root",
    "/usr/lib/sftp-server": "where dropbear looks for sftp-server inside the lab initramfs (tests/lab/nixielab/installer.py)",
    "/lib/modules/*/kernel/**/*.ko": "members of the kernel .deb that tests/lab/nixielab/installer.py unpacks, not files of this machine",
    "/usr/sbin/sshd": "installed on demand (see ON_DEMAND): a system SSH server is not what setup should start on every machine",
    "nginx": "installed on demand (see ON_DEMAND): a bench anchor only, and a web server setup should not start on every machine",
    "/usr/sbin/nginx": "the same",
}
#: Of NOT_INSTALLED: installed by the code that needs it, when missing. Name -> (package, the files that install it).
ON_DEMAND = {
    "/usr/sbin/sshd": ("openssh-server", ("tests/integration/targets/provision_lifecycle/test_provision_lifecycle.py",
                                          "tests/integration/targets/role_nixos_anywhere/runme.sh")),
    "nginx": ("nginx-light", ("bench/_common.py",)),
    "/usr/sbin/nginx": ("nginx-light", ("bench/_common.py",)),
}

#: Calls the scanner has to find, or it is broken (and the test would pass on nothing).
KNOWN_CALLS = {
    "qemu-img": "tests/lab/nixielab/libvirt.py",              # subprocess.run([...]), via molecule's create playbook
    "qemu-system-aarch64": "tests/lab/nixielab/vm.py",        # machine = [...]; argv = machine + [...]
    "dnsmasq": "tests/lab/nixielab/net.py",                   # lab.popen([...])
    "ssh-keyscan": "roles/nixos_anywhere/tasks/host_key.yml",  # command: argv: [...]
    "ip": "plugins/module_utils/_interfaces.py",
    "/usr/share/OVMF/OVMF_CODE_4M.fd": "tests/lab/nixielab/vm.py",
    "ansible-playbook": "tests/integration/targets/wake_on_lan/runme.sh",
    "molecule": "scripts/demo",
}

#: Where programs are looked up for apt (not the virtualenv's bin, which is first on PATH here).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VENV_BIN = Path(sysconfig.get_path("scripts"))


@pytest.fixture(scope="module")
def uses():
    found = programs.scan_tree(str(COLLECTION), SCANNED, exclude=NOT_SCANNED)
    for name, why in BY_HAND.items():
        found.setdefault(name, []).append("by hand: " + why)
    return found


@pytest.fixture(scope="module")
def setup_closure():
    """(setup's packages, what every system has, all a fresh machine has after scripts/setup)."""
    packages = apt_closure.setup_packages((COLLECTION / "scripts" / "setup").read_text(encoding="utf-8"))
    base = apt_closure.base_packages(apt_closure.base_packages_output())
    graph = apt_closure.parse_depends(apt_closure.depends_output(set(packages) | base))
    unknown = sorted(set(packages) - set(graph))
    assert not unknown, "scripts/setup names packages apt does not know: %s (apt-get update?)" % ", ".join(unknown)
    return set(packages), apt_closure.closure(base, graph), apt_closure.closure(set(packages) | base, graph)


def venv_console_scripts():
    """{console script: its distribution} for the scripts pip put in this virtualenv's bin."""
    scripts = {}
    # Only the virtualenv's own site-packages: ansible-test puts a bare ansible-core dist-info
    # (no entry points) first on PYTHONPATH, which would hide the installed one.
    site_packages = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    for distribution in metadata.distributions(path=site_packages):
        for entry_point in distribution.entry_points:
            if entry_point.group == "console_scripts" and (VENV_BIN / entry_point.name).exists():
                scripts.setdefault(entry_point.name, distribution.metadata["Name"])
    return scripts


def candidate_paths(name):
    """Where apt would have put ``name``: the path itself, or the usual bin directories."""
    if name.startswith("/"):
        return apt_closure.merged_twins(name)
    paths = [directory + name for directory in ("/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/")]
    found = shutil.which(name, path=SYSTEM_PATH)
    if found:  # alternatives (/usr/bin/awk -> /etc/alternatives/awk -> /usr/bin/mawk): the real file
        paths += [found] + apt_closure.merged_twins(os.path.realpath(found))
    return paths


def classify(names, packages, base, closure):
    """{name: (verdict, detail)}, verdict one of venv, apt, not-installed, not-a-program, MISSING."""
    scripts = venv_console_scripts()
    verdicts, lookups = {}, {}
    for name in names:
        if name in NOT_PROGRAMS:
            verdicts[name] = ("not-a-program", NOT_PROGRAMS[name])
        elif name in NOT_INSTALLED:
            verdicts[name] = ("not-installed", NOT_INSTALLED[name])
        elif name in scripts:
            verdicts[name] = ("venv", "console script of %s" % scripts[name])
        else:
            lookups[name] = candidate_paths(name)
    owned = apt_closure.owners(path for paths in lookups.values() for path in paths)
    for name, paths in lookups.items():
        owners = set().union(*(owned[path] for path in paths))
        if owners & packages:
            verdicts[name] = ("apt", "%s (in apt_packages)" % ", ".join(sorted(owners & packages)))
        elif owners & base:
            verdicts[name] = ("apt", "%s (on every system: Essential, required or their dependency)" % ", ".join(sorted(owners & base)))
        elif owners & closure:
            verdicts[name] = ("apt", "%s (a dependency of apt_packages)" % ", ".join(sorted(owners & closure)))
        elif owners:
            verdicts[name] = ("MISSING", "from %s, which scripts/setup does not bring: add it to apt_packages" % ", ".join(sorted(owners)))
        elif name.startswith("python") and (VENV_BIN / name).exists():
            verdicts[name] = ("venv", "the virtualenv's interpreter")
        else:
            where = shutil.which(name, path=SYSTEM_PATH) if not name.startswith("/") else None
            verdicts[name] = ("MISSING", ("%s belongs to no package" % where) if where else
                              "no package installed here has it: add the one that does to apt_packages")
    return verdicts


def test_the_scanner_finds_the_calls_it_is_known_to_find(uses):
    for name, path in KNOWN_CALLS.items():
        assert any(where.startswith(path + ":") for where in uses.get(name, [])), \
            "the scanner no longer finds %s in %s (found: %s)" % (name, path, uses.get(name))


def test_every_program_and_file_comes_from_setup(uses, setup_closure, capsys):
    verdicts = classify(sorted(uses), *setup_closure)
    closure = setup_closure[-1]
    with capsys.disabled():
        print("\n%d programs and files used, %d packages after scripts/setup:" % (len(verdicts), len(closure)))
        for name, (verdict, detail) in sorted(verdicts.items(), key=lambda item: (item[1][0], item[0])):
            print("  %-13s %-40s %s  [%s]" % (verdict, name, detail, uses[name][0]))
    missing = ["%s: %s (%s)" % (name, detail, "; ".join(uses[name][:3]))
               for name, (verdict, detail) in sorted(verdicts.items()) if verdict == "MISSING"]
    assert not missing, "scripts/setup does not install what the code uses:\n" + "\n".join(missing)


def test_every_exception_is_still_needed(uses):
    stale = [name for name in list(NOT_INSTALLED) + list(NOT_PROGRAMS) if name not in uses]
    assert not stale, "no longer used, remove from the lists of this test: %s" % stale
    gone = [path for path in NOT_SCANNED if not (COLLECTION / path).exists() and path != "tests/output"]
    assert not gone, "NOT_SCANNED names files that are gone: %s" % gone


@pytest.mark.parametrize("name", sorted(ON_DEMAND))
def test_what_is_installed_on_demand_still_is(name):
    package, paths = ON_DEMAND[name]
    for path in paths:
        text = (COLLECTION / path).read_text(encoding="utf-8")
        assert "apt-get" in text and package in text, "%s no longer installs %s (for %s)" % (path, package, name)
