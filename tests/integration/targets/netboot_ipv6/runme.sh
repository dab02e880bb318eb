#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# IPv6 single-stack end to end on real firmware: OVMF's PXE over IPv6 boots through pxe_server
# (beside a site router + DHCPv6 server, and alone on an isolated segment) into the lab installer,
# whose agent phones home over IPv6; wait_for_agent must return its IPv6 address. Needs root;
# everything stays inside the lab's network namespaces.
set -eux
cd "$(dirname "$0")"
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
export NIXIE_COLLECTION=$collections_root/ansible_collections/nixie/metal
NIXIE_NETBOOT_PLAY=$(cd ../setup_netboot_play && pwd)
export NIXIE_NETBOOT_PLAY
python -m pytest -q -p no:cacheprovider test_netboot_ipv6.py "$@"
