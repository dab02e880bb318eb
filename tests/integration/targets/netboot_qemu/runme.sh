#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# End to end on real firmware under QEMU (TCG): OVMF and SeaBIOS/iPXE boot the lab
# installer through pxe_server in a private network namespace; wait_for_agent must
# return each machine's address. Needs root; everything stays inside the lab's namespaces.
set -eux
cd "$(dirname "$0")"
# ansible-test runs a copy of this target; the collection itself is on the collections path.
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
export NIXIE_COLLECTION=$collections_root/ansible_collections/nixie/metal
# The lab's own smoke test too: dnsmasq as the proxy, the anchor of bench/e2e.py.
python -m pytest -q -p no:cacheprovider test_netboot_qemu.py "$NIXIE_COLLECTION/tests/lab/test_lab_smoke.py" "$@"
