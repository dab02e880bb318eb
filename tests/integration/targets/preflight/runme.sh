#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# The preflight (ansible-playbook nixie.metal.preflight) in a private network namespace lab with a
# site dnsmasq: every failing row provoked once (a port taken, an nftables rule dropping UDP 67, the
# site's DHCP server handing out a boot file, an old Nix, no key, an arm64 machine without its iPXE
# binary, an encrypted key), and once all green. Needs root; no VMs. About two and a half minutes.
set -eux
cd "$(dirname "$0")"
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
export NIXIE_COLLECTION=$collections_root/ansible_collections/nixie/metal
python -m pytest -q -p no:cacheprovider --durations=0 -n 2 test_preflight_lab.py "$@"
