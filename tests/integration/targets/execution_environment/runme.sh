#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# The execution environment, short of building the image (no container runtime needed):
# ansible-builder 3 makes a build context from the example definition shipped in the release
# tarball, the Containerfile is checked, the image build's own introspection script reads the
# installed collection's meta/execution-environment.yml, and its bindep list is resolved for the
# image's distribution (CentOS Stream 10) and checked against this Debian machine.
set -euo pipefail
cd "$(dirname "$0")"
source_root=${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/nixie/metal
work=$(mktemp -d /tmp/nixie-ee.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The collection as the image's galaxy stage gets it: from the release tarball.
ansible-galaxy collection build --output-path "$work/dist" "$source_root" >/dev/null
ANSIBLE_COLLECTIONS_PATH=$work/collections ansible-galaxy collection install --offline -p "$work/collections" "$work/dist"/nixie-metal-*.tar.gz >/dev/null
installed=$work/collections/ansible_collections/nixie/metal

# The example site as a user copies it, then the build context.
cp -r "$installed/examples" "$work/site"
(cd "$work/site" && ansible-builder create -f execution-environment.yml -c "$work/context" --output-filename Containerfile) > "$work/create.log"
python check_context.py "$work/context" "$work/site"

# What the builder stage runs: the context's introspect.py over the installed collections.
python "$work/context/_build/scripts/introspect.py" introspect \
  --write-pip "$work/pip.txt" --write-bindep "$work/bindep.txt" "$work/collections" > "$work/introspect.yml"
python check_dependencies.py "$work/introspect.yml" "$work/pip.txt" "$work/bindep.txt" "$installed"
