# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare what the listener received since line FROM with what a phase should have sent.

Usage: python check_received.py LOG FROM PHASE-NAME [EXPECTATION...]
An expectation is MAC,COUNT,PORT,FAMILY[,TAIL-HEX[,MIN-GAP-SECONDS]]; no expectation means nothing may arrive.
Every datagram must be exactly one expected magic packet: 6 x ff, the MAC 16 times, the SecureOn tail.
"""

from __future__ import annotations

import collections
import json
import sys


def main(log_path, start, phase, specs):
    with open(log_path, encoding="utf-8") as log:
        received = [json.loads(line) for line in log.read().splitlines()[start:]]
    expected = {}
    for spec in specs:
        fields = spec.split(",")
        mac, count, port, family = fields[0], int(fields[1]), int(fields[2]), fields[3]
        tail = fields[4] if len(fields) > 4 else ""
        payload = "ff" * 6 + mac.replace(":", "") * 16 + tail
        expected[(payload, port, family)] = (mac, count, float(fields[5]) if len(fields) > 5 else 0.0)
    got = collections.Counter((item["hex"], item["port"], item["family"]) for item in received)
    problems = []
    for key, (mac, count, min_gap) in expected.items():
        if got.get(key, 0) != count:
            problems.append("%s: %d packet(s) for %s on %s port %d, expected %d" % (phase, got.get(key, 0), mac, key[2], key[1], count))
        times = sorted(item["time"] for item in received if (item["hex"], item["port"], item["family"]) == key)
        gaps = [later - earlier for earlier, later in zip(times, times[1:])]
        if gaps and min(gaps) < min_gap:
            problems.append("%s: packets for %s only %.3f s apart, expected at least %.3f s" % (phase, mac, min(gaps), min_gap))
    for key, count in got.items():
        if key not in expected:
            problems.append("%s: %d unexpected datagram(s) on %s port %d: %s" % (phase, count, key[2], key[1], key[0]))
    if problems:
        sys.stderr.write("\n".join(problems) + "\n")
        sys.exit(1)
    sys.stdout.write("ok %s: %d datagram(s) as expected\n" % (phase, len(received)))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:])
