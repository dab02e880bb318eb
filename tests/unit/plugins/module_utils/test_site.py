# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A new site from the example (plugins/module_utils/_site.py): decisions and real files in tmp_path."""

from __future__ import annotations

import json
import os
import re

import pytest

from ansible_collections.nixie.metal.plugins.module_utils import _site

EXAMPLES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "examples"))

# Made with ssh-keygen (OpenSSH 9.2) for these tests; nobody holds the private halves.
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGfEskgMCzTRm05yOotFrEeBtbhvTLF5dzsB57bWqXHt me@test"
ECDSA = ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEK4pBlP+W9to/wJUNiGgTEC7ingPnv7XMhQ"
         "RUTk3zpVqJWPdOUlRCPY9vJNuRhuHloIR85LaRFVyrqV+norZvg= ops@test")


def write_file(path, text, mode=0o644):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return str(path)


# ------------------------------------------------------------------ public keys
@pytest.mark.parametrize("line", [ED25519, ECDSA, ED25519.rsplit(" ", 1)[0]])
def test_real_public_keys_are_accepted(line):
    assert _site.parse_public_key(line) is None


@pytest.mark.parametrize("line, reason", [
    ("-----BEGIN OPENSSH PRIVATE KEY-----", "private key; give the .pub file"),
    ("ssh-foo AAAA", "unknown key type 'ssh-foo'"),
    ("ssh-ed25519", "no key data"),
    ("ssh-ed25519 not*base64", "not base64"),
    # A real ed25519 blob under the wrong type name, and one cut short by a bad paste.
    ("ssh-rsa " + ED25519.split()[1], "does not match its type 'ssh-rsa'"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "cut short"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGfE", "cut short"),
    ("ssh-ed25519 AAAA", "cut short"),
    ("ssh-ed25519 AAA=", "cut short"),
])
def test_what_is_not_a_public_key_is_named(line, reason):
    assert reason in _site.parse_public_key(line)


def test_keys_are_read_in_order_without_repeats(tmp_path):
    first = write_file(tmp_path / "a.pub", "# a comment\n\n" + ED25519 + "\n")
    second = write_file(tmp_path / "b.pub", ECDSA + "\n" + ED25519.replace("me@test", "copy") + "\n")
    keys = _site.public_keys([first, second])
    assert [(k.line, k.source) for k in keys] == [(ED25519, first), (ECDSA, second)]


def test_an_unreadable_key_file_is_named_with_what_to_do(tmp_path):
    # A directory named like a key cannot be read even by root (the tests may run as root).
    broken = tmp_path / "broken.pub"
    broken.mkdir()
    with pytest.raises(_site.SiteError, match=r"^%s: cannot read this public key \(Is a directory\)\. Nothing was made\. "
                                              r"Make it readable \(chmod 644 " % re.escape(str(broken))):
        _site.public_keys([write_file(tmp_path / "ok.pub", ED25519), str(broken)])


def test_a_bad_key_is_named_with_its_file_and_line(tmp_path):
    bad = write_file(tmp_path / "bad.pub", ED25519 + "\nssh-ed25519 AAAA\n")
    with pytest.raises(_site.SiteError, match=r"bad\.pub, line 2: not an OpenSSH public key: the key data is cut short"):
        _site.public_keys([bad])
    empty = write_file(tmp_path / "empty.pub", "# nothing\n")
    with pytest.raises(_site.SiteError, match=r"empty\.pub: holds no public key"):
        _site.public_keys([empty])
    binary = tmp_path / "bin.pub"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(_site.SiteError, match=r"bin\.pub: not a text file"):
        _site.public_keys([str(binary)])


def test_default_key_files_are_every_pub_of_the_directory(tmp_path):
    for name in ("id_ed25519.pub", ".hidden.pub", "id_ed25519", "known_hosts", "a.pub"):
        write_file(tmp_path / name, "x")
    assert _site.default_key_files(str(tmp_path)) == [str(tmp_path / n) for n in (".hidden.pub", "a.pub", "id_ed25519.pub")]
    assert _site.default_key_files(str(tmp_path / "missing")) == []


def test_authorized_keys_names_the_sources_or_says_loudly_there_is_none(tmp_path):
    keys = [_site.Key(ED25519, "/h/.ssh/a.pub"), _site.Key(ECDSA, "/h/.ssh/b.pub")]
    text = _site.authorized_keys(keys).decode()
    assert text.startswith(_site.AUTHORIZED_KEYS_HEADER)
    assert text.endswith("# from /h/.ssh/a.pub\n%s\n# from /h/.ssh/b.pub\n%s\n" % (ED25519, ECDSA))
    none = _site.authorized_keys([]).decode()
    # The example flake ignores lines starting with #: a site without a key still evaluates.
    assert all(line.startswith("#") for line in none.splitlines()) and "NO KEY YET" in none


# ------------------------------------------------------------------ the target directory
def test_a_new_path_or_an_empty_directory_may_be_used(tmp_path):
    assert _site.target_state(str(tmp_path / "rack1")) == "new"
    assert _site.target_state(str(tmp_path / "sites" / "deep" / "rack1")) == "new"
    (tmp_path / "empty").mkdir()
    assert _site.target_state(str(tmp_path / "empty")) == "empty"


def test_an_existing_site_or_a_file_is_refused(tmp_path):
    site = tmp_path / "rack1"
    write_file(site / "hosts.json", "{}")
    with pytest.raises(_site.SiteError, match=r"rack1 exists already and is not empty \(hosts\.json\)\. Nothing was changed"):
        _site.target_state(str(site))
    with pytest.raises(_site.SiteError, match=r"hosts\.json exists and is not a directory"):
        _site.target_state(str(site / "hosts.json"))
    with pytest.raises(_site.SiteError, match=r"hosts\.json is not a directory\. Choose another path"):
        _site.target_state(str(site / "hosts.json" / "below"))


# ------------------------------------------------------------------ the plan and the write
def test_the_plan_is_the_example_with_the_users_keys():
    keys = [_site.Key(ED25519, "/h/.ssh/id_ed25519.pub")]
    files = {f.path: f for f in _site.plan(EXAMPLES, keys)}
    with open(os.path.join(EXAMPLES, "hosts.json"), encoding="utf-8") as handle:
        hosts = json.load(handle)
    assert set(_site.SITE_FILES) | {"authorized_keys", "nixos/disk.nix", "nixos/machine.nix", "nixos/installer.nix"} <= set(files)
    assert {"hosts/%s.nix" % name for name in hosts} <= set(files)
    assert "execution-environment.yml" not in files
    assert ED25519 in files["authorized_keys"].content.decode()
    with open(os.path.join(EXAMPLES, "flake.nix"), "rb") as handle:
        assert files["flake.nix"].content == handle.read()


def test_a_missing_example_file_names_the_reinstall(tmp_path):
    with pytest.raises(_site.SiteError, match=r"example directory is missing\. Reinstall the collection"):
        _site.plan(str(tmp_path / "nowhere"), [])
    for directory in _site.SITE_DIRS:
        (tmp_path / directory).mkdir()
    with pytest.raises(_site.SiteError, match=r"ansible\.cfg: cannot read it \(No such file or directory\)\. Reinstall"):
        _site.plan(str(tmp_path), [])


def files_below(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _dirs, fs in os.walk(root) for f in fs)


def test_write_makes_the_site_and_its_missing_parents(tmp_path):
    files = [_site.SiteFile("a.txt", b"a"), _site.SiteFile("nixos/b.nix", b"b")]
    site = tmp_path / "sites" / "rack1"
    _site.write(str(site), files, umask=0o022)
    assert files_below(site) == ["a.txt", "nixos/b.nix"] and (site / "nixos" / "b.nix").read_bytes() == b"b"
    assert oct(site.stat().st_mode & 0o777) == "0o755" and oct((site / "a.txt").stat().st_mode & 0o777) == "0o644"
    assert sorted(os.listdir(tmp_path / "sites")) == ["rack1"]


def test_write_fills_an_empty_directory_and_keeps_its_mode(tmp_path):
    site = tmp_path / "rack1"
    site.mkdir(mode=0o750)
    _site.write(str(site), [_site.SiteFile("nixos/b.nix", b"b")], umask=0o022)
    assert files_below(site) == ["nixos/b.nix"] and oct(site.stat().st_mode & 0o777) == "0o750"


@pytest.mark.parametrize("empty", [False, True])
def test_a_failed_write_leaves_nothing_behind(tmp_path, empty):
    # The same file twice: the second open (O_EXCL) fails half-way through the site.
    files = [_site.SiteFile("a.txt", b"a"), _site.SiteFile("nixos/b.nix", b"b"), _site.SiteFile("nixos/b.nix", b"b")]
    site = tmp_path / "sites" / "rack1"
    if empty:
        site.mkdir(parents=True)
    with pytest.raises(_site.SiteError, match=r"rack1: the site could not be made \(.*b\.nix: File exists\); nothing was left"):
        _site.write(str(site), files, umask=0o022)
    if empty:
        assert os.listdir(site) == []
    else:
        assert os.listdir(tmp_path) == []


def test_next_steps_name_the_disk_the_keys_and_the_commands():
    steps = _site.next_steps("/h/rack1", [_site.Key(ED25519, "/h/.ssh/id_ed25519.pub")])
    text = "\n".join(steps)
    assert steps[0] == "The site is /h/rack1. Edit, in this order:"
    assert "hosts/<name>.nix" in text and "ERASED, by id (/dev/disk/by-id/" in text
    assert "has your key from /h/.ssh/id_ed25519.pub" in text
    assert "check it will work: ansible-playbook nixie.metal.preflight -i hosts.nixie.yml" in steps
    assert steps[-1].endswith("-e nixie_ssh_key=<the private key of a key in authorized_keys>")
    assert _site.next_steps("/h/rack1", [], "/h/.ssh/id_ed25519")[-1].endswith(" -e nixie_ssh_key=/h/.ssh/id_ed25519")
    assert "HAS NO KEY" in "\n".join(_site.next_steps("/h/rack1", []))


def test_the_private_key_is_the_one_beside_a_public_key(tmp_path):
    lone = write_file(tmp_path / "lone.pub", ED25519)
    paired = write_file(tmp_path / "id_ecdsa.pub", ECDSA)
    write_file(tmp_path / "id_ecdsa", "private", mode=0o600)
    assert _site.private_key_for([_site.Key(ED25519, lone), _site.Key(ECDSA, paired)]) == str(tmp_path / "id_ecdsa")
    assert _site.private_key_for([_site.Key(ED25519, lone)]) is None


# ------------------------------------------------------------------ the example's disks
def test_every_example_machine_names_its_disk_by_id():
    with open(os.path.join(EXAMPLES, "hosts.json"), encoding="utf-8") as handle:
        hosts = json.load(handle)
    for name in hosts:
        with open(os.path.join(EXAMPLES, "hosts", name + ".nix"), encoding="utf-8") as handle:
            assert re.search(r'^\s*site\.disk = "/dev/disk/by-id/virtio-%s";' % name, handle.read(), re.M), name


def test_no_example_file_guesses_a_disk():
    for directory, _dirs, names in os.walk(EXAMPLES):
        for name in names:
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                text = handle.read()
            for match in re.finditer(r'"(/dev/[^"]+)"', text):
                assert match.group(1).startswith("/dev/disk/by-id/"), (name, match.group(1))
