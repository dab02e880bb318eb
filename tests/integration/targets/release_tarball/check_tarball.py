# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The release tarball holds what a user runs and none of the development files."""

from __future__ import annotations

import fnmatch
import json
import sys
import tarfile

# What the playbook, the plugins, the installer build, ansible-builder and a reader need.
REQUIRED = [
    "MANIFEST.json", "FILES.json", "README.md", "COPYING",
    "meta/runtime.yml", "meta/execution-environment.yml", "requirements.txt", "bindep.txt",
    "playbooks/provision.yml", "playbooks/site.yml", "plugins/modules/site.py", "plugins/module_utils/_site.py",
    "plugins/inventory/hosts.py", "plugins/modules/pxe_server.py", "plugins/module_utils/_netboot/serve/server.py",
    "plugins/doc_fragments/_attributes.py", "plugins/doc_fragments/_nix.py", "plugins/doc_fragments/_netboot_server.py",
    "plugins/module_utils/_argspec.py",
    "roles/nixos_anywhere/meta/argument_specs.yml", "roles/nixos_anywhere/tasks/main.yml",
    "flake.nix", "nix/agent/nixie-agent", "nix/module.nix", "nix/package.nix",
    "examples/hosts.json", "examples/hosts.nixie.yml", "examples/flake.nix", "examples/ansible.cfg",
    "examples/provision.yml", "examples/collections/requirements.yml", "examples/execution-environment.yml",
    "examples/nixos/disk.nix", "examples/nixos/installer.nix", "examples/nixos/machine.nix",
    "examples/hosts/node1.nix", "examples/hosts/node2.nix", "examples/hosts/arm1.nix", "examples/authorized_keys",
    "docs/README.md", "docs/quickstart.md", "docs/awx.md", "docs/semaphore.md", "docs/execution-environment.md",
    "docs/reference/README.md", "docs/reference/pxe_server.md", "docs/reference/playbook_provision.md",
    "changelogs/changelog.yaml",
]
# Development files: tests and their outputs, the lab, benchmarks, scripts, tool caches.
FORBIDDEN = [
    "tests", "tests/*", "extensions/*", "bench/*", "scripts/*", ".ci/*", ".venv/*", ".git/*", ".git*",
    "collections/*", "demo-output/*", ".ansible/*", ".cache/*", ".hypothesis/*", ".pytest_cache/*",
    ".benchmarks/*", "*/__pycache__/*", "*.pyc", "changelogs/fragments/*", "test-requirements.txt",
    ".ansible-lint", "*.tar.gz",
]


def main(path):
    with tarfile.open(path) as tar:
        members = {member.name.rstrip("/"): member for member in tar.getmembers()}
        files = json.load(tar.extractfile("FILES.json"))["files"]
        manifest = json.load(tar.extractfile("MANIFEST.json"))["collection_info"]
    problems = ["missing: %s" % name for name in REQUIRED if name not in members]
    for name in sorted(members):
        if any(fnmatch.fnmatch(name, pattern) for pattern in FORBIDDEN):
            problems.append("development file shipped: %s" % name)
    if not members["nix/agent/nixie-agent"].mode & 0o111:
        problems.append("nix/agent/nixie-agent lost its executable bit")
    listed = {entry["name"] for entry in files if entry["name"] != "."}
    if listed != set(members) - {"MANIFEST.json", "FILES.json"}:
        problems.append("FILES.json does not match the archive: %s" % sorted(listed ^ (set(members) - {"MANIFEST.json", "FILES.json"})))
    if (manifest["namespace"], manifest["name"]) != ("nixie", "metal"):
        problems.append("MANIFEST.json names %s.%s" % (manifest["namespace"], manifest["name"]))
    if problems:
        sys.exit("FAIL %s:\n  %s" % (path, "\n  ".join(problems)))
    print("ok tarball: %d entries, %d KiB" % (len(members), sum(m.size for m in members.values()) // 1024))


if __name__ == "__main__":
    main(sys.argv[1])
