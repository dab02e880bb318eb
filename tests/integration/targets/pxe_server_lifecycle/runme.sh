#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# pxe_server's lifecycle through Ansible, in a private network namespace: check mode,
# state=stopped, a second run refused, SIGTERM, SIGKILL and recovery, a taken port,
# idle timeout, bad input. After each case no server process and no bound port remain.
set -eux
cd "$(dirname "$0")"
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
export NIXIE_COLLECTION=$collections_root/ansible_collections/nixie/metal
python -m pytest -q -p no:cacheprovider test_pxe_server_lifecycle.py "$@"
