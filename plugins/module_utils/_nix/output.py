# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What nix prints: its ``--log-format internal-json`` stream, ``nix build --json``, and the netboot artifacts of a built installer."""

from __future__ import annotations

import json
import os
import re
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._nix.errors import NixError

# Nix's activity and result types of the internal-json log format (src/libutil/logging.hh).
ACT_BUILD = 105
ACT_SUBSTITUTE = 108
RES_BUILD_LOG_LINE = 101

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_WILL = re.compile(r"^(?:these (\d+)|this) (derivations?|paths?) will be (built|fetched)")
_STORE_NAME = re.compile(r"^(?:.*/)?[0-9a-z]{32}-(.+?)(?:\.drv)?$")


# --- nix's output ---------------------------------------------------------------


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def store_name(path: str | None) -> str | None:
    """'/nix/store/<hash>-hello-2.12.drv' -> 'hello-2.12'."""
    match = _STORE_NAME.match(path or "")
    return match.group(1) if match else path


class NixLog:
    """Reads nix's ``--log-format internal-json`` stderr, line by line.

    Keeps what was built and fetched, the error messages, the dry-run's lists of what
    would be built or fetched, and a bounded tail of readable lines for failures.
    """

    def __init__(self, keep: int = 40) -> None:
        self.built = []
        self.fetched = []
        self.errors = []
        self.warnings = []
        self.will_build = []
        self.will_fetch = []
        self.tail = deque(maxlen=keep)
        self.build_lines = {}  # derivation path -> deque of its last log lines
        self._activity = {}  # activity id -> derivation path
        self._listing = None

    def feed_text(self, text: str | None) -> NixLog:
        for line in (text or "").splitlines():
            self.feed(line)
        return self

    def feed(self, line: str) -> None:
        if line.startswith("@nix "):
            try:
                event = json.loads(line[5:])
            except ValueError:
                event = None
            if isinstance(event, dict):
                self._event(event)
                return
        self._message(strip_ansi(line))

    def _event(self, event: dict[str, Any]) -> None:
        action = event.get("action")
        if action == "msg":
            level = event.get("level", 0)
            if level is None or level <= 2:
                for line in strip_ansi(str(event.get("msg", ""))).splitlines():
                    self._message(line)
        elif action == "start":
            kind = event.get("type")
            fields = event.get("fields") or []
            if kind == ACT_BUILD and fields:
                drv = str(fields[0])
                self.built.append(drv)
                self._activity[event.get("id")] = drv
                self.tail.append("building %s" % drv)
            elif kind == ACT_SUBSTITUTE and fields:
                path = str(fields[0])
                self.fetched.append(path)
                self.tail.append("fetching %s" % path)
        elif action == "result" and event.get("type") == RES_BUILD_LOG_LINE:
            fields = event.get("fields") or [""]
            drv = self._activity.get(event.get("id"), "")
            text = strip_ansi(str(fields[0])).rstrip()
            self.build_lines.setdefault(drv, deque(maxlen=10)).append(text)
            self.tail.append("%s> %s" % (store_name(drv) or "builder", text))

    def _message(self, line: str) -> None:
        if not line.strip():
            return
        match = _WILL.match(line)
        if match:
            self._listing = self.will_build if match.group(3) == "built" else self.will_fetch
            self.tail.append(line)
            return
        if self._listing is not None and line.startswith("  /"):
            self._listing.append(line.strip())
            return
        self._listing = None
        self.tail.append(line)
        stripped = line.strip()
        if stripped.startswith("error:"):
            self.errors.append(stripped)
        elif stripped.startswith("warning:"):
            self.warnings.append(stripped)
        elif self.errors and line.startswith((" ", "\t")):
            # continuation of a multi-line error (traces, "last N log lines")
            self.errors[-1] += "\n" + line.rstrip()

    def failure_message(self, what: str, rc: int | None) -> str:
        """One message for a failed nix call: nix's errors, then the failing builders' last lines."""
        parts = ["%s failed (exit %s)" % (what, rc)]
        if self.errors:
            parts.append("\n".join(self.errors))
        else:
            parts.append("\n".join(list(self.tail)[-15:]) or "nix printed nothing on stderr")
        for drv, lines in self.build_lines.items():
            if drv and any(drv in e for e in self.errors):
                parts.append("last log lines of %s:\n%s" % (store_name(drv), "\n".join(lines)))
        return ": ".join(parts[:2]) + "".join("\n" + p for p in parts[2:])


def parse_build_json(stdout: str | None) -> list[dict[str, Any]]:
    """``nix build --json`` stdout -> list of {drv_path, outputs}.

    Entries are ``{"drvPath": ..., "outputs": {"out": ...}}``; a plain store path is
    ``{"path": ...}`` and becomes ``{"drv_path": None, "outputs": {"out": path}}``.
    """
    text = (stdout or "").strip()
    if not text:
        return []
    # tolerate anything printed before the JSON document
    start = text.find("[")
    if start < 0:
        raise ValueError("nix printed no JSON list: %s" % text[:200])
    data = json.loads(text[start:])
    results = []
    for entry in data:
        if "drvPath" in entry:
            results.append({"drv_path": entry["drvPath"], "outputs": dict(entry.get("outputs") or {})})
        elif "path" in entry:
            results.append({"drv_path": None, "outputs": {"out": entry["path"]}})
        else:
            raise ValueError("unexpected entry in nix's JSON: %r" % (entry,))
    return results


def match_results(installables: Sequence[str], planned: Sequence[dict[str, Any]] | None,
                  built: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Map each installable to its {drv_path, outputs}.

    ``planned``: the dry-run's entries, one per installable in order (None to skip the
    dry-run, allowed with a single installable). ``built``: the real build's entries, in
    any order. Raises NixError when the two disagree (the flake changed in between).
    """
    if planned is None:
        if len(installables) != 1 or len(built) != 1:
            raise NixError("cannot match %d results to %d installables without a dry run" % (len(built), len(installables)))
        return {installables[0]: built[0]}
    if len(planned) != len(installables):
        raise NixError("nix's dry run returned %d entries for %d installables" % (len(planned), len(installables)))
    by_drv = {}
    by_out = {}
    for entry in built:
        if entry["drv_path"]:
            by_drv[entry["drv_path"]] = entry
        for path in entry["outputs"].values():
            by_out[path] = entry
    result = {}
    for installable, plan in zip(installables, planned):
        entry = by_drv.get(plan["drv_path"]) if plan["drv_path"] else by_out.get(plan["outputs"].get("out"))
        if entry is None:
            raise NixError(
                "%s evaluated to %s before the build but the build did not produce it: the flake changed "
                "while nix was running. Run again." % (installable, plan["drv_path"] or plan["outputs"].get("out")))
        outputs = dict(plan["outputs"])
        outputs.update(entry["outputs"])
        result[installable] = {"drv_path": entry["drv_path"], "outputs": outputs}
    return result


# --- netboot artifacts ------------------------------------------------------------


def netboot_artifacts(kernel_out: str, ramdisk_out: str, toplevel: str, kernel_file: str, kernel_params: Iterable[str],
                      system: str | None = None) -> dict[str, Any]:
    """What a network boot server needs from a NixOS installer's store paths."""
    params = [p for p in kernel_params if p]
    init = toplevel + "/init"
    result = {
        "kernel": "%s/%s" % (kernel_out, kernel_file),
        "initrd": ramdisk_out + "/initrd",
        "init": init,
        "toplevel": toplevel,
        "kernel_params": params,
        "cmdline": " ".join(["init=" + init] + params),
    }
    if system:
        result["system"] = system
    return result


def read_toplevel(toplevel: str) -> tuple[str, list[str], str | None]:
    """(kernel file name, kernel parameters, system) read from a built NixOS system.

    NixOS writes ``kernel`` (a link to ``<kernel>/<kernelFile>``), ``kernel-params``
    and, in recent releases, ``system`` into every system's top-level directory.
    """
    kernel_link = os.readlink(os.path.join(toplevel, "kernel"))
    with open(os.path.join(toplevel, "kernel-params"), encoding="utf-8") as handle:
        params = handle.read().split()
    system = None
    system_file = os.path.join(toplevel, "system")
    if os.path.isfile(system_file):
        with open(system_file, encoding="utf-8") as handle:
            system = handle.read().strip() or None
    return os.path.basename(kernel_link), params, system
