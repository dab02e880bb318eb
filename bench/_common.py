# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

# Small helpers shared by the benches: import the collection from this
# checkout, run inside a private network namespace, write a result file.

import contextlib
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "bench", "results")


def collection_pythonpath() -> str:
    """A directory holding ansible_collections/nixie/metal -> this checkout.

    The checkout's own collections/ link farm (git-ignored; scripts/demo makes
    the same one), so the commands the benches print work as shown.
    """
    here = os.path.realpath(REPO)
    root = os.path.join(here, "collections")
    link = os.path.join(root, "ansible_collections", "nixie", "metal")
    if not (os.path.exists(link) and os.path.realpath(link) == here):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.islink(link):
            os.unlink(link)
        os.symlink("../../..", link)
    return root


def use_collection() -> None:
    path = collection_pythonpath()
    if path not in sys.path:
        sys.path.insert(0, path)


@contextlib.contextmanager
def netns(prefix: str):
    """Create a network namespace with lo up; delete it on exit. Needs root."""
    name = "%s-%d" % (prefix, os.getpid())
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def write_result(name: str, data: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "%s-%s.json" % (name, time.strftime("%Y%m%dT%H%M%S")))
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    return path
