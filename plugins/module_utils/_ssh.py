# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ssh options every ssh call of the collection gives first, so the operator's ssh configuration cannot undo them.

ssh keeps the first value it obtains for an option, and options on the command line are read
before ``~/.ssh/config`` and ``/etc/ssh/ssh_config``. A configuration may still widen or skip the
host key check through options the calls never set themselves: a master connection shared by
``ControlMaster``/``ControlPath`` (a login through it checks no host key at all), ``KnownHostsCommand``
and ``VerifyHostKeyDNS`` (both add accepted keys). :func:`pinned_options` turns them off;
:func:`known_hosts_options` pins the accepted keys to one file. docs/design/trust.md says why each.

Pure functions, except :func:`read_version` (runs ``ssh -V``). No Ansible imports.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Sequence
from typing import Any

#: The OpenSSH release that added KnownHostsCommand. An older ssh stops on the option ("Bad
#: configuration option"), and has no KnownHostsCommand to override either.
KNOWN_HOSTS_COMMAND_SINCE = (8, 5)

#: Turn off what would let the operator's configuration skip or widen the host key check.
ISOLATING_OPTIONS = ("ControlMaster=no", "ControlPath=none", "VerifyHostKeyDNS=no")

# "OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15", "OpenSSH_for_Windows_9.5p1, LibreSSL 3.8.2".
_VERSION = re.compile(r"\bOpenSSH_(?:for_Windows_)?(\d+)\.(\d+)")

# ssh splits a UserKnownHostsFile value at whitespace, reads quotes, and (8.4+) expands %-tokens and ${VAR}.
_UNSAFE_PATH = re.compile(r"[\s\"'\\%$]")


def parse_ssh_version(text: str | None) -> tuple[int, int] | None:
    """(major, minor) from the output of ``ssh -V``, or None when it names no OpenSSH release."""
    match = _VERSION.search(text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def pinned_options(version: Sequence[int] | None) -> list[str]:
    """The options every ssh call of the collection gives first, for an OpenSSH ``version`` ((major, minor) or None).

    None (a version that could not be told) is treated as older than 8.5: KnownHostsCommand=none would stop
    an older ssh, so it is left out (see :func:`version_warning`).
    """
    options = list(ISOLATING_OPTIONS)
    if version is not None and tuple(version) >= KNOWN_HOSTS_COMMAND_SINCE:
        options.append("KnownHostsCommand=none")
    return options


def known_hosts_options(known_hosts: str, strict: bool = True) -> list[str]:
    """Options that make ``known_hosts`` the only source of accepted host keys.

    ``strict``: a key not in the file stops ssh; else (an empty file, nothing known yet) the first key
    is accepted and written there. Raises ValueError when ssh would not read ``known_hosts`` as that one path.
    """
    problem = known_hosts_path_problem(known_hosts)
    if problem:
        raise ValueError(problem)
    return [
        "StrictHostKeyChecking=%s" % ("yes" if strict else "accept-new"),
        "UserKnownHostsFile=%s" % known_hosts,
        "GlobalKnownHostsFile=/dev/null",
        "CheckHostIP=no",
        "UpdateHostKeys=no",
    ]


def known_hosts_path_problem(path: str) -> str:
    """What is wrong with ``path`` as the one UserKnownHostsFile, or '' when nothing is."""
    path = str(path)
    if not path.startswith("/"):
        return "the known hosts file %r is not an absolute path" % path
    if _UNSAFE_PATH.search(path):
        return ("the known hosts file %r holds whitespace, a quote, a backslash, %% or $, which ssh would split or "
                "expand: set TMPDIR to a directory whose path holds none of them" % path)
    return ""


def option_args(options: Iterable[str]) -> list[str]:
    """['-o', option, ...] for ssh's command line."""
    args = []
    for option in options:
        args += ["-o", option]
    return args


def version_warning(ssh: str, text: str | None, version: Sequence[int] | None) -> str:
    """What a version that could not be told costs, or '' when it was told."""
    if version is not None:
        return ""
    shown = " ".join((text or "").split())[:200] or "no output"
    return ("could not tell the OpenSSH version of %s from 'ssh -V' (%s): treated as older than 8.5, so "
            "KnownHostsCommand=none is not given and a KnownHostsCommand in the ssh configuration still adds "
            "accepted host keys" % (ssh, shown))


def client_options(ssh: str, version_text: str | None, known_hosts: str | None = None) -> dict[str, Any]:
    """Everything a caller without Python needs (the nixos_anywhere role, through a filter), from ``ssh -V``'s text.

    ``options``: :func:`pinned_options`, then :func:`known_hosts_options` when ``known_hosts`` is given;
    ``args``: the same as ssh arguments; ``version``: "major.minor" or None; ``warning``: :func:`version_warning`;
    ``problem``: what is wrong with ``known_hosts`` ('' when nothing is; ``options`` then lacks the pinning).
    """
    version = parse_ssh_version(version_text)
    options = pinned_options(version)
    problem = known_hosts_path_problem(known_hosts) if known_hosts else ""
    if known_hosts and not problem:
        options += known_hosts_options(known_hosts)
    return {
        "options": options,
        "args": option_args(options),
        "version": "%d.%d" % version if version else None,
        "warning": version_warning(ssh, version_text, version),
        "problem": problem,
    }


def read_version(ssh: str, timeout: float = 10) -> str:
    """The text ``ssh -V`` prints (on stderr), or '' when it cannot be run."""
    try:
        proc = subprocess.run([ssh, "-V"], check=False, capture_output=True, text=True, errors="replace",
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (proc.stderr or "") + (proc.stdout or "")
