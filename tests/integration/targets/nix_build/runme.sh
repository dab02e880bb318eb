#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# nixie.metal.nix_build against a real nix (Debian's nix-bin 2.8 is enough), offline,
# building throwaway flakes with no inputs; and every .nix file of the collection
# parsed, the agent's NixOS module evaluated against a stand-in of the module system.
#
# Nothing outside a temporary directory is touched: the tests give nix a private
# store, state and cache there, and their settings through NIX_CONFIG, never /etc/nix.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
collection=${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/nixie/metal
[ -d "$collection" ] || collection=$(cd "$here/../../../.." && pwd)
export NIXIE_COLLECTION=$collection

if ! command -v nix >/dev/null || ! command -v nix-instantiate >/dev/null; then
    echo "nix_build: nix is not installed; on Debian or Ubuntu: apt-get install nix-bin" >&2
    exit 1
fi

cd "$here"
exec "${ANSIBLE_TEST_PYTHON_INTERPRETER:-python3}" -m pytest -q -p no:cacheprovider --durations=0 -n 2 test_nix_build.py test_nix_files.py test_flakes.py "$@"
