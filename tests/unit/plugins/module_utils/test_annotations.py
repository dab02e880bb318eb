# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every function under plugins/module_utils/ says what it takes and what it returns.

Read with ``ast``: every parameter of every ``def`` (nested ones and methods included;
``self`` and ``cls`` aside) has an annotation, and so has the return. Files written
before the rule are listed in NOT_YET_ANNOTATED, an allow-list that may only shrink:
a listed file that has become complete fails too, so its entry is removed with the work.
The checker is tested on source made to break the rule, so this test can fail.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

MODULE_UTILS = pathlib.Path(__file__).resolve().parents[4] / "plugins" / "module_utils"

# Allow-list, shrinking: files (relative to plugins/module_utils/) that still have functions
# without annotations. Annotate a file, then delete its line; never add one.
NOT_YET_ANNOTATED = frozenset((
    "_netboot/serve/http.py",
))


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
    name = str(path.relative_to(MODULE_UTILS))
    gaps = unannotated(path.read_text(encoding="utf-8"))
    if name in NOT_YET_ANNOTATED:
        assert gaps, "%s is annotated now: remove it from NOT_YET_ANNOTATED" % name
    else:
        assert not gaps, "plugins/module_utils/%s: annotate these parameters and returns: %s" % (name, "; ".join(gaps))


def test_the_allow_list_names_only_files_that_exist():
    names = {str(path.relative_to(MODULE_UTILS)) for path in files()}
    assert sorted(NOT_YET_ANNOTATED - names) == []
