# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What host_status's parts share: the error every check raises, and the one way they run a program.

Private to the collection: the interface may change without notice.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from typing import Any


class HostStatusError(Exception):
    """The check itself could not be made; the message says why and what to do."""

    def __init__(self, msg: str, **result: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.result = result


class HostKeyMismatch(HostStatusError):
    """The machine at the address showed a host key none of the known ones: it is not the machine expected there."""


def run(argv: Sequence[str], timeout: float | None = None, env: Mapping[str, str] | None = None) -> tuple[int | None, str, str]:
    """(rc, stdout, stderr); rc None on timeout. Raises FileNotFoundError when argv[0] is missing."""
    try:
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, errors="replace",
                              timeout=timeout, stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode("utf-8", "replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return None, out, err
    return proc.returncode, proc.stdout, proc.stderr
