#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# A rack booting at once, short: the three rack benches (bench/dhcp_burst.py, bench/machines.py,
# bench/agent_api.py) with their --quick sizes, checked against generous thresholds. They guard
# against regressions (a lost DHCP answer, a failed transfer, a phone-home that errors); the
# figures themselves come from the full benches (bench/README.md). Needs root: every server and
# client runs inside network namespaces the benches create and remove.
set -eux
cd "$(dirname "$0")"
# ansible-test runs a copy of this target; the collection itself is on the collections path.
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
export NIXIE_COLLECTION=$collections_root/ansible_collections/nixie/metal
export PYTHONPATH=$collections_root${PYTHONPATH:+:$PYTHONPATH}
python -m pytest -q -p no:cacheprovider test_scale_short.py "$@"
