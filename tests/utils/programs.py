# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which programs and system files the collection's code runs or reads, found in the code itself.

The programs_installed integration target checks each of them against what scripts/setup
installs; this module only reads source text (no apt, no files outside the tree), so
its unit tests feed it small inputs.

What it sees:

* Python (ast): the argv of ``subprocess.run/Popen/call/check_call/check_output`` and of
  the lab helpers that take an argv (``lab.run``, ``lab.popen``, ``rack.wrap``...):
  the first element when it is a literal, a module constant or a local name bound to
  one (``argv = ["qemu-img", ...]``, ``binary = shutil.which("nginx") or "/usr/sbin/nginx"``);
  ``shutil.which("x")`` names; and every string constant that is a whole absolute path
  under /usr, /bin, /sbin or /lib (firmware such as /usr/share/OVMF/OVMF_CODE_4M.fd).
* Shell scripts: the first word of every simple command (builtins, keywords, the
  script's own functions and words holding a ``$`` left out), ``$(...)`` and
  ``` `...` ``` inside them, here-documents that are shell scripts, and the same
  absolute paths.
* YAML (playbooks, roles, molecule): the argv or command line of ``command``,
  ``shell`` and ``raw`` tasks, literal elements of a Jinja list (``{{ ['ip', ...] }}``)
  included, and the same absolute paths.

In every argv, ``ip netns exec NS CMD...``, ``sh -c SCRIPT``, ``env VAR=x CMD`` and
``timeout N CMD`` also yield the command they run. What is built at run time from
variables is invisible here: the integration target lists those by hand.
"""

from __future__ import annotations

import ast
import os
import re
import shlex

import yaml

#: A program named by itself (looked up on PATH).
NAME_RE = re.compile(r"[A-Za-z0-9][\w.+-]*")
#: An absolute path a package installs, below a bin, lib or share directory (not /usr/local);
#: shell-style wildcards are allowed (dpkg -S matches them).
PATH_RE = re.compile(r"/(?:usr/)?(?:bin|sbin|lib|lib64|libexec|share)/[\w.+*@-][\w.+*@/-]*")

#: Calls whose first argument is an argv (the helpers of tests/lab, bench/ and plugins included).
ARGV_CALLS = frozenset({"run", "Popen", "call", "check_call", "check_output", "popen", "wrap", "runner"})
#: Names that hold an argv by convention, even when it is run elsewhere (``argv = machine + [...]``).
ARGV_NAMES = frozenset({"argv", "cmd", "command"})
#: Calls whose first argument is the program itself.
PROGRAM_CALLS = frozenset({"which", "execv", "execvp", "execvpe", "create_subprocess_exec"})

SHELLS = frozenset({"sh", "bash", "dash"})
#: Words that start a command line but are not the program it runs.
SHELL_PREFIXES = frozenset({"if", "then", "else", "elif", "do", "while", "until", "!", "{", "}", "time", "exec", "nohup"})
#: Lines that are not commands at all (for and case lists, function headers, tests).
SHELL_SKIP = frozenset({"for", "case", "select", "function", "fi", "done", "esac", "[", "[[", "in"})
SHELL_BUILTINS = frozenset({
    ":", ".", "source", "alias", "break", "cd", "command", "continue", "declare", "echo", "eval", "exit",
    "export", "false", "getopts", "hash", "kill", "let", "local", "mapfile", "printf", "pwd", "read",
    "readarray", "readonly", "return", "set", "shift", "test", "trap", "true", "type", "typeset", "ulimit",
    "umask", "unset", "wait",
})
COMMAND_MODULES = frozenset(prefix + name for prefix in ("", "ansible.builtin.", "ansible.legacy.")
                            for name in ("command", "shell", "raw"))


def is_program(word):
    """Whether a literal word names a program: a bare name or an absolute system path."""
    return bool(NAME_RE.fullmatch(word) or PATH_RE.fullmatch(word))


def programs_of_argv(argv):
    """The programs an argv runs: its first word, and the command it wraps.

    ``argv`` is a list of strings, with None for elements not known before run time.
    """
    if not argv or argv[0] is None:
        return set()
    head, rest = argv[0], list(argv[1:])
    found = {head}
    if head == "ip" and rest[:2] == ["netns", "exec"]:
        found |= programs_of_argv(rest[3:])
    elif os.path.basename(head) in SHELLS and rest[:1] == ["-c"] and len(rest) > 1 and rest[1] is not None:
        found |= {name for name, dummy in shell_commands(rest[1])}
    elif head == "env":
        while rest and rest[0] is not None and (rest[0].startswith("-") or "=" in rest[0]):
            if rest.pop(0) in ("-u", "--unset", "-C", "--chdir"):
                rest = rest[1:]
        found |= programs_of_argv(rest)
    elif head == "timeout":
        while rest and rest[0] is not None and rest[0].startswith("-"):
            rest.pop(0)
        found |= programs_of_argv(rest[1:])
    return {name for name in found if is_program(name)}


# ---------------------------------------------------------------- shell


def _matching(text, start, opening, closing):
    """Index of the ``closing`` that balances the ``opening`` just before ``start``."""
    depth, i, quote = 1, start, None
    while i < len(text):
        char = text[i]
        if quote:
            if char == quote:
                quote = None
            elif char == "\\" and quote == '"':
                i += 1
        elif char in "'\"":
            quote = char
        elif char == "\\":
            i += 1
        elif char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return len(text)


def _simple_commands(text):
    """Split shell text into simple commands: ``(words, line)`` lists, quotes removed.

    Words holding an expansion keep a ``$``; ``$(...)``, ``<(...)`` and backquotes are
    split on their own and their commands returned too. A ``)`` that closes nothing ends
    a case pattern, which is dropped. Here-document bodies are returned as commands
    ``(["<<", body], line)`` for the caller to judge.
    """
    commands, words, word, line, depth, in_array = [], [], None, 1, 0, False
    heredocs = []  # delimiters whose bodies start on the next line
    start_line = 1
    i = 0

    def end_word():
        nonlocal word
        if in_array:  # the elements of name=(...) are data
            word = None
        if word is not None:
            if not words:
                nonlocal start_line
                start_line = line
            words.append(word)
            match = re.match(r"^\d*<<(-?)(.*)$", word)
            if match and not word.startswith("<<<"):
                heredocs.append(match.group(2) or None)  # None: the next word is the delimiter
            elif heredocs and heredocs[-1] is None:
                heredocs[-1] = word
            word = None

    piped = []  # commands ended by "|" since the last other separator: alternatives of a case pattern?

    def end_command(case_pattern=False, pipe=False):
        end_word()
        if case_pattern:
            commands[:] = [c for c in commands if not any(c is p for p in piped)]
        elif words:
            commands.append((list(words), start_line))
            if pipe:
                piped.append(commands[-1])
        if not pipe:
            piped.clear()
        words.clear()

    def nested(inner, inner_line):
        for inner_words, offset in _simple_commands(inner):
            commands.append((inner_words, inner_line + offset - 1))

    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            if text[i + 1] == "\n":
                line += 1
            else:
                word = (word or "") + text[i + 1]
            i += 2
            continue
        if char == "#" and word is None:
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        if char == "\n" and in_array:
            end_word()
            line += 1
            i += 1
            continue
        if char == "\n":
            end_command()
            line += 1
            i += 1
            for delimiter in heredocs:
                if delimiter is None:
                    continue
                body_start, body_line, current = i, line, ""
                while i < len(text):
                    end = text.find("\n", i)
                    end = len(text) if end < 0 else end
                    current = text[i:end]
                    i = end + 1
                    line += 1
                    if current.strip() == delimiter:
                        break
                commands.append((["<<", text[body_start:max(body_start, i - len(current) - 1)]], body_line))
            heredocs.clear()
            continue
        if char in " \t":
            end_word()
        elif char == "'":
            end = text.find("'", i + 1)
            end = len(text) if end < 0 else end
            line += text.count("\n", i, end)
            word = (word or "") + text[i + 1:end]
            i = end
        elif char == '"':
            j, piece = i + 1, ""
            while j < len(text) and text[j] != '"':
                if text[j] == "\\":
                    piece += text[j + 1:j + 2]
                    j += 2
                    continue
                if text.startswith("$(", j) and not text.startswith("$((", j):
                    end = _matching(text, j + 2, "(", ")")
                    nested(text[j + 2:end], line + text.count("\n", i, j))
                    piece += "$()"
                    j = end + 1
                    continue
                piece += text[j]
                j += 1
            line += text.count("\n", i, j)
            word = (word or "") + piece
            i = j
        elif char in "$<>" and text.startswith("(", i + 1):
            end = _matching(text, i + 2, "(", ")")
            if text.startswith("((", i + 1):  # arithmetic: no command in it
                word = (word or "") + text[i:end + 1]
            else:
                nested(text[i + 2:end], line)
                line += text.count("\n", i, end)
                word = (word or "") + "$()"
            i = end
        elif char == "`":
            end = text.find("`", i + 1)
            end = len(text) if end < 0 else end
            nested(text[i + 1:end], line)
            word = (word or "") + "$()"
            i = end
        elif char == "$" and text.startswith("{", i + 1):
            end = _matching(text, i + 2, "{", "}")
            word = (word or "") + text[i:end + 1]
            i = end
        elif char == "&" and ((word or "").endswith((">", "<")) or text.startswith(">", i + 1)):
            word = (word or "") + char  # >&2, 2>&1, &>file: a redirection, not a background job
        elif char in ";&|":
            end_command(pipe=char == "|" and not text.startswith("||", i) and not text.startswith("|", i + 1))
        elif char == "(" and (word or "").endswith("="):
            end_word()
            in_array = True
        elif char == ")" and in_array:
            end_word()
            in_array = False
        elif char == "(":
            end_command()
            depth += 1
        elif char == ")":
            end_command(case_pattern=depth == 0)
            depth = max(0, depth - 1)
        else:
            word = (word or "") + char
        i += 1
    end_command()
    return commands


def _is_shell_script(body, words):
    """Whether a here-document is a shell script: a shell #! line, or written to a *.sh file."""
    first = body.lstrip().split("\n", 1)[0]
    return bool(re.match(r"^#!\S*/(?:env\s+)?(?:ba|da)?sh\b", first)) or any(w.endswith(".sh") for w in words)


def shell_commands(text, paths=False):
    """``(program, line)`` for every program a shell script runs (see the module docstring).

    With ``paths``, also ``(path, line)`` for every word that is an absolute system path.
    """
    functions = set(re.findall(r"^\s*(?:function\s+)?([\w-]+)\s*\(\)", text, re.M))
    found, previous = [], []
    for words, line in _simple_commands(text):
        if words[0] == "<<":
            if _is_shell_script(words[1], previous):
                found += [(name, line + offset - 1) for name, offset in shell_commands(words[1], paths)]
            continue
        previous = words
        if paths:
            found += [(w, line) for w in words if PATH_RE.fullmatch(w)]
        rest = list(words)
        while rest and (rest[0] in SHELL_PREFIXES or re.match(r"^[A-Za-z_]\w*(\[[^]]*\])?\+?=", rest[0])
                        or re.match(r"^\d*[<>&]", rest[0])):
            if re.match(r"^\d*[<>&]+$", rest[0]) and len(rest) > 1:
                rest.pop(0)  # a redirection's target
            rest.pop(0)
        if not rest or rest[0] in SHELL_SKIP or rest[0] in SHELL_BUILTINS or rest[0] in functions:
            continue
        argv = [None if "$" in w else w for w in rest]
        found += [(name, line) for name in sorted(programs_of_argv(argv))]
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------- Python


def _call_name(call):
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def _leftmost(node):
    """The first operand of ``a + b + ...``."""
    while isinstance(node, ast.BinOp):
        node = node.left
    return node


def _bindings(scope):
    """Names bound in one scope (module or function, not nested ones) to their possible values."""
    bound = {}

    def bind(target, value):
        if isinstance(target, ast.Name):
            bound.setdefault(target.id, []).append(value)

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Assign):
                for target in child.targets:
                    bind(target, child.value)
            elif isinstance(child, (ast.AnnAssign, ast.NamedExpr)) and child.value is not None:
                bind(child.target, child.value)
            elif isinstance(child, (ast.For, ast.comprehension)) and isinstance(child.iter, (ast.List, ast.Tuple, ast.Set)):
                for element in child.iter.elts:
                    bind(child.target, element)
            visit(child)
    visit(scope)
    return bound


class _PythonScan:
    """Walks one module, keeping the bindings of the module and of the function being read."""

    def __init__(self, tree):
        self.module = _bindings(tree)
        self.found = []
        self.walk(tree, {})

    def walk(self, node, local):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                self.walk(child, _bindings(child))
                continue
            if isinstance(child, ast.Call):
                self.call(child, local)
            elif isinstance(child, ast.Assign) and isinstance(_leftmost(child.value), (ast.List, ast.Name)) \
                    and any(getattr(t, "id", None) in ARGV_NAMES for t in child.targets):
                self.found += [(program, child.lineno) for program in sorted(self.argv(child.value, local))]
            elif isinstance(child, ast.Constant) and isinstance(child.value, str) and PATH_RE.fullmatch(child.value):
                self.found.append((child.value, child.lineno))
            self.walk(child, local)

    def heads(self, node, local, seen=frozenset()):
        """The literal strings ``node`` may evaluate to as a program: a constant, a name bound to one..."""
        if isinstance(node, ast.Constant):
            return {node.value} if isinstance(node.value, str) else set()
        if isinstance(node, (ast.List, ast.Tuple)):
            return self.heads(node.elts[0], local, seen) if node.elts else set()
        if isinstance(node, ast.Starred):
            return self.heads(node.value, local, seen)
        if isinstance(node, ast.BinOp):
            return self.heads(node.left, local, seen)
        if isinstance(node, ast.BoolOp):
            return set().union(*(self.heads(v, local, seen) for v in node.values))
        if isinstance(node, ast.IfExp):
            return self.heads(node.body, local, seen) | self.heads(node.orelse, local, seen)
        if isinstance(node, ast.Name) and node.id not in seen:
            values = local.get(node.id) or self.module.get(node.id) or []
            return set().union(set(), *(self.heads(v, local, seen | {node.id}) for v in values))
        if isinstance(node, ast.Call) and node.args and _call_name(node) in PROGRAM_CALLS | ARGV_CALLS | {"list"}:
            return self.heads(node.args[0], local, seen)
        return set()

    def argv(self, node, local, seen=frozenset()):
        """The programs of an argv expression (a list, a name bound to lists, a command string)."""
        while isinstance(node, ast.BinOp):
            node = node.left
        if isinstance(node, ast.Name):
            if node.id in seen:
                return set()
            values = local.get(node.id) or self.module.get(node.id) or []
            return set().union(set(), *(self.argv(v, local, seen | {node.id}) for v in values))
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                return programs_of_argv(shlex.split(node.value))
            except ValueError:
                return set()
        if isinstance(node, ast.Call) and _call_name(node) in ARGV_CALLS and node.args:
            return self.argv(node.args[0], local, seen)
        if not isinstance(node, (ast.List, ast.Tuple)) or not node.elts:
            return set()
        rest = [e.value if isinstance(e, ast.Constant) and isinstance(e.value, str) else None for e in node.elts[1:]]
        return set().union(set(), *(programs_of_argv([head] + rest) for head in self.heads(node.elts[0], local)))

    def call(self, call, local):
        name = _call_name(call)
        first = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "args"), None)
        if first is None:
            return
        if name in PROGRAM_CALLS:
            programs = {head for head in self.heads(first, local) if is_program(head)}
        elif name in ARGV_CALLS:
            shell = any(k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value for k in call.keywords)
            if shell and isinstance(first, ast.Constant) and isinstance(first.value, str):
                programs = {program for program, dummy in shell_commands(first.value)}
            else:
                programs = self.argv(first, local)
        else:
            return
        self.found += [(program, call.lineno) for program in sorted(programs)]


def python_programs(source):
    """``(program or path, line)`` for every program and system path a Python module uses."""
    return _PythonScan(ast.parse(source)).found


# ---------------------------------------------------------------- YAML


def _jinja_list(text):
    """The leading literal elements of ``{{ ['ip', 'netns', x, ...] ... }}``, None for the first other one."""
    match = re.match(r"^\s*\{\{-?\s*\[", text)
    if not match:
        return []
    argv, rest = [], text[match.end():]
    while True:
        literal = re.match(r"""\s*(['"])((?:(?!\1).)*)\1\s*(,|\])""", rest)
        if not literal:
            return argv + [None]
        argv.append(literal.group(2))
        if literal.group(3) == "]":
            return argv
        rest = rest[literal.end():]


def _task_programs(module, value):
    """The programs of one command/shell/raw task's arguments (a YAML node)."""
    shell = not module.endswith("command")
    if isinstance(value, yaml.ScalarNode):
        args = {"cmd": value}
    elif isinstance(value, yaml.MappingNode):
        args = {key.value: item for key, item in value.value if isinstance(key, yaml.ScalarNode)}
    else:
        return set()
    argv = args.get("argv")
    if isinstance(argv, yaml.SequenceNode):
        items = [None if not isinstance(i, yaml.ScalarNode) or "{{" in i.value else i.value for i in argv.value]
        return programs_of_argv(items)
    if isinstance(argv, yaml.ScalarNode):
        return programs_of_argv(_jinja_list(argv.value))
    cmd = args.get("cmd")
    if not isinstance(cmd, yaml.ScalarNode) or cmd.value.lstrip().startswith("{{"):
        return set()
    if shell:
        return {name for name, dummy in shell_commands(cmd.value)}
    try:
        words = shlex.split(cmd.value)
    except ValueError:
        return set()
    return programs_of_argv([None if "{{" in w or "$" in w else w for w in words])


def yaml_programs(source):
    """``(program or path, line)`` for the command tasks and the system paths of a YAML file."""
    found = []

    def walk(node, task=False):
        if isinstance(node, yaml.ScalarNode):
            if PATH_RE.fullmatch(node.value):
                found.append((node.value, node.start_mark.line + 1))
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item, task=True)  # tasks are items of a list (tasks:, block:, a task file)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if task and isinstance(key, yaml.ScalarNode) and key.value in COMMAND_MODULES:
                    found.extend((name, key.start_mark.line + 1) for name in sorted(_task_programs(key.value, value)))
                walk(value)

    for document in yaml.compose_all(source, Loader=yaml.SafeLoader):
        if document is not None:
            walk(document)
    return found


# ---------------------------------------------------------------- a tree


def kind_of(path, head):
    """``python``, ``shell``, ``yaml`` or None, from the file name or its #! line."""
    if path.endswith(".py"):
        return "python"
    if path.endswith(".sh"):
        return "shell"
    if path.endswith((".yml", ".yaml")):
        return "yaml"
    if head.startswith("#!"):
        if "python" in head:
            return "python"
        if re.search(r"\b(ba|da)?sh\b", head):
            return "shell"
    return None


def scan_file(path, text):
    """``(program or path, line)`` used by one file, according to its kind (empty for other files)."""
    kind = kind_of(path, text.split("\n", 1)[0])
    if kind == "python":
        return list(dict.fromkeys(python_programs(text)))
    if kind == "shell":
        return shell_commands(text, paths=True)
    if kind == "yaml":
        return list(dict.fromkeys(yaml_programs(text)))
    return []


def scan_tree(root, directories, exclude=()):
    """``{program or path: ["relative/file:line", ...]}`` over the files below ``directories`` of ``root``.

    ``exclude`` holds relative paths of files or directories to leave out.
    """
    uses = {}
    for directory in directories:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, directory)):
            dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", ".venv", ".git")
                                 and os.path.relpath(os.path.join(dirpath, d), root) not in exclude)
            for filename in sorted(filenames):
                relative = os.path.relpath(os.path.join(dirpath, filename), root)
                if relative in exclude:
                    continue
                try:
                    with open(os.path.join(dirpath, filename), encoding="utf-8") as handle:
                        text = handle.read()
                except (UnicodeDecodeError, OSError):
                    continue
                for name, line in scan_file(relative, text):
                    uses.setdefault(name, []).append("%s:%d" % (relative, line))
    return uses
