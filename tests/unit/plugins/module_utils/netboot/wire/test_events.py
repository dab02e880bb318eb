# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Event names and boot stages are spelled in wire/events.py only.

Every string constant of every file under ``plugins/`` is read with ``ast``
(docstrings aside); one equal to an event name outside ``wire/events.py`` is
a second spelling, which a rename would miss and a grep for the constant
would not find. The few words that are also something else (a TFTP transfer's
outcome, Ansible's ``failed`` result key, a counter) are listed with their
meaning, each where it occurs, and a listed one that no longer occurs fails
too. The checker is tested on sources made to break the rule, so it can fail.
"""

from __future__ import annotations

import ast
import json
import pathlib

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import events

PLUGINS = pathlib.Path(__file__).resolve().parents[6] / "plugins"
HOME = pathlib.Path("module_utils/_netboot/wire/events.py")

# (file under plugins/, word): what the word means there instead of an event.
OTHER_MEANINGS = {
    ("module_utils/_netboot/serve/tftp_session.py", events.FAILED): "a TFTP transfer's outcome and TftpEvent.kind",
    ("module_utils/_netboot/decide/tftp_transfer.py", events.FAILED): "a TFTP transfer's outcome",
    ("module_utils/_provision.py", events.FAILED): "Ansible's failed key of a task result, and a message when none is given",
    ("module_utils/_nixos_anywhere/outcome.py", events.FAILED): "the kind of an install's outcome",
    ("module_utils/_nixos_anywhere/outcome.py", events.OFFERED): "the host keys a target offered over SSH",
    ("module_utils/_netboot/state/registry.py", events.FAILED): "a failed host's reason when none is given",
    ("module_utils/_netboot/decide/trust.py", events.IMPOSTOR): "a verdict of the trust check (the event names the refusal it leads to)",
    ("module_utils/_netboot/serve/server.py", events.DHCP_IGNORED): "the counter of DHCP requests not answered",
    ("module_utils/_netboot/serve/server6.py", events.DHCP_IGNORED): "the counter of DHCP requests not answered",
}


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the constants that are docstrings (of the module, a class or a function)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def spellings(source: str, names: frozenset = events.ALL) -> list[tuple[int, str]]:
    """``(line, name)`` of every string constant of ``source`` equal to an event name, docstrings aside."""
    tree = ast.parse(source)
    skip = docstrings(tree)
    return sorted((node.lineno, node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names and id(node) not in skip)


def scan(root: pathlib.Path = PLUGINS) -> tuple[list[str], set[tuple[str, str]]]:
    """Sentences naming each second spelling under ``root``, and the listed other meanings that were met."""
    problems, met = [], set()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative == HOME:
            continue
        for line, name in spellings(path.read_text(encoding="utf-8")):
            if (relative.as_posix(), name) in OTHER_MEANINGS:
                met.add((relative.as_posix(), name))
                continue
            problems.append("plugins/%s:%d spells the event %r; use events.%s (module_utils/_netboot/wire/events.py)"
                            % (relative.as_posix(), line, name, constant_of(name)))
    return problems, met


def constant_of(name: str) -> str:
    return next(key for key, value in vars(events).items() if key.isupper() and value == name)


def test_event_names_are_spelled_in_events_only():
    problems, met = scan()
    assert problems == []
    assert met == set(OTHER_MEANINGS), "listed in OTHER_MEANINGS but no longer there: %s" % sorted(set(OTHER_MEANINGS) - met)


@pytest.mark.parametrize("source", [
    'registry.record(mac, "dhcp_refused", reason=reason)\n',
    'STAGES = ("offered", "ipxe_served")\n',
    'if host.get("state") == "known":\n    pass\n',
    'emit({"event": "stop_requested"})\n',
    'class A:\n    """Doc."""\n    HINTS = {"initrd_served": "text"}\n',
])
def test_checker_finds_a_spelled_out_event(source, tmp_path):
    (tmp_path / "module_utils").mkdir()
    (tmp_path / "module_utils" / "_thing.py").write_text(source, encoding="utf-8")
    problems, met = scan(tmp_path)
    assert problems and "plugins/module_utils/_thing.py:" in problems[0] and "use events." in problems[0], problems
    assert met == set()


def test_checker_leaves_docstrings_comments_and_other_words():
    source = '"""Records phoned_home."""\n# "offered" in a comment\ndef f():\n    """offered"""\n    return "offered_once", "phoned_home_at"\n'
    assert spellings(source) == []


def test_stages_are_the_progress_states_in_boot_order():
    from ansible_collections.nixie.metal.plugins.module_utils._netboot.state import registry
    assert registry.PROGRESS == (events.KNOWN,) + events.BOOT_STAGES
    assert registry.STATES[-1] == events.FAILED


def test_wire_values_stay_the_same():
    # The JSON wait_for_agent and the playbook read: a rename of a value breaks them, so it is pinned here.
    assert json.dumps(events.BOOT_STAGES) == '["offered", "ipxe_served", "script_served", "kernel_served", "initrd_served", "phoned_home"]'
    assert {events.SERVED[kind] for kind in ("kernel", "initrd")} == {"kernel_served", "initrd_served"}
    assert events.TFTP == {"started": "ipxe_started", "finished": "ipxe_served", "failed": "ipxe_failed", "refused": "tftp_refused"}
    assert json.loads(json.dumps(sorted(events.ALL))) == sorted(events.ALL)
