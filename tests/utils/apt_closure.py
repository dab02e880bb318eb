# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a fresh Debian or Ubuntu machine has after scripts/setup, as apt sees it.

* :func:`setup_packages` reads the ``apt_packages`` list out of scripts/setup.
* :func:`closure` is what ``apt-get install --no-install-recommends`` of them brings:
  their Depends and Pre-Depends, recursively, from ``apt-cache depends --recurse``,
  plus what every Debian system has (Essential and Priority: required packages, and
  their dependencies).
* :func:`owners` maps files to the packages installed here that own them (``dpkg -S``).

The parsing functions are pure (their unit tests feed them text); :func:`depends_output`,
:func:`base_packages_output` and :func:`owners` run apt-cache, dpkg-query and dpkg.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess

APT_CACHE_DEPENDS = ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                     "--no-breaks", "--no-replaces", "--no-enhances"]
#: With merged /usr a package may list /bin/x or /usr/bin/x for the same file.
MERGED = (("/usr/bin/", "/bin/"), ("/usr/sbin/", "/sbin/"), ("/usr/lib/", "/lib/"))


def _plain(name):
    """``python3:any`` and ``libc6:amd64`` are python3 and libc6 here."""
    return name.strip("<>").split(":")[0]


def setup_packages(script):
    """The packages of the ``apt_packages=( ... )`` array of scripts/setup (its comments dropped)."""
    match = re.search(r"^apt_packages=\((.*?)^\)", script, re.M | re.S)
    if not match:
        raise ValueError("no apt_packages=( ... ) array in scripts/setup")
    return [word for line in match.group(1).splitlines() for word in line.split("#", 1)[0].split()]


def parse_depends(output):
    """``{package: [[alternative, ...], ...]}`` from ``apt-cache depends --recurse`` output.

    Each dependency is a list of alternatives (``|Depends:`` lines continue into the next
    line); an alternative is ``(name, providers)``, with the providers apt lists under a
    virtual package (``<debconf-2.0>``) or a provided one.
    """
    graph, package, group = {}, None, []
    for line in output.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            package = _plain(line)
            graph.setdefault(package, [])
            continue
        match = re.match(r"^ (\||\s)(Depends|PreDepends): (.+)$", line)
        if match and package is not None:
            group.append((match.group(3).strip(), []))
            if match.group(1) != "|":
                graph[package].append(group)
                group = []
        elif line.startswith("    ") and package is not None and (group or graph[package]):
            last = group[-1] if group else graph[package][-1][-1]
            last[1].append(_plain(line.strip()))
    return graph


def closure(roots, graph):
    """The packages an install of ``roots`` brings, by the dependency ``graph`` of :func:`parse_depends`.

    Of alternatives apt takes the first it knows (a real package first in the list), as on
    a machine that has none of them yet; of a virtual package's providers any may be the one
    apt picks, so all count.
    """
    seen, todo = set(), [_plain(r) for r in roots]
    while todo:
        package = todo.pop()
        if package in seen:
            continue
        seen.add(package)
        for group in graph.get(package, []):
            for name, providers in group:
                if not name.startswith("<") and _plain(name) in graph:
                    todo.append(_plain(name))
                    break
                if name.startswith("<") and providers:
                    todo.extend(providers)
                    break
    return seen


def base_packages(output):
    """Essential and Priority: required packages from ``dpkg-query -W -f '${Package} ${Essential} ${Priority}\\n'``."""
    found = set()
    for line in output.splitlines():
        fields = line.split(" ")  # the Essential field is empty for most packages
        if len(fields) == 3 and (fields[1] == "yes" or fields[2] == "required"):
            found.add(_plain(fields[0]))
    return found


def parse_owners(output, patterns):
    """``{pattern: {package, ...}}`` from ``dpkg -S pattern...`` output ("diversion by" lines skipped)."""
    owned = {pattern: set() for pattern in patterns}
    for line in output.splitlines():
        if line.startswith(("diversion by", "local diversion")) or ": " not in line:
            continue
        packages, path = line.split(": ", 1)
        for pattern in patterns:
            if fnmatch.fnmatchcase(path, pattern):
                owned[pattern] |= {_plain(p) for p in packages.split(", ")}
    return owned


def merged_twins(path):
    """``path`` and its other spelling under merged /usr (``/bin/ip`` and ``/usr/bin/ip``)."""
    for usr, root in MERGED:
        if path.startswith(usr):
            return [path, root + path[len(usr):]]
        if path.startswith(root):
            return [path, usr + path[len(root):]]
    return [path]


# ---------------------------------------------------------------- running apt and dpkg


def depends_output(packages):
    return subprocess.run(APT_CACHE_DEPENDS + sorted(packages), capture_output=True, text=True, check=True).stdout


def base_packages_output():
    return subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Essential} ${Priority}\\n"],
                          capture_output=True, text=True, check=True).stdout


def owners(patterns):
    """``{pattern: {package, ...}}`` for files installed here (one dpkg -S for all; unknown ones get an empty set)."""
    patterns = sorted(set(patterns))
    done = subprocess.run(["dpkg", "-S", *patterns], capture_output=True, text=True, check=False)
    return parse_owners(done.stdout, patterns)
