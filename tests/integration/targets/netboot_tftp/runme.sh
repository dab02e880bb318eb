#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Integration test of the TFTP server: real clients (tftp-hpa, curl, tftpy, raw UDP) on loopback.
set -eux
cd "$(dirname "$0")"
# ansible-test runs a copy of this target; the collection itself is on the collections path.
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
PYTHONPATH="$collections_root${PYTHONPATH:+:$PYTHONPATH}" python -m pytest -q -p no:cacheprovider test_tftp_server.py "$@"
