#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Real firmware under QEMU (TCG) boots through pxe_server while things go wrong: a machine powered
# off mid-boot and on again, a storm of hostile UDP and HTTP from another host on the segment
# (with a capture proving no stranger got an offer), and 10% loss plus reordering on a machine's
# link. Figures go to tests/reliability/results (see tests/reliability/report.py).
set -eux
cd "$(dirname "$0")"
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
export NIXIE_COLLECTION=$collections_root/ansible_collections/nixie/metal
python -m pytest -q -p no:cacheprovider test_reliability_boot.py "$@"
