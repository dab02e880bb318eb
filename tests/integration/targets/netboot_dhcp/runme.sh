#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# The proxyDHCP server on the wire: the real server in a private lab namespace beside a site
# dnsmasq that gives addresses only, scapy-built DHCP clients of every architecture class sending
# raw frames from a client namespace on the lab bridge, real TFTP/HTTP clients, a phone-home and
# the one-shot rule. Needs root; all traffic stays inside the namespaces the test creates.
set -eux
cd "$(dirname "$0")"
# ansible-test runs a copy of this target; the collection itself is on the collections path.
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
export NIXIE_COLLECTION=$collections_root/ansible_collections/nixie/metal
export PYTHONPATH=$collections_root${PYTHONPATH:+:$PYTHONPATH}
python -m pytest -q -p no:cacheprovider test_netboot_dhcp.py "$@"
