#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Hostile input against the real pxe_server in a private network namespace (no VM): path
# traversal over TFTP and HTTP with raw requests, TFTP writes, forged and replayed phone-homes,
# vanishing TFTP clients, capabilities after binding, the agent across a server restart, and a
# clean end. Figures go to tests/reliability/results (see tests/reliability/report.py).
set -eux
cd "$(dirname "$0")"
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
export NIXIE_COLLECTION=$collections_root/ansible_collections/nixie/metal
python -m pytest -q -p no:cacheprovider test_reliability_paths.py "$@"
