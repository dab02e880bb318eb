# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the collection's netboot server as the pxe_server module does (plan, then run), for test_server_trust.py.

    ip netns exec SRV python serve.py PARAMS.json RESULT.json

PARAMS holds the module's parameters plus ``run_dir``; the run's whole result
(the module's return) is written to RESULT when the server stops (SIGTERM).
"""

from __future__ import annotations

import json
import sys

from ansible_collections.nixie.metal.plugins.module_utils import _pxe_server


def main():
    with open(sys.argv[1], encoding="utf-8") as handle:
        params = json.load(handle)
    result = _pxe_server.run(_pxe_server.plan(params), params["run_dir"])
    with open(sys.argv[2], "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
