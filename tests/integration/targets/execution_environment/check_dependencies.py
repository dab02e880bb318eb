# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ansible-builder's introspection takes from the installed collection, resolved by bindep.

The image's pip requirements are the collection's requirements.txt; its system packages, for the
image's distribution (CentOS Stream 10) and for Debian, cover each thing the collection runs on the
controller; on this machine (Debian, set up by scripts/setup) every one of them is installed.
"""

from __future__ import annotations

import sys

import yaml
from bindep.depends import Depends

# What the collection runs on the controller, and the package that provides it per platform.
NEEDS = {
    "ip (iproute2)": {"rpm": "iproute", "dpkg": "iproute2"},
    "ssh, ssh-keyscan": {"rpm": "openssh-clients", "dpkg": "openssh-client"},
    "ps (the playbook's owner lookup)": {"rpm": "procps-ng", "dpkg": "procps"},
    "iPXE binaries, x86_64": {"rpm": "ipxe-bootimgs-x86", "dpkg": "ipxe"},
    "iPXE binaries, arm64": {"rpm": "ipxe-bootimgs-aarch64", "dpkg": "ipxe"},
    # No RPM: the execution environment copies Nix from the nixos/nix image.
    "nix": {"dpkg": "nix-bin"},
}
CENTOS_STREAM_10 = ["default", "platform:centos", "platform:centos-10", "platform:redhat", "platform:rpm", "platform:python3"]
DEBIAN_12 = ["default", "platform:debian", "platform:debian-12", "platform:debian-bookworm", "platform:dpkg", "platform:python3"]


def uncommented(path):
    with open(path, encoding="utf-8") as handle:
        return [line.split("#", 1)[0].strip() for line in handle if line.split("#", 1)[0].strip()]


def main(introspected, pip_path, bindep_path, collection):
    with open(introspected, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    problems = []
    wanted_pip = uncommented("%s/requirements.txt" % collection)
    if uncommented(pip_path) != wanted_pip:
        problems.append("pip requirements %s, the collection has %s" % (uncommented(pip_path), wanted_pip))
    if not all(line.endswith("# from collection nixie.metal") for line in data["python"] + data["system"]):
        problems.append("requirements not attributed to nixie.metal: %s" % data)

    with open(bindep_path, encoding="utf-8") as handle:
        depends = Depends(handle.read())   # the file the image build hands to bindep, comments and all
    for platform, profiles in (("rpm", CENTOS_STREAM_10), ("dpkg", DEBIAN_12)):
        packages = set(depends.list_all_packages(depends.active_rules(profiles), output_format="none"))
        expected = {package[platform] for package in NEEDS.values() if platform in package}
        if packages != expected:
            problems.append("%s packages %s; expected %s (missing %s, unexpected %s)" % (
                platform, sorted(packages), sorted(expected), sorted(expected - packages), sorted(packages - expected)))

    # This machine: its own platform profiles, as bindep itself would compute them.
    local = Depends(open(bindep_path, encoding="utf-8").read())
    profiles = ["default"] + local.platform_profiles()
    if "platform:dpkg" in profiles:
        missing = local.check_rules(local.active_rules(profiles))
        if missing:
            problems.append("not installed on this machine (scripts/setup should install them): %s" % missing)
    else:
        problems.append("this check runs on Debian or Ubuntu (scripts/setup's platforms); profiles here: %s" % profiles)

    if problems:
        raise SystemExit("FAIL dependencies:\n  %s" % "\n  ".join(problems))
    print("ok dependencies: pip %s; CentOS Stream 10 %s" % (
        ", ".join(wanted_pip), ", ".join(sorted(package["rpm"] for package in NEEDS.values() if "rpm" in package))))


if __name__ == "__main__":
    main(*sys.argv[1:])
