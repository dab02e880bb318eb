#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# scripts/setup installs every program and system file the collection's code uses: the
# programs and files are read from the code (tests/utils/programs.py), each is mapped to
# its package (dpkg -S) and checked against what apt-get install --no-install-recommends
# of setup's apt_packages brings (tests/utils/apt_closure.py), or against the virtualenv's
# console scripts. Reads apt's and dpkg's databases only; changes nothing.
set -eux
cd "$(dirname "$0")"
# ansible-test runs a copy of this target; the collection itself is on the collections path.
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
export NIXIE_COLLECTION=$collections_root/ansible_collections/nixie/metal
python -m pytest -q -p no:cacheprovider test_programs_installed.py "$@"
