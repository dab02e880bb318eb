# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every function under plugins/module_utils/ says what it takes and what it returns.

Read with ``ast``: every parameter of every ``def`` (nested ones and methods included;
``self`` and ``cls`` aside) has an annotation, and so has the return. No file is
exempt. The checker is tested on source made to break the rule, so this test can fail.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

MODULE_UTILS = pathlib.Path(__file__).resolve().parents[4] / "plugins" / "module_utils"


def unannotated(source):
    """``line name(what)`` for every parameter or return of a def in ``source`` without an annotation."""
    gaps = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        args = node.args
        params = args.posonlyargs + args.args + args.kwonlyargs + [a for a in (args.vararg, args.kwarg) if a]
        missing = [a.arg for a in params if a.annotation is None and a.arg not in ("self", "cls")]
        if node.returns is None:
            missing.append("return")
        if missing:
            gaps.append("%d %s(%s)" % (node.lineno, node.name, ", ".join(missing)))
    return gaps


def files():
    return sorted(MODULE_UTILS.rglob("*.py"))


def test_the_checker_finds_each_kind_of_gap():
    source = (
        "def plain(a, b: int, *rest, key=1, **more) -> None:\n    pass\n"
        "class C:\n"
        "    def method(self, x: int):\n        def inner(y) -> int:\n            return y\n        return inner\n"
        "    @classmethod\n    def make(cls) -> 'C':\n        return cls()\n"
        "async def waits(*, timeout: float) -> None:\n    pass\n"
    )
    assert unannotated(source) == ["1 plain(a, key, rest, more)", "4 method(return)", "5 inner(y)"]
    assert unannotated("def done(a: int, /, *b: str, c: bool = False, **d: object) -> int:\n    return a\n") == []


def test_the_module_utils_are_found():
    names = {str(path.relative_to(MODULE_UTILS)) for path in files()}
    assert "_argspec.py" in names and "_netboot/wire/dhcp.py" in names and len(names) > 50


@pytest.mark.parametrize("path", files(), ids=lambda path: str(path.relative_to(MODULE_UTILS)))
def test_every_signature_is_annotated(path):
    gaps = unannotated(path.read_text(encoding="utf-8"))
    assert not gaps, "plugins/module_utils/%s: annotate these parameters and returns: %s" % (
        path.relative_to(MODULE_UTILS), "; ".join(gaps))
