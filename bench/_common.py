# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

# Small helpers shared by the benches: import the collection from this
# checkout, run inside a private network namespace, write a result file.

import contextlib
import json
import os
import shutil
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


def ensure_nginx() -> str:
    """The nginx binary of the anchors, installed with apt-get (nginx-light) when missing.

    Not in scripts/setup: only the benches' anchors use it, and the package starts a web
    server on port 80 wherever it is installed.
    """
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("nginx is missing; install it with: apt-get install -y nginx-light")
    print("installing nginx-light with apt-get ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(["apt-get", "install", "-y", "-q", "nginx-light"], env=env, check=False,
                      stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "nginx-light"], env=env, check=True, stdout=subprocess.DEVNULL)
    return shutil.which("nginx") or "/usr/sbin/nginx"


def save_json(path: str, data: dict) -> str:
    """Write a bench's result to ``path`` (its directory made if missing); return the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    return path


def write_result(name: str, data: dict) -> str:
    """Write a result under bench/results with the time in its name; return the path."""
    return save_json(os.path.join(RESULTS, "%s-%s.json" % (name, time.strftime("%Y%m%dT%H%M%S"))), data)


def process_tree(pid):
    """``pid`` and its descendants now, from /proc/<pid>/task/*/children."""
    found, todo = [], [pid]
    while todo:
        each = todo.pop()
        found.append(each)
        try:
            for task in os.listdir("/proc/%d/task" % each):
                with open("/proc/%d/task/%s/children" % (each, task), encoding="ascii") as handle:
                    todo.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return found


def _sum_over_tree(pid, read):
    """The sum of ``read(each pid)`` over ``pid`` and its descendants, or None when none could be read."""
    total = None
    for each in process_tree(pid):
        try:
            total = (total or 0.0) + read(each)
        except (OSError, IndexError, ValueError):
            continue
    return total


def _cpu_of(pid):
    with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_queue_wait_of(pid):
    with open("/proc/%d/schedstat" % pid, encoding="ascii") as handle:
        return int(handle.read().split()[1]) / 1e9


def tree_cpu(pid):
    """utime + stime so far of ``pid`` and its descendants in seconds, or None when it is gone."""
    return _sum_over_tree(pid, _cpu_of)


def tree_run_queue_wait(pid):
    """Seconds ``pid`` and its descendants spent runnable but waiting for a CPU (/proc/<pid>/schedstat), or None."""
    return _sum_over_tree(pid, _run_queue_wait_of)
