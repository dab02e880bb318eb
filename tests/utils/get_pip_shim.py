# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stands in for get-pip.py when ansible-test bootstraps pip in its virtual environments.

ansible-test downloads get-pip.py from a host outside the Python package index,
which closed networks cannot reach; it first looks for a cached copy, and
scripts/test puts this file there. It installs the requested packages with the
pip wheel that CPython's ensurepip bundles (or Debian's python-wheels), so only
the package index is needed.
"""

from __future__ import annotations

import glob
import os
import sys

GET_PIP_ONLY_FLAGS = ("--no-setuptools", "--no-wheel")


def bundled_pip_wheel():
    import ensurepip

    candidates = glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl"))
    candidates += glob.glob("/usr/share/python-wheels/pip-*.whl")
    if not candidates:
        sys.exit("no bundled pip wheel found: install python3-venv (Debian/Ubuntu) or a CPython with ensurepip")
    return sorted(candidates)[-1]


def main():
    sys.path.insert(0, bundled_pip_wheel())
    from pip._internal.cli.main import main as pip_main

    arguments = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_FLAGS]
    return pip_main(["install"] + arguments)


if __name__ == "__main__":
    sys.exit(main())
