# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One atheris (libFuzzer) process fuzzing one target of targets.py: fuzz_target.py TARGET [libFuzzer flags] [corpus dirs].

The collection's code is instrumented for coverage; an exception that escapes the target, or an
input slower than -timeout, ends the process with the input saved under -artifact_prefix. run.py
starts this and reads its statistics; it is rarely run by hand.
"""

from __future__ import annotations

import sys

import atheris  # pylint: disable=import-error

with atheris.instrument_imports(include=["ansible_collections.nixie.metal"]):
    import targets  # pylint: disable=import-error


def main():
    target = targets.TARGETS[sys.argv[1]]

    def one_input(data):
        target(data)

    atheris.Setup([sys.argv[0]] + sys.argv[2:], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
