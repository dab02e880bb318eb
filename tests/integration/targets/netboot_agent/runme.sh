#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# The real nixie-agent script under busybox sh + busybox wget (and dash + curl)
# against the real aiohttp app on 127.0.0.1. Loopback only; no namespaces needed.
set -eux

here=$(cd "$(dirname "$0")" && pwd)
# ansible-test runs a copy of this target; the collection itself is on the collections path.
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
collection=$collections_root/ansible_collections/nixie/metal
export PYTHONPATH="$collections_root${PYTHONPATH:+:$PYTHONPATH}"
export NIXIE_AGENT="$collection/nix/agent/nixie-agent"

cd "$here"
exec "${ANSIBLE_TEST_PYTHON_INTERPRETER:-python3}" -m pytest -q -p no:cacheprovider test_netboot_agent.py "$@"
