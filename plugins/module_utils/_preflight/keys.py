# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SSH key the run logs in with: the key file it is given, or else a key in an SSH agent.

nixos-anywhere passes the key file to ssh with ``-i`` and cannot ask for a passphrase, so the
key must load without one (``ssh-keygen -y -P ''``). Without a key file, ssh uses the agent
that SSH_AUTH_SOCK names, which ``sudo`` drops unless told to keep it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping

from ansible_collections.nixie.metal.plugins.module_utils._preflight import report

SUDO_HINT = ("sudo dropped SSH_AUTH_SOCK: run sudo --preserve-env=SSH_AUTH_SOCK ansible-playbook ..., "
             "or set nixie_ssh_key to an unencrypted private key")
NO_KEY_HINT = ("set nixie_ssh_key to an unencrypted private key whose public key the installer and your "
               "systems authorize, or load the key into an ssh-agent (ssh-add) and keep SSH_AUTH_SOCK")


def key_file_row(path: str, returncode: int, stderr: str | None) -> report.Row:
    """The verdict on a key file from ``ssh-keygen -y -P '' -f PATH``'s exit code and error output."""
    if returncode == 0:
        return report.passed(report.SSH_KEY, "%s loads without a passphrase" % path)
    text = (stderr or "").strip()
    if "incorrect passphrase" in text:
        return report.failed(report.SSH_KEY, "%s is encrypted with a passphrase" % path,
                             "nixos-anywhere cannot ask for a passphrase: set nixie_ssh_key to an unencrypted key, "
                             "or leave nixie_ssh_key unset and load the key into an ssh-agent (ssh-add %s)" % path)
    if "bad permissions" in text or "UNPROTECTED PRIVATE KEY FILE" in text:
        return report.failed(report.SSH_KEY, "%s is readable by others, so ssh ignores it" % path, "chmod 600 %s" % path)
    if "No such file" in text:
        return report.failed(report.SSH_KEY, "%s does not exist" % path, "set nixie_ssh_key to the path of a private key")
    if "Permission denied" in text:
        return report.failed(report.SSH_KEY, "%s cannot be read" % path,
                             "the run reads it as root; make it readable to root (or copy it where root can read it)")
    last = text.splitlines()[-1] if text else "exit code %s" % returncode
    return report.failed(report.SSH_KEY, "%s is not a private key ssh can load (%s)" % (path, last),
                         "set nixie_ssh_key to an OpenSSH private key file (not the .pub)")


def agent_row(auth_sock: str | None, sudo_user: str | None, returncode: int | None = None, stdout: str | None = "",
              stderr: str | None = "") -> report.Row:
    """The verdict on an ssh-agent from the environment and ``ssh-add -L``'s answer."""
    if not auth_sock:
        if sudo_user:
            return report.failed(report.SSH_KEY, "no nixie_ssh_key, and no SSH_AUTH_SOCK: running under sudo (for %s)"
                                 % sudo_user, SUDO_HINT)
        return report.failed(report.SSH_KEY, "no nixie_ssh_key and no ssh-agent (SSH_AUTH_SOCK is unset)", NO_KEY_HINT)
    keys = [line for line in (stdout or "").splitlines() if line.strip()]
    if returncode == 0 and keys:
        comments = [line.split(None, 2)[2] if len(line.split(None, 2)) > 2 else line.split()[0] for line in keys]
        return report.passed(report.SSH_KEY, "ssh-agent at %s holds %d key(s): %s" % (auth_sock, len(keys), ", ".join(comments)))
    if returncode == 1:
        return report.failed(report.SSH_KEY, "the ssh-agent at %s holds no key" % auth_sock, "ssh-add your key, or set nixie_ssh_key")
    return report.failed(report.SSH_KEY, "the ssh-agent at %s does not answer (%s)" % (auth_sock, (stderr or "").strip() or "exit %s" % returncode),
                         "start the agent again and ssh-add your key, or set nixie_ssh_key"
                         + ("; under sudo, the user's socket must be passed on (sudo --preserve-env=SSH_AUTH_SOCK)" if sudo_user else ""))


def _run(argv: list[str], env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 255, "", str(exc)
    return result.returncode, result.stdout, result.stderr


def read_key(path: str | None = None, environ: Mapping[str, str] | None = None) -> report.Row:
    """The ``ssh-key`` row for the key file ``path``, or without one, for the agent of ``environ``."""
    environ = os.environ if environ is None else environ
    if path:
        path = os.path.expanduser(path)
        if shutil.which("ssh-keygen") is None:
            return report.failed(report.SSH_KEY, "ssh-keygen is not installed", "apt-get install openssh-client")
        returncode, dummy, stderr = _run(["ssh-keygen", "-y", "-P", "", "-f", path])
        return key_file_row(path, returncode, stderr)
    auth_sock = environ.get("SSH_AUTH_SOCK")
    if not auth_sock:
        return agent_row(None, environ.get("SUDO_USER"))
    if shutil.which("ssh-add") is None:
        return report.failed(report.SSH_KEY, "ssh-add is not installed", "apt-get install openssh-client")
    returncode, stdout, stderr = _run(["ssh-add", "-L"], env=dict(environ))
    return agent_row(auth_sock, environ.get("SUDO_USER"), returncode, stdout, stderr)


def ssh_client_row(found: Mapping[str, str | None]) -> report.Row:
    """The verdict on the OpenSSH client programs the run calls: ``found`` maps each name to its path or None."""
    missing = sorted(name for name, path in found.items() if path is None)
    if missing:
        return report.failed(report.SSH_CLIENT, "%s not installed" % ", ".join(missing), "apt-get install openssh-client")
    return report.passed(report.SSH_CLIENT, ", ".join("%s" % found[name] for name in sorted(found)))


def read_ssh_client() -> report.Row:
    return ssh_client_row({name: shutil.which(name) for name in ("ssh", "ssh-keyscan")})
