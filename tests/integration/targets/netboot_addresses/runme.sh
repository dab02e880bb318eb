#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# pxe_server with dhcp=addresses on the wire: a lab segment with no other DHCP server, the module
# run by ansible-playbook in the lab namespace, and the Linux DHCP clients an installer uses
# (busybox udhcpc, dhcpcd) in machine namespaces. Needs root; all traffic stays inside the
# namespaces the test creates.
set -eux
cd "$(dirname "$0")"
# ansible-test runs a copy of this target; the collection itself is on the collections path.
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
export NIXIE_COLLECTION=$collections_root/ansible_collections/nixie/metal
export PYTHONPATH=$collections_root${PYTHONPATH:+:$PYTHONPATH}
python -m pytest -q -p no:cacheprovider test_netboot_addresses.py "$@"
