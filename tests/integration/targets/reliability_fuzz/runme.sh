#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# The CI budget of the parser fuzzing (tests/fuzz): every target (proxyDHCP on 67 and on 4011,
# TFTP, the agent API) runs under atheris for a few seconds from the seeds of real captured
# packets; any exception, broken invariant or hang fails the run and keeps the input under
# tests/fuzz/crashes/. The bench run (1,000,000 inputs per target) is `python tests/fuzz/run.py`.
set -eux
cd "$(dirname "$0")"
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
collection=$collections_root/ansible_collections/nixie/metal
results=${NIXIE_RELIABILITY_RESULTS:-$collection/tests/reliability/results}
python "$collection/tests/fuzz/run.py" --seconds "${NIXIE_FUZZ_SECONDS:-5}" --results "$results/fuzz-ci.json"
