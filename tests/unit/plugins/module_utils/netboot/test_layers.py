# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's layers, read from its imports: each folder of _netboot/ leans only on the ones below it.

wire (codecs) <- decide (pure decisions) <- state (the registry) <- serve
(sockets, loops, processes); docs/architecture.md says why. Every import of
every file is read with ``ast``, function-level ones included, so a late
import cannot hide a step upwards. The checker is tested on a tree made to
break each rule, so this test can fail.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = "ansible_collections.nixie.metal.plugins.module_utils._netboot"
MODULE_UTILS = "ansible_collections.nixie.metal.plugins.module_utils"
MODULES = "ansible_collections.nixie.metal.plugins.modules"
ENGINE = pathlib.Path(__file__).resolve().parents[5] / "plugins" / "module_utils" / "_netboot"

# What each layer may import from the engine (itself included).
ALLOWED = {
    "wire": {"wire"},
    "decide": {"wire", "decide"},
    "state": {"wire", "decide", "state"},
    "serve": {"wire", "decide", "state", "serve"},
}
# Helpers outside the engine that it may use: pure, and without Ansible (checked below too).
SHARED = {MODULE_UTILS + "._hosts"}
# Standard modules that wait or talk to the outside: not in the layers that decide.
LOOPS_AND_PROCESSES = {"asyncio", "select", "selectors", "subprocess", "threading", "multiprocessing"}


def module_name(path, root):
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE] + parts)


def imports_of(source, name, is_package=False):
    """Every module ``source`` imports, as absolute dotted names (``from P import m``: ``P.m`` when it is a module)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[:len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(base + "." + alias.name for alias in node.names)
    return found


def read_tree(root):
    """``{module name: (source, is_package)}`` of every .py file under ``root``."""
    return {module_name(path, root): (path.read_text(encoding="utf-8"), path.name == "__init__.py")
            for path in sorted(root.rglob("*.py"))}


def layer_of(name):
    rest = name[len(PACKAGE) + 1:] if name.startswith(PACKAGE + ".") else ""
    return rest.split(".", 1)[0] if rest else None


def violations(tree, known_modules=None):
    """Sentences naming each file and import that breaks a rule; empty when the layering holds."""
    known = set(tree) | set(known_modules or ())
    problems = []
    graph = {}
    for name, (source, is_package) in sorted(tree.items()):
        rest = name[len(PACKAGE) + 1:] if name != PACKAGE else ""
        if rest and "." not in rest and not is_package:
            problems.append("%s: a file at the top of _netboot/; put it in the layer it belongs to" % name)
            continue
        layer = layer_of(name)
        if layer is not None and layer not in ALLOWED:
            problems.append("%s: %r is not a layer (%s)" % (name, layer, ", ".join(ALLOWED)))
            continue
        edges = graph.setdefault(name, set())
        for target in sorted(imports_of(source, name, is_package)):
            top = target.split(".", 1)[0]
            if target == PACKAGE:
                continue
            if top == "ansible" or target.startswith(MODULES):
                problems.append("%s imports %s: the engine stays free of Ansible and of the modules" % (name, target))
            elif target.startswith(PACKAGE + "."):
                if target not in known:
                    continue  # a name imported from a module, not a module
                edges.add(target)
                wanted = layer_of(target)
                if layer is not None and wanted is not None and wanted not in ALLOWED[layer]:
                    problems.append("%s (%s) imports %s (%s): %s may import only %s"
                                    % (name, layer, target, wanted, layer, ", ".join(sorted(ALLOWED[layer]))))
            elif target.startswith(MODULE_UTILS + ".") and target.count(".") == MODULE_UTILS.count(".") + 1:
                if target not in SHARED:
                    problems.append("%s imports %s: outside the engine only %s may be used"
                                    % (name, target, ", ".join(sorted(SHARED))))
            elif top in LOOPS_AND_PROCESSES and layer in ("wire", "decide", "state"):
                problems.append("%s (%s) imports %s: waiting, loops and processes belong in serve" % (name, layer, top))
    problems.extend("import circle: %s" % " -> ".join(circle) for circle in circles(graph))
    return [each.replace(MODULE_UTILS + ".", "") for each in problems]


def circles(graph):
    """Each import circle of ``graph`` ({module: modules it imports}) once, as a path back to its start."""
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_engine_keeps_its_layers():
    tree = read_tree(ENGINE)
    assert {layer_of(name) for name in tree} >= set(ALLOWED)
    assert violations(tree) == []


def test_shared_helpers_stay_free_of_ansible():
    for name in SHARED:
        base = ENGINE.parent / name.rsplit(".", 1)[1]
        files = sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
        assert files, name
        for path in files:
            found = imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
            # A shared package's files may use each other, and nothing else of the collection.
            outside = [each for each in found if each.split(".")[0] == "ansible"
                       or (each.startswith(MODULE_UTILS + ".") and not each.startswith(name + ".") and each != name)]
            assert not outside, (path, outside)


def _tree(**files):
    return {PACKAGE + "." + dotted: (source, dotted.count(".") == 0) for dotted, source in files.items()}


def _ok_tree(**extra):
    files = {
        "wire": "", "decide": "", "state": "", "serve": "",
        "wire.codec": "import struct\n",
        "decide.rule": "from %s.wire import codec\n" % PACKAGE,
        "state.store": "from %s.decide.rule import something\n" % PACKAGE,
        "serve.loop": "import asyncio\nfrom %s.state import store\n" % PACKAGE,
    }
    files.update(extra)
    return _tree(**files)


def test_checker_passes_a_tree_that_keeps_the_rules():
    assert violations(_ok_tree()) == []


@pytest.mark.parametrize("dotted, source, says", [
    ("wire.codec", "from %s.serve import loop\n" % PACKAGE, "_netboot.wire.codec (wire) imports _netboot.serve.loop (serve)"),
    ("wire.codec", "from %s.decide.rule import x\n" % PACKAGE, "wire may import only wire"),
    ("decide.rule", "from %s.state import store\n" % PACKAGE, "decide may import only decide, wire"),
    ("decide.rule", "def late():\n    from %s.serve.loop import x\n" % PACKAGE, "decide may import only decide, wire"),
    ("state.store", "import %s.serve.loop\n" % PACKAGE, "state may import only decide, state, wire"),
    ("decide.rule", "import asyncio\n", "waiting, loops and processes belong in serve"),
    ("wire.codec", "from ansible.module_utils.basic import AnsibleModule\n", "free of Ansible"),
    ("serve.loop", "from ansible_collections.nixie.metal.plugins.modules import pxe_server\n", "free of Ansible and of the modules"),
    ("serve.loop", "from %s import _wol\n" % MODULE_UTILS, "outside the engine only"),
    ("wire.codec", "from . import other\n", "import circle"),
    ("oddity", "", "a file at the top of _netboot/"),
])
def test_checker_names_each_violation(dotted, source, says):
    extra = {dotted: source}
    if source.startswith("from . import other"):
        extra["wire.other"] = "from %s.wire import codec\n" % PACKAGE
    tree = _ok_tree(**extra)
    if dotted == "oddity":
        tree[PACKAGE + ".oddity"] = ("", False)
    found = violations(tree)
    assert found and any(says in each for each in found), found


def test_checker_reads_relative_imports():
    assert imports_of("from ..serve import loop\n", PACKAGE + ".wire.codec") >= {PACKAGE + ".serve.loop"}
    assert imports_of("from .codec import x\n", PACKAGE + ".wire", is_package=True) >= {PACKAGE + ".wire.codec"}
