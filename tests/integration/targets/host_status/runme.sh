#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# host_status against a QEMU machine (TCG) running the lab installer with an SSH server,
# in a private network namespace: absent, unknown_os, other_system, installed (the lab
# installer poses as an installed NixOS), ARP discovery from the MAC, known host keys.
# Needs root; everything stays inside the lab's namespaces.
set -eux
cd "$(dirname "$0")"
# ansible-test runs a copy of this target; the collection itself is on the collections path.
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
export NIXIE_COLLECTION=$collections_root/ansible_collections/nixie/metal
python -m pytest -q -p no:cacheprovider test_host_status.py "$@"
