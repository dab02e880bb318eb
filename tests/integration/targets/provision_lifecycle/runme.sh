#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# The provision playbook's failure and lifecycle behaviour: ansible-playbook nixie.metal.provision
# inside a private network namespace (tests/lab, no VMs): check mode binds nothing, a missing tool
# stops the run before any machine is woken, silent machines fail with wait_for_agent's diagnosis
# (alone, while another goes on), and the netboot server stops whether the run succeeds, fails or
# is interrupted, or its server never answers. About two minutes.
set -eux
cd "$(dirname "$0")"
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
export NIXIE_COLLECTION=$collections_root/ansible_collections/nixie/metal
python -m pytest -q -p no:cacheprovider --durations=0 -n 2 test_provision_lifecycle.py "$@"
