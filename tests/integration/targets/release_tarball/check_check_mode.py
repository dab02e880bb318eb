# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the provision playbook did in check mode, run from the installed tarball on its own example.

Every machine of the example gets as far as "would be installed", with the nixos-anywhere command
it would run; nothing was run, bound or written.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def recap(output):
    rows = {}
    for line in output.split("PLAY RECAP", 1)[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line)
        if match:
            rows[match.group(1)] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return rows


def main(work, collection):
    work, collection = Path(work), Path(collection)
    out = (work / "check.out").read_text(encoding="utf-8")
    hosts = json.loads((collection / "examples" / "hosts.json").read_text(encoding="utf-8"))
    # The run was limited to the x86_64 machines (the prebuilt installer is x86_64).
    machines = sorted(name for name, entry in hosts.items() if entry.get("arch", "x86_64-linux") == "x86_64-linux")
    assert len(machines) >= 2, machines
    problems = []
    rows = recap(out)
    if set(rows) != {"localhost", *machines}:
        problems.append("PLAY RECAP lists %s" % sorted(rows))
    problems += ["%s failed" % host for host, row in rows.items() if row.get("failed") or row.get("unreachable")]
    if "TASK [nixie.metal.netboot_server : Check the netboot server's settings]" not in out:
        problems.append("the netboot server's settings were not checked")
    for name in machines:
        # The flake is the installed example's directory: the playbook found it from the inventory.
        command = re.search(r"Would run, for %s: timeout --kill-after=30 \d+ nixos-anywhere --flake '?%s#%s'? "
                            r"--target-host 'root@<installer-address>'" % (name, re.escape(str(collection / "examples")), name), out)
        if not command:
            problems.append("no nixos-anywhere command reported for %s" % name)
        if not re.search(r'"msg": "%s: would be installed in [\d.]+s\s*"' % name, out):
            problems.append("%s is not reported as 'would be installed'" % name)
    if (work / "nixos-anywhere-ran").exists():
        problems.append("nixos-anywhere ran in check mode: %s" % (work / "nixos-anywhere-ran").read_text(encoding="utf-8"))
    listening = (work / "listening.txt").read_text(encoding="utf-8").strip()
    if listening:
        problems.append("sockets still listening in the run's namespace:\n%s" % listening)
    run_dir = (work / "run-dir.txt").read_text(encoding="utf-8").strip()
    if run_dir:
        problems.append("check mode wrote to the server's run directory: %s" % run_dir)
    if "Traceback" in out:
        problems.append("a traceback in the output")
    if problems:
        sys.exit("FAIL check mode:\n  %s\n--- output ---\n%s" % ("\n  ".join(problems), out))
    print("ok check mode: %s would be installed; nothing ran, bound or was written" % ", ".join(sorted(machines)))


if __name__ == "__main__":
    main(*sys.argv[1:])
