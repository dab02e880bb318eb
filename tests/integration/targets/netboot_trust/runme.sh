#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Trust on the segment: which MAC owns a peer's address, asked of the real kernel over rtnetlink
# from the server's namespace as nobody, with a host, an impostor and a routed client on a bridge.
# Needs root; every namespace is the test's own (trustlab.py) and deleted at the end.
set -eux
cd "$(dirname "$0")"
# ansible-test runs a copy of this target; the collection itself is on the collections path.
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
export NIXIE_COLLECTION=$collections_root/ansible_collections/nixie/metal
export PYTHONPATH=$collections_root${PYTHONPATH:+:$PYTHONPATH}
# Every test_*.py here shares the lab (conftest.py).
python -m pytest -q -p no:cacheprovider -rA . "$@"
