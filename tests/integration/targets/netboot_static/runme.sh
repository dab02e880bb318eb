#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# A host's static network (hosts.json network) end to end without firmware: pxe_server renders the
# kernel command line, the real nixie-agent applies it in a machine namespace with no DHCP at all
# (busybox ip and iproute2) and phones home over it. Needs root; all traffic stays inside the
# namespaces the test creates.
set -eux
cd "$(dirname "$0")"
# ansible-test runs a copy of this target; the collection itself is on the collections path.
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
export NIXIE_COLLECTION=$collections_root/ansible_collections/nixie/metal
export PYTHONPATH=$collections_root${PYTHONPATH:+:$PYTHONPATH}
python -m pytest -q -p no:cacheprovider test_netboot_static.py "$@"
