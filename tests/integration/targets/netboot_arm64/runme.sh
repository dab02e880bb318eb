#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# arm64 end to end on real firmware: qemu-system-aarch64 (TCG) with AAVMF boots through
# pxe_server (PXE over TFTP and UEFI HTTP boot) into the arm64 lab installer, whose agent
# phones home. Needs root; everything stays inside the lab's network namespaces.
set -eux
cd "$(dirname "$0")"
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
export NIXIE_COLLECTION=$collections_root/ansible_collections/nixie/metal
NIXIE_NETBOOT_PLAY=$(cd ../setup_netboot_play && pwd)
export NIXIE_NETBOOT_PLAY
python -m pytest -q -p no:cacheprovider test_netboot_arm64.py "$@"
