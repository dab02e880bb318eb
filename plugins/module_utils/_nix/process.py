# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running nix: the one place that starts a process, and the deadline several calls share."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

from ansible_collections.nixie.metal.plugins.module_utils._nix.errors import INSTALL_HINT, NixError, NixNotFound, NixTimeout
from ansible_collections.nixie.metal.plugins.module_utils._nix.output import NixLog

# What runs a nix command line: run() itself, or a test's table of answers.
Runner = Callable[..., tuple[int, str, str]]


# --- processes ---------------------------------------------------------------------


def run(argv: Sequence[str], cwd: str | None = None, env: Mapping[str, str] | None = None,
        timeout: float | None = None) -> tuple[int, str, str]:
    """Run argv in its own process group; (rc, stdout, stderr) as text.

    On timeout the whole group gets SIGTERM, then SIGKILL after 10 s, and NixTimeout
    carries what nix had printed.
    """
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True)
    except FileNotFoundError as exc:
        raise NixNotFound("cannot run %s: %s. %s" % (argv[0], exc.strerror, INSTALL_HINT), cmd=argv) from None
    except OSError as exc:
        raise NixError("cannot run %s: %s" % (argv[0], exc), cmd=argv) from None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc, signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        log = NixLog().feed_text(stderr.decode("utf-8", "replace"))
        what = " ".join([os.path.basename(argv[0])] + [a for a in argv[1:] if a in ("build", "eval")])
        tail = "\n".join(list(log.tail)[-10:])
        raise NixTimeout(
            "%s ran out of time after %s seconds and was stopped%s" % (what, timeout, (": last log lines:\n" + tail) if tail else ""),
            rc=proc.returncode, log_tail=log.tail, cmd=argv) from None
    finally:
        if proc.poll() is None:
            _kill_group(proc, signal.SIGKILL)
            proc.wait()
    return proc.returncode, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")


def _kill_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


class Deadline:
    """The time left of one timeout shared by several nix calls (None: no limit)."""

    def __init__(self, seconds: float | None) -> None:
        self.end = None if not seconds else time.monotonic() + seconds

    def left(self) -> float | None:
        if self.end is None:
            return None
        return max(0.001, self.end - time.monotonic())
