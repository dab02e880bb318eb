# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the collection's netboot server as the pxe_server module does (plan, then run).

    ip netns exec LAB python serve.py PARAMS.json EVENTS.jsonl

PARAMS holds the module's parameters plus ``run_dir``; every registry event is
written to EVENTS as one JSON line, then the run's result. Ends on SIGTERM.
"""

from __future__ import annotations

import json
import sys

from ansible_collections.nixie.metal.plugins.module_utils import _pxe_server


def main():
    with open(sys.argv[1], encoding="utf-8") as handle:
        params = json.load(handle)
    with open(sys.argv[2], "w", encoding="utf-8") as events:
        def progress(event):
            events.write(json.dumps(event) + "\n")
            events.flush()
        options = _pxe_server.plan(params)
        result = _pxe_server.run(options, params["run_dir"], on_progress=progress)
        events.write(json.dumps({"event": "result", "stop_reason": result.get("stop_reason"),
                                 "counters": result.get("counters")}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
