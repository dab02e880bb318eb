# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A new site directory from the collection's example, for the site module, without Ansible.

``target_state`` decides whether a directory may be made at a path, ``public_keys`` reads
and checks the user's public keys, ``plan`` reads every file of the new site into memory:
all three only read, so check mode stops after them and a bad input fails before anything
is written. ``write`` then makes the whole directory under a temporary name beside the
target and renames it into place, so a failure leaves nothing behind. ``next_steps`` is
what the user is told to do next. This file is private to the collection.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import glob
import os
import shutil
import stat
import struct
import tempfile

#: What a site is made of, relative to the example directory; authorized_keys is written
#: from the user's keys instead of being copied. execution-environment.yml stays in the
#: collection (docs/execution-environment.md): a first site does not need it.
SITE_FILES = (
    "ansible.cfg",
    "hosts.json",
    "hosts.nixie.yml",
    "flake.nix",
    "provision.yml",
    "collections/requirements.yml",
)
#: Directories copied whole (their *.nix files): the shared NixOS modules and the per-host files.
SITE_DIRS = ("nixos", "hosts")
AUTHORIZED_KEYS = "authorized_keys"

#: OpenSSH public key types (ssh-keygen -t: ed25519, rsa, ecdsa, and the FIDO ones).
KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)

AUTHORIZED_KEYS_HEADER = (
    "# Public SSH keys allowed to log in as root on the installer and the installed machines,\n"
    "# one per line. nixos-anywhere logs in with the matching private key (nixie_ssh_key) or an\n"
    "# SSH agent. Lines starting with # are ignored.\n"
)
NO_KEY_TEXT = (
    "# NO KEY YET: nobody can log in to the installer, so no machine can be installed.\n"
    "# Add yours: the output of `ssh-add -L` (a key in an SSH agent or on a token), or of\n"
    "# `cat ~/.ssh/id_ed25519.pub` after `ssh-keygen -t ed25519`.\n"
)


class SiteError(Exception):
    """A site cannot be made; the message names the path and what to do."""


@dataclasses.dataclass(frozen=True)
class SiteFile:
    """One file of the new site: its path relative to the site, its bytes, its mode."""

    path: str
    content: bytes
    mode: int = 0o644


@dataclasses.dataclass(frozen=True)
class Key:
    """One public key line and the file it came from."""

    line: str
    source: str


def target_state(path: str) -> str:
    """``new`` (nothing there yet) or ``empty`` (an empty directory); else SiteError.

    An existing site is never touched: its hosts.json and keys are the user's work.
    """
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        parent = _nearest_existing(os.path.dirname(path))
        if not os.path.isdir(parent):
            raise SiteError("%s: cannot make the site there: %s is not a directory. Choose another path." % (path, parent))
        if not os.access(parent, os.W_OK | os.X_OK):
            raise SiteError("%s: cannot make the site there: %s is not writable by this user. Choose a path you can "
                            "write to, for example one in your home directory." % (path, parent))
        return "new"
    except OSError as exc:
        raise SiteError("%s: cannot look at it (%s). Choose another path." % (path, exc.strerror))
    if not stat.S_ISDIR(st.st_mode):
        raise SiteError("%s exists and is not a directory. Nothing was changed; choose another path." % path)
    try:
        entries = os.listdir(path)
    except OSError as exc:
        raise SiteError("%s exists and cannot be read (%s). Nothing was changed; choose another path." % (path, exc.strerror))
    if entries:
        shown = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
        raise SiteError("%s exists already and is not empty (%s). Nothing was changed: a site is only made in a new "
                        "or empty directory, so that no hosts.json or key is overwritten. Choose another path, or "
                        "move that directory away first." % (path, shown))
    if not os.access(path, os.W_OK | os.X_OK):
        raise SiteError("%s is an empty directory this user cannot write to. Nothing was changed; choose a path "
                        "you can write to." % path)
    return "empty"


def _nearest_existing(path: str) -> str:
    """The path itself or its closest ancestor that exists (the directories to be made lie below)."""
    path = path or "."
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def parse_public_key(line: str) -> str | None:
    """The reason ``line`` is not an OpenSSH public key, or None when it is one.

    Checked beyond the first word: the base64 must decode into length-prefixed fields that
    fill it exactly, the first being the key's own type name, as in every OpenSSH key; so a
    private key, another type's key or a paste cut short fails.
    """
    fields = line.split()
    if not fields:
        return "empty line"
    if fields[0] not in KEY_TYPES:
        if "PRIVATE KEY" in line:
            return "this is a private key; give the .pub file beside it"
        return "unknown key type %r (expected one of %s)" % (fields[0][:40], ", ".join(KEY_TYPES[:3]) + ", ...")
    if len(fields) < 2:
        return "no key data after %r" % fields[0]
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except (binascii.Error, ValueError):
        return "the key data is not base64"
    parts = []
    rest = blob
    while rest:
        if len(rest) < 4:
            return "the key data is cut short (a line broken in two by a paste?)"
        (length,) = struct.unpack(">I", rest[:4])
        if len(rest) < 4 + length:
            return "the key data is cut short (a line broken in two by a paste?)"
        parts.append(rest[4:4 + length])
        rest = rest[4 + length:]
    if not parts or parts[0] != fields[0].encode("ascii"):
        return "the key data does not match its type %r (edited, or another type's key?)" % fields[0]
    if len(parts) < 2:
        return "the key data is cut short (a line broken in two by a paste?)"
    return None


def public_keys(paths: list[str]) -> list[Key]:
    """The key lines of every file in ``paths``, in order, without repeats; SiteError names the file."""
    keys: list[Key] = []
    seen: set[tuple[str, str]] = set()
    for path in paths:
        try:
            with open(path, "rb") as handle:
                data = handle.read(1024 * 1024)
        except OSError as exc:
            raise SiteError("%s: cannot read this public key (%s). Nothing was made. Make it readable "
                            "(chmod 644 %s), or move it out of the way, then run again."
                            % (path, exc.strerror or exc, path))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SiteError("%s: not a text file, so not an OpenSSH public key. Nothing was made. Move it out of "
                            "the way, then run again." % path)
        found = False
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            reason = parse_public_key(line)
            if reason:
                raise SiteError("%s, line %d: not an OpenSSH public key: %s. Nothing was made. Fix or move the "
                                "file, then run again." % (path, number, reason))
            found = True
            identity = tuple(line.split()[:2])
            if identity not in seen:
                seen.add(identity)
                keys.append(Key(line=line, source=path))
        if not found:
            raise SiteError("%s: holds no public key. Nothing was made. Fix or move the file, then run again." % path)
    return keys


def user_ssh_dir() -> str:
    """The user's ~/.ssh (HOME decides, as for ssh-keygen)."""
    return os.path.expanduser("~/.ssh")


def default_key_files(ssh_dir: str) -> list[str]:
    """The user's public keys: every *.pub of ``ssh_dir``, hidden ones too, sorted."""
    pattern = os.path.join(glob.escape(ssh_dir), "%s.pub")
    return sorted(set(glob.glob(pattern % "*") + glob.glob(pattern % ".*")))


def authorized_keys(keys: list[Key]) -> bytes:
    """The site's authorized_keys: a header, then one key per line, or a loud note that there is none."""
    if not keys:
        return (AUTHORIZED_KEYS_HEADER + NO_KEY_TEXT).encode("utf-8")
    lines = [AUTHORIZED_KEYS_HEADER]
    for source in dict.fromkeys(key.source for key in keys):
        lines.append("# from %s\n" % source)
        lines.extend(key.line + "\n" for key in keys if key.source == source)
    return "".join(lines).encode("utf-8")


def plan(examples: str, keys: list[Key]) -> list[SiteFile]:
    """Every file of the new site, read from ``examples`` into memory; SiteError when one is missing."""
    if not os.path.isdir(examples):
        raise SiteError("%s: the collection's example directory is missing. Reinstall the collection "
                        "(ansible-galaxy collection install --force nixie.metal)." % examples)
    names = list(SITE_FILES)
    for directory in SITE_DIRS:
        try:
            entries = sorted(os.listdir(os.path.join(examples, directory)))
        except OSError as exc:
            raise SiteError("%s: cannot read it (%s). Reinstall the collection (ansible-galaxy collection install "
                            "--force nixie.metal)." % (os.path.join(examples, directory), exc.strerror))
        names += [directory + "/" + entry for entry in entries if entry.endswith(".nix")]
    files = []
    for name in names:
        source = os.path.join(examples, name)
        try:
            with open(source, "rb") as handle:
                files.append(SiteFile(name, handle.read()))
        except OSError as exc:
            raise SiteError("%s: cannot read it (%s). Reinstall the collection (ansible-galaxy collection install "
                            "--force nixie.metal)." % (source, exc.strerror))
    files.append(SiteFile(AUTHORIZED_KEYS, authorized_keys(keys)))
    return sorted(files, key=lambda f: f.path)


def write(path: str, files: list[SiteFile], umask: int | None = None) -> None:
    """Make the site at ``path`` (new, or an empty directory) all at once, or not at all.

    A new site is written into a temporary directory beside ``path`` and renamed onto it.
    An empty directory is kept (its owner and mode were chosen by someone): the files are
    written into a temporary directory inside it and moved up one by one, and taken away
    again if one cannot be. Missing parent directories are made first and removed again
    when the site cannot be made.
    """
    if umask is None:
        umask = os.umask(0)
        os.umask(umask)
    if os.path.isdir(path):
        _fill_empty(path, files, umask)
        return
    made_parents = _make_parents(os.path.dirname(path), umask)
    tmp = None
    try:
        tmp = tempfile.mkdtemp(prefix=".%s.new-" % os.path.basename(path), dir=os.path.dirname(path))
        _write_tree(tmp, files, umask)
        # mkdtemp makes 0700; the site gets the mode any new directory of the user gets.
        os.chmod(tmp, 0o777 & ~umask)
        os.rename(tmp, path)
    except OSError as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for parent in reversed(made_parents):
            try:
                os.rmdir(parent)
            except OSError:
                break
        raise _write_error(path, exc)


def _fill_empty(path: str, files: list[SiteFile], umask: int) -> None:
    """Write the site into the empty directory ``path``, all of it or none of it."""
    tmp = None
    moved: list[str] = []
    try:
        tmp = tempfile.mkdtemp(prefix=".nixie-site-new-", dir=path)
        _write_tree(tmp, files, umask)
        for entry in sorted(os.listdir(tmp)):
            os.rename(os.path.join(tmp, entry), os.path.join(path, entry))
            moved.append(os.path.join(path, entry))
        os.rmdir(tmp)
    except OSError as exc:
        for entry in moved:
            if os.path.isdir(entry) and not os.path.islink(entry):
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise _write_error(path, exc)


def _write_tree(root: str, files: list[SiteFile], umask: int) -> None:
    for item in files:
        target = os.path.join(root, item.path)
        os.makedirs(os.path.dirname(target), mode=0o777 & ~umask, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, item.mode & ~umask)
        with os.fdopen(fd, "wb") as handle:
            handle.write(item.content)


def _write_error(path: str, exc: OSError) -> SiteError:
    return SiteError("%s: the site could not be made (%s: %s); nothing was left behind. Check the free space and "
                     "permissions there, then run again." % (path, exc.filename or path, exc.strerror or exc))


def _make_parents(directory: str, umask: int) -> list[str]:
    """Make ``directory`` and its missing ancestors; return those made, outermost first."""
    missing = []
    while directory and not os.path.lexists(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    made = []
    try:
        for parent in reversed(missing):
            os.mkdir(parent, 0o777 & ~umask)
            made.append(parent)
    except OSError as exc:
        for parent in reversed(made):
            os.rmdir(parent)
        raise SiteError("%s: cannot make this directory (%s). Choose another path." % (exc.filename, exc.strerror))
    return made


def private_key_for(keys: list[Key]) -> str | None:
    """The private key beside the first public key file, when it is there (``id_x`` for ``id_x.pub``)."""
    for key in keys:
        if key.source.endswith(".pub") and os.path.isfile(key.source[:-4]):
            return key.source[:-4]
    return None


def next_steps(site: str, keys: list[Key], ssh_key: str | None = None) -> list[str]:
    """What to do after the site is made, as lines for a person to read.

    ``ssh_key`` is named in the install command because the run is made as root, whose SSH
    client would otherwise look for root's own keys, not the ones in authorized_keys.
    """
    if keys:
        key_line = ("authorized_keys   has your key%s from %s: root on the installer and the machines. "
                    "Remove any that must not get in."
                    % ("s" if len(keys) > 1 else "", ", ".join(dict.fromkeys(k.source for k in keys))))
    else:
        key_line = ("authorized_keys   HAS NO KEY (none found): add yours (ssh-add -L, or ssh-keygen -t ed25519 "
                    "and its .pub), or no machine can be installed.")
    return [
        "The site is %s. Edit, in this order:" % site,
        "1. hosts.json        your machines: name (the flake attribute) -> MAC address of the NIC that netboots.",
        "2. hosts/<name>.nix  per machine, site.disk: the disk that is ERASED, by id "
        "(/dev/disk/by-id/...; nixos/disk.nix says how to find it). The example's files name lab disks.",
        "3. " + key_line,
        "4. nixos/machine.nix what every machine runs (users, services); docs/installer.md explains the flake.",
        "Then, from %s:" % site,
        "check it will work: ansible-playbook nixie.metal.preflight -i hosts.nixie.yml",
        "install (as root):  ansible-playbook nixie.metal.provision -i hosts.nixie.yml "
        "-e nixie_interface=<NIC on the machines' segment> -e nixie_ssh_key=%s"
        % (ssh_key or "<the private key of a key in authorized_keys>"),
    ]
