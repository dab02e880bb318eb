# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Counts the lines of Jinja logic in the YAML under playbooks/ and roles/ of a tree.

    python scripts/jinja_logic.py [ROOT] [-v]

A Jinja expression is every ``{{ }}`` and ``{% %}`` and every bare conditional (the value of
when, until, changed_when, failed_when, break_when and assert's that, inline or as list items).
It is logic unless it is a variable reference (dotted, or indexed by a literal) with at most one
filter or test whose arguments are themselves literals or variable references: so ``x``,
``x | bool``, ``x.y | default(omit)`` and ``x is defined`` are not logic, while arithmetic,
comparisons, and/or/not, ``in``, a conditional expression (``a if b else c``), a function or
method call, a list or dict built in place, a ``{% %}`` statement and a chain of two or more
filters are. A line counts once if any expression on it (or spanning it) is logic.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

CONDITIONAL_KEYS = ("when", "until", "changed_when", "failed_when", "break_when", "that")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_NAME = r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*|\[(?:\d+|S)\])*"
_SIMPLE_ARG = r"(?:%s|S|-?\d+(?:\.\d+)?|true|false|none|True|False|None|\{\}|\[\])" % _NAME
_SIMPLE = re.compile(r"^\s*%s\s*(?:(?:\|\s*|\bis\s+(?:not\s+)?)[\w.]+\s*(?:\(\s*(?:%s\s*(?:,\s*%s\s*)*)?\))?)?\s*$"
                     % (_NAME, _SIMPLE_ARG, _SIMPLE_ARG))


def is_logic(expression: str) -> bool:
    """Whether one Jinja expression is more than a variable reference and one plain filter or test."""
    return not _SIMPLE.match(_STRING.sub("S", expression.replace("\n", " ")))


def logic_lines(text: str) -> set[int]:
    """Line numbers (1-based) of ``text`` that hold Jinja logic."""
    lines = set()
    for match in re.finditer(r"\{%.*?%\}|\{\{(.*?)\}\}", text, re.DOTALL):
        first = text.count("\n", 0, match.start()) + 1
        last = text.count("\n", 0, match.end()) + 1
        if match.group(0).startswith("{%") or is_logic(match.group(1)):
            lines.update(range(first, last + 1))
    rows = text.splitlines()
    for index, row in enumerate(rows):
        found = re.match(r"^(\s*)(?:- )?(%s):\s*(.*)$" % "|".join(CONDITIONAL_KEYS), row)
        if not found:
            continue
        indent, value = len(found.group(1)), found.group(3).strip()
        values = [(index, value)] if value and value not in (">-", "|", ">") else []
        for later in range(index + 1, len(rows)):
            item = re.match(r"^(\s*)- (.*)$", rows[later])
            if not item or len(item.group(1)) < indent:
                break
            values.append((later, item.group(2)))
        for number, expression in values:
            expression = expression.strip().strip("'\"")
            if "{{" not in expression and is_logic(expression):
                lines.add(number + 1)
    return lines


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    args = [arg for arg in argv if arg != "-v"]
    root = Path(args[0] if args else ".")
    total = 0
    for path in sorted(list(root.glob("playbooks/**/*.yml")) + list(root.glob("roles/**/*.yml"))):
        if "meta" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        found = logic_lines(text)
        total += len(found)
        print("%5d  %5d lines  %s" % (len(found), text.count("\n"), path.relative_to(root)))
        if verbose:
            rows = text.splitlines()
            for number in sorted(found):
                print("         %4d: %s" % (number, rows[number - 1].strip()[:110]))
    print("%5d  lines of Jinja logic" % total)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
