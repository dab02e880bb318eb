# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Judgements of what came back: the disk guard's answer, a nixos-anywhere run's exit, and the
role's other checks (the SSH key, the host key offered, the pinned login, the build, the installed system).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._nixos_anywhere.arguments import _truth


def disk_check(host: str, disks: Sequence[str], rc: int, stdout: str, stderr: str) -> dict[str, Any]:
    """Reads the target's answer to the disk guard (``present PATH``, ``missing PATH``,
    ``by-id LINK -> DEVICE`` lines); returns ``ok``, ``missing``, ``by_id`` and a ``message``."""
    present, missing_seen, by_id = set(), set(), []
    for line in (stdout or "").splitlines():
        kind, _sep, rest = line.partition(" ")
        if kind == "present":
            present.add(rest)
        elif kind == "missing":
            missing_seen.add(rest)
        elif kind == "by-id":
            by_id.append(rest)
    if rc != 0:
        return {"ok": False, "missing": [], "by_id": by_id, "message": (
            "Could not check the disks of %s over SSH (exit %d): %s. Nothing was written to it."
            % (host, rc, (stderr or "").strip() or "no output"))}
    # A disk the answer does not mention counts as missing: the check must not pass on a garbled answer.
    missing = [disk for disk in disks if disk not in present or disk in missing_seen]
    if not missing:
        return {"ok": True, "missing": [], "by_id": by_id,
                "message": "%s has every disk its disko configuration names: %s." % (host, ", ".join(disks))}
    held = "; ".join(by_id) if by_id else "nothing (no /dev/disk/by-id there)"
    return {"ok": False, "missing": missing, "by_id": by_id, "message": (
        "%s has no block device %s, which its disko configuration names; nothing was partitioned. "
        "/dev/disk/by-id there holds: %s. Name the disk by one of those paths in the flake (or in nixos_anywhere_disks)."
        % (host, ", ".join(missing), held))}


def outcome(rc: int, stdout: str, stderr: str, executable: str, what: str, timeout: object) -> dict[str, str]:
    """What a nixos-anywhere run under ``timeout`` ended as: ``kind`` (ok, timeout, not_started,
    failed) and a ``message`` with the last lines of its output."""
    out_lines = (stdout or "").splitlines()
    err_lines = (stderr or "").splitlines()
    tail = " | ".join(out_lines[-10:] + err_lines[-15:])
    if rc == 0:
        return {"kind": "ok", "message": "nixos-anywhere installed %s." % what}
    if rc in (124, 137):
        return {"kind": "timeout", "message": "nixos-anywhere did not finish within %s s (killed) installing %s. Last output: %s"
                % (timeout, what, tail)}
    # coreutils timeout exits 126/127 itself, saying so, when it cannot execute the program; an
    # exit 127 after any other output is nixos-anywhere's own (set -e after a command not found).
    own = [line for line in err_lines if line.strip() and not line.startswith("timeout: failed to run command")]
    if rc in (126, 127) and not (stdout or "").strip() and not own:
        return {"kind": "not_started", "message": "nixos-anywhere (%s) could not be started (exit %d): %s"
                % (executable, rc, (stderr or "").strip() or "no output")}
    hint = (" Exit 127 means a command nixos-anywhere ran was not found (on the target, or in its own PATH)."
            if rc == 127 else "")
    return {"kind": "failed", "message": "nixos-anywhere failed (exit %d) installing %s.%s Last output: %s" % (rc, what, hint, tail)}


def key_check(result: Mapping[str, Any], key: str) -> dict[str, Any]:
    """Whether ``ssh-keygen -y -P ''`` read the -i key without a passphrase (a skipped check: no key, ok)."""
    if result.get("skipped") or int(result.get("rc", 0)) == 0:
        return {"ok": True, "message": ""}
    return {"ok": False, "message": (
        "nixos_anywhere_ssh_key %s cannot be read without a passphrase (ssh-keygen -y: %s). nixos-anywhere needs an "
        "unencrypted -i key: give one, or leave nixos_anywhere_ssh_key empty and load the key into ssh-agent "
        "(SSH_AUTH_SOCK). Nothing was contacted." % (key, str(result.get("stderr") or "").strip()))}


def offered_keys(lines: Sequence[str]) -> list[str]:
    """The host keys in ssh-keyscan's lines (``host type base64``), as ``type base64``, each once."""
    found = []
    for line in lines:
        if re.match(r"^\s*(#|$)", line):
            continue
        key = re.sub(r"^\S+\s+(\S+)\s+(\S+).*$", r"\1 \2", line)
        if key not in found:
            found.append(key)
    return found


def host_key_offer(scan: Mapping[str, Any], expected: Sequence[str]) -> dict[str, Any]:
    """What the target offered against what its installer reported: ``offered``, ``ok``, ``host_key`` (the first
    offered key that was expected) and ``fingerprint`` (on a mismatch, each non-empty side to fingerprint)."""
    offered = offered_keys(list(scan.get("stdout_lines") or []))
    matching = [key for key in offered if key in expected]
    sides = [] if matching else [{"label": label, "text": "\n".join(keys)}
                                 for label, keys in (("offered", offered), ("expected", list(expected))) if keys]
    return {"offered": offered, "ok": bool(matching), "host_key": matching[0] if matching else None, "fingerprint": sides}


def host_key_mismatch(fingerprints: Mapping[str, Any], offer: Mapping[str, Any], scan: Mapping[str, Any], expected: Sequence[str],
                      target: str, port: object) -> str:
    """The message of a host key mismatch, with the keys' fingerprints where ssh-keygen gave them."""
    printed = {item["item"]["label"]: item["stdout_lines"] for item in fingerprints.get("results") or []
               if "stdout_lines" in item}
    if offer["offered"]:
        offered = "offered " + "; ".join(printed.get("offered", offer["offered"]))
    else:
        offered = "offered no host key (ssh-keyscan: %s)" % str(scan.get("stderr") or "").strip()
    return ("Host key mismatch: %s port %s %s, but its installer reported %s. Nothing was sent to it. Another machine may "
            "hold the address, or the connection is intercepted."
            % (target, port, offered, "; ".join(printed.get("expected", list(expected)))))


def login_check(login: Mapping[str, Any], destination: str, port: object) -> dict[str, Any]:
    """Whether the pinned login succeeded, and what to say when it did not."""
    rc = int(login.get("rc", -1))
    if rc == 0:
        return {"ok": True, "message": ""}
    return {"ok": False, "message": (
        "Could not log in to %s port %s with its host key pinned to the installer's (exit %d): %s. Nothing else was "
        "sent to it." % (destination, port, rc, str(login.get("stderr") or "").strip()))}


def installed_check(status: Mapping[str, Any], host: str, refind: Mapping[str, Any], expected_system: str,
                    verify: object = True) -> dict[str, Any]:
    """Whether the installed system was found after the reboot, and (with ``verify``) runs the expected system:
    ``ok``, ``message`` and ``found`` (its state, system and final address, for the role's result).

    ``status`` is host_status's registered result (skipped when only a port wait was made), ``refind`` the
    decision of :func:`logins.refind` (where it was looked for, for how long), ``host`` the inventory name.
    """
    mac = refind.get("mac") or ""
    who = "%s (MAC %s)" % (host, mac) if mac else str(host)
    if status.get("skipped"):
        # Only the port was waited for, at the address given (no MAC to look for, nothing to verify).
        return {"ok": True, "message": "", "found": {"ip": refind.get("address"), "address_source": "address"}}
    found = {"state": status.get("state"), "current_system": status.get("current_system"), "ip": status.get("ip"),
             "address_source": status.get("address_source"), "waited": status.get("waited")}
    if status.get("failed"):
        return {"ok": False, "found": found, "message": (
            "Could not check the installed system of %s after the reboot: %s"
            % (who, str(status.get("msg") or "host_status failed").strip()))}
    state = status.get("state")
    if state == "absent":
        where = ("by its MAC and at its installer's address %s" % refind.get("last_address") if refind.get("by_mac")
                 else "at %s" % refind.get("address"))
        return {"ok": False, "found": found, "message": (
            "The installed system of %s was not found %s within %s s after the reboot: %s. The install itself ended; "
            "check the machine's console, that it boots from its disk, and that it joins this segment."
            % (who, where, refind.get("wait"), status.get("reason") or "nothing answered"))}
    if state == "installed" or not _truth(verify):
        return {"ok": True, "message": "", "found": found}
    return {"ok": False, "found": found, "message": (
        "After the install, %s at %s is %s, not installed: it runs %s (os %s), expected %s."
        % (who, status.get("ip"), state, status.get("current_system") or "an unknown system", status.get("os_id") or "unknown",
           status.get("expected_system") or expected_system))}
