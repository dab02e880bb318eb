#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Power through BMCs, in one lab (conftest.py): nixie.metal.power against sushy-emulator (Redfish) and
# virtualbmc (IPMI) driving libvirt domains, then those machines installed end to end with
# ansible-playbook nixie.metal.provision, bad BMCs failing alone, and a reinstall. Needs root
# (network namespaces, libvirtd, QEMU). About three minutes.
set -eux
cd "$(dirname "$0")"
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
export NIXIE_COLLECTION=$collections_root/ansible_collections/nixie/metal
python -m pytest -q -p no:cacheprovider test_power_module.py test_provision_power.py "$@"
