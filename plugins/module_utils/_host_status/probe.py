# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What does the machine run? One SSH connection, and the system its flake would build.

One connection (the OpenSSH client, BatchMode) runs one command that prints ``/etc/os-release``
and the target of ``/run/current-system``. It is a new connection with the collection's pinned
options (``_ssh``), whatever the operator's ssh configuration shares. The expected system is
``nix eval FLAKE#nixosConfigurations.ATTR.config.system.build.toplevel.outPath`` (nothing is
built, with the same input overrides as nix_build). Parsing and command lines are pure;
:func:`ssh_probe` and :func:`evaluate_expected_system` are the edges.

Private to the collection: the interface may change without notice.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils import _ssh
from ansible_collections.nixie.metal.plugins.module_utils._nix import (
    calls as nix_calls, commands as nix_commands, errors as nix_errors, process as nix_process, version as nix_version)
from ansible_collections.nixie.metal.plugins.module_utils._host_status.common import HostKeyMismatch, HostStatusError, run

#: Seconds for the SSH connection, and for ``nix eval`` of the expected system.
DEFAULT_TIMEOUT = 10
DEFAULT_EVAL_TIMEOUT = 600
#: The name known_hosts entries are written under (ssh -o HostKeyAlias), so the port and the
#: address do not matter to the lookup.
HOST_KEY_ALIAS = "nixie-host-status-target"

BEGIN = "nixie-host-status-begin"
END = "nixie-host-status-end"
#: Runs under the remote user's login shell (POSIX sh on the installer, bash on NixOS).
#: GNU and busybox ``readlink -f`` print a path even when it does not exist, hence the test.
REMOTE_COMMAND = (
    "echo %(begin)s; "
    "echo os-release:; "
    "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null; "
    "echo; echo current-system:; "
    "if [ -e /run/current-system ]; then readlink -f /run/current-system; else echo; fi; "
    "echo %(end)s"
) % {"begin": BEGIN, "end": END}

SSH_INSTALL_HINT = "install the OpenSSH client on the controller (Debian/Ubuntu: apt-get install openssh-client)"

_KEY_TYPE = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5) text -> dict. Handles comments, blank lines, single/double quotes, escapes."""
    values = {}
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip()
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            quote = value[0]
            value = value[1:-1]
            if quote == '"':
                value = re.sub(r'\\([\\"$`])', r"\1", value)
        values[key] = value
    return values


def parse_probe_output(stdout: str) -> tuple[dict[str, str], str | None] | None:
    """Output of :data:`REMOTE_COMMAND` -> (os_release dict, current_system or None).

    Returns None when the markers are missing (the command did not run as written:
    a forced command, a restricted shell, something that is not a POSIX system).
    """
    text = stdout or ""
    start = text.find(BEGIN + "\n")
    end = text.find(END, start + 1) if start >= 0 else -1
    if start < 0 or end < 0:
        return None
    body = text[start + len(BEGIN) + 1:end]
    head, sep, tail = body.partition("current-system:\n")
    if not sep or not head.startswith("os-release:\n"):
        return None
    os_release = parse_os_release(head[len("os-release:\n"):])
    current = tail.strip().splitlines()[0].strip() if tail.strip() else ""
    return os_release, normalize_store_path(current) or None


def normalize_store_path(path: str | None) -> str | None:
    """Strip whitespace and trailing slashes ('/nix/store/x-sys/' -> '/nix/store/x-sys')."""
    path = (path or "").strip()
    while len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


def known_hosts_lines(keys: Iterable[str], alias: str = HOST_KEY_ALIAS) -> list[str]:
    """known_hosts lines for "type base64 [comment]" keys, all under ``alias``."""
    lines = []
    for key in keys:
        fields = str(key).split()
        if len(fields) < 2 or not _KEY_TYPE.match(fields[0]) or not _BASE64.match(fields[1]):
            raise HostStatusError(
                "known_host_keys entry %r is not an SSH public key of the form 'TYPE BASE64' "
                "(for example 'ssh-ed25519 AAAAC3Nz...'), as in /etc/ssh/ssh_host_*_key.pub" % key)
        lines.append("%s %s %s" % (alias, fields[0], fields[1]))
    return lines


def ssh_command(ssh: str, ip: str, known_hosts_file: str, user: str = "root", port: int = 22, key: str | None = None,
                strict: bool = False, timeout: float = DEFAULT_TIMEOUT, remote: str = REMOTE_COMMAND,
                ssh_version: Sequence[int] | None = None) -> list[str]:
    """argv of the one SSH call; ``strict``: only the keys in known_hosts_file are accepted.

    ``ssh_version``: the client's (major, minor), for :func:`_ssh.pinned_options`. Without ``strict`` the
    login still gets those options: the first key it accepts must be the one the address shows, not a
    shared master connection's.
    """
    argv = [ssh, "-T", "-x", "-a"]
    argv += _ssh.option_args(_ssh.pinned_options(ssh_version) + _ssh.known_hosts_options(known_hosts_file, strict=strict))
    argv += [
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=%d" % max(1, int(timeout)),
        "-o", "ConnectionAttempts=1",
        "-o", "ServerAliveInterval=%d" % max(1, int(timeout)),
        "-o", "ServerAliveCountMax=2",
        "-o", "HostKeyAlias=%s" % HOST_KEY_ALIAS,
        "-o", "LogLevel=ERROR",
        "-p", str(port),
        "-l", user,
    ]
    if key:
        argv += ["-i", key, "-o", "IdentitiesOnly=yes"]
    return argv + ["--", ip, remote]


_ABSENT_PATTERNS = (
    ("closed", re.compile(r"connect to host .* port \d+: Connection refused")),
    ("unreachable", re.compile(r"connect to host .* port \d+: (Connection timed out|Operation timed out|No route to host|"
                               r"Network is unreachable|Host is unreachable|Host is down)")),
    ("unreachable", re.compile(r"Could not resolve hostname")),
)
_REACHABLE_PATTERNS = (
    ("auth", re.compile(r"Permission denied \(|Too many authentication failures|no matching host key type|"
                        r"Unable to negotiate")),
    ("host_key", re.compile(r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|"
                            r"No \S+ host key is known for")),
)


def classify_ssh_failure(stderr: str) -> str:
    """ssh's stderr after exit status 255 -> closed|unreachable|auth|host_key|other."""
    for kind, pattern in _ABSENT_PATTERNS + _REACHABLE_PATTERNS:
        if pattern.search(stderr or ""):
            return kind
    return "other"


def last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def find_ssh(executable: str | None = None) -> str:
    found = shutil.which(executable or "ssh")
    if not found:
        raise HostStatusError("%s not found: %s" % (executable or "ssh", SSH_INSTALL_HINT))
    return found


def ssh_probe(ssh: str, ip: str, user: str = "root", port: int = 22, key: str | None = None,
              known_host_keys: Sequence[str] | None = None, timeout: float = DEFAULT_TIMEOUT,
              runner: Callable[..., tuple[int | None, str, str]] = run, ssh_version: Sequence[int] | None = None) -> dict[str, Any]:
    """Connect once and read os-release and /run/current-system. Returns the probe dict for :func:`classify`.

    Raises HostStatusError when known_host_keys were given and the machine showed another key.
    """
    strict = bool(known_host_keys)
    lines = known_hosts_lines(known_host_keys) if strict else []
    with tempfile.TemporaryDirectory(prefix="nixie-host-status-") as tmp:
        known_hosts = os.path.join(tmp, "known_hosts")
        with open(known_hosts, "w", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in lines))
        try:
            argv = ssh_command(ssh, ip, known_hosts, user=user, port=port, key=key, strict=strict, timeout=timeout,
                               ssh_version=ssh_version)
        except ValueError as exc:
            raise HostStatusError("cannot check %s: %s; nothing was sent" % (ip, exc), ip=ip) from None
        try:
            rc, out, err = runner(argv, timeout=3 * max(1, int(timeout)) + 5)
        except FileNotFoundError:
            raise HostStatusError("%s not found: %s" % (ssh, SSH_INSTALL_HINT)) from None
    probe = {"outcome": "ok", "stderr": err, "rc": rc, "os_id": None, "current_system": None, "os_release": {}}
    if rc is None:
        probe["outcome"] = "timeout"
        return probe
    if rc == 255 and BEGIN not in out:
        kind = classify_ssh_failure(err)
        if kind == "host_key":
            raise HostKeyMismatch(
                "the SSH host key of %s is none of known_host_keys, so the machine at that address is not the "
                "one expected (another machine took the address, it was reinstalled with new keys, or someone is "
                "in the middle); nothing was sent. ssh said: %s" % (ip, last_line(err)), ip=ip)
        probe["outcome"] = kind
        return probe
    parsed = parse_probe_output(out)
    if parsed is None:
        probe["outcome"] = "garbled"
        return probe
    os_release, current = parsed
    probe["os_release"] = os_release
    probe["os_id"] = os_release.get("ID") or None
    probe["current_system"] = current
    return probe


def evaluate_expected_system(flake: str, attribute: str, nix: str | None = None, timeout: float = DEFAULT_EVAL_TIMEOUT,
                             runner: nix_process.Runner = nix_process.run, cwd: str | None = None,
                             override_inputs: Mapping[Any, Any] | None = None, agent_flake: str | None = None,
                             warnings: list[str] | None = None) -> str | None:
    """The store path the flake builds for the host (``nix eval``, nothing is built).

    Evaluated with the run's input overrides (``_nix.overrides.run_overrides``), as nix_build builds it:
    the same path, and no fetch of an input the overrides replace.
    """
    try:
        nix_path = nix_version.find_nix(nix)
    except nix_errors.NixError as exc:
        raise HostStatusError("cannot evaluate %s#%s: %s" % (flake, attribute, exc.msg)) from None
    installable = nix_commands.configuration_installable(flake, attribute, "config.system.build.toplevel.outPath")
    try:
        result = nix_calls.evaluate(nix_path, installable, cwd=cwd, timeout=timeout, runner=runner,
                                    override_inputs=override_inputs, agent_flake=agent_flake)
    except nix_errors.NixTimeout as exc:
        raise HostStatusError(exc.msg, cmd=exc.cmd) from None
    except nix_errors.NixError as exc:
        raise HostStatusError("%s\nCheck nixosConfigurations.%s in the flake %s." % (exc.msg, attribute, flake),
                              cmd=exc.cmd) from None
    path = result["value"]
    if not isinstance(path, str) or not path.startswith("/"):
        raise HostStatusError("nix eval of %s gave %r, not a store path" % (installable, path), cmd=result["cmd"])
    if warnings is not None:
        warnings.extend("nix: %s" % warning for warning in result["warnings"])
    return normalize_store_path(path)
