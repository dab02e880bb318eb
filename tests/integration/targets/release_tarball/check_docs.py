# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ansible-doc reads every plugin and role of the installed collection, without a warning.

Usage: check_docs.py COLLECTION_DIR -- COMMAND PREFIX (e.g. env -i PATH=... ANSIBLE_COLLECTIONS_PATH=...)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path


def plugins_in(collection):
    """(type, FQCN) of every documented plugin and role the installed collection ships."""
    found = []
    for plugin_type in ("modules", "inventory", "lookup", "filter", "test", "callback", "connection"):
        directory = collection / "plugins" / plugin_type
        for path in sorted(directory.glob("*.py")):
            if path.name != "__init__.py" and not (plugin_type in ("filter", "test") and _sidecars(directory)):
                found.append((plugin_type.rstrip("s") if plugin_type == "modules" else plugin_type, "nixie.metal." + path.stem))
        # A file of several filters (or tests) documents each one in a YAML file named after it.
        for path in _sidecars(directory) if plugin_type in ("filter", "test") else ():
            found.append((plugin_type, "nixie.metal." + path.stem))
    for spec in sorted(collection.glob("roles/*/meta/argument_specs.yml")):
        found.append(("role", "nixie.metal." + spec.parent.parent.name))
    return found


def _sidecars(directory):
    return sorted(directory.glob("*.yml"))


# Options a module has only through a doc fragment of the tarball (plugins/doc_fragments/).
FROM_FRAGMENTS = {
    "nixie.metal.nix_build": ["chdir", "executable", "extra_args", "agent_flake", "override_inputs"],
    "nixie.metal.nix_eval": ["chdir", "executable", "extra_args", "agent_flake", "override_inputs"],
    "nixie.metal.host_status": ["agent_flake", "override_inputs"],
    "nixie.metal.pxe_server": ["interface", "address6", "dhcp6", "http_port", "ipxe_dir"],
    "nixie.metal.preflight": ["interface", "address6", "dhcp6", "http_port", "ipxe_dir"],
}


def check_fragments(name, doc):
    """The installed modules' doc fragments were found: attributes and shared options are whole."""
    for attribute in ("check_mode", "diff_mode", "platform"):
        entry = doc.get("attributes", {}).get(attribute) or {}
        assert entry.get("description") and entry.get("support"), "%s: attribute %s without the fragment's text: %s" % (name, attribute, entry)
    for option in FROM_FRAGMENTS.get(name, ()):
        assert doc["options"].get(option, {}).get("description"), "%s: option %s (from a doc fragment) is missing" % (name, option)


def ansible_doc(prefix, *args):
    proc = subprocess.run(prefix + ["ansible-doc", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0 or "WARNING" in proc.stderr or "ERROR" in proc.stderr:
        sys.exit("FAIL ansible-doc %s (rc %d):\n%s%s" % (" ".join(args), proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout


def main(collection, prefix):
    collection = Path(collection)
    plugins = plugins_in(collection)
    assert ("module", "nixie.metal.pxe_server") in plugins and ("inventory", "nixie.metal.hosts") in plugins, plugins
    assert ("role", "nixie.metal.nixos_anywhere") in plugins, plugins

    listed = json.loads(ansible_doc(prefix, "-t", "module", "--list", "--json", "nixie.metal"))
    modules = {name for kind, name in plugins if kind == "module"}
    if set(listed) != modules:
        sys.exit("FAIL ansible-doc --list shows %s, the tarball has %s" % (sorted(listed), sorted(modules)))

    # One JSON call per plugin type, and the modules as text once: each ansible-doc start costs seconds.
    for kind in sorted({kind for kind, dummy in plugins}):
        names = [name for each_kind, name in plugins if each_kind == kind]
        documented = json.loads(ansible_doc(prefix, "-t", kind, "--json", *names))
        for name in names:
            data = documented[name]
            if kind == "role":
                entry = data["entry_points"]["main"]
                assert entry.get("short_description") and entry.get("options"), (name, entry)
                source = data["path"]
            else:
                doc = data["doc"]
                assert doc.get("short_description") and doc.get("description") and doc.get("options"), (name, doc)
                assert doc.get("version_added") == "0.1.0", (name, doc.get("version_added"))
                if kind == "module":
                    assert data.get("examples") and data.get("return"), "%s: no EXAMPLES or RETURN" % name
                    check_fragments(name, doc)
                source = doc["filename"]
            # Read from the installed tarball, not from a checkout.
            if not source.startswith(str(collection)):
                sys.exit("FAIL ansible-doc -t %s %s was read from %s, not from %s" % (kind, name, source, collection))
            print("ok ansible-doc -t %s %s" % (kind, name))
    text = ansible_doc(prefix, "-t", "module", *sorted(modules))
    for name in sorted(modules):
        if not re.search(r"^> MODULE %s \(%s/" % (re.escape(name), re.escape(str(collection))), text, re.MULTILINE):
            sys.exit("FAIL ansible-doc's text for %s is missing or not from %s:\n%s" % (name, collection, text[:300]))
    print("ok ansible-doc text of %d modules" % len(modules))


if __name__ == "__main__":
    separator = sys.argv.index("--")
    main(sys.argv[1], sys.argv[separator + 1:])
