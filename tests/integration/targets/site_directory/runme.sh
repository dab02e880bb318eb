#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# `ansible-playbook nixie.metal.site` as a user runs it: the collection built into a tarball and
# installed with ansible-galaxy (never this checkout), the playbook run by an unprivileged user
# (nobody) with a HOME of its own holding SSH keys. The site it makes is compared with the
# installed example, read by ansible-inventory through its own ansible.cfg; then each bad input
# once, with its message, and nothing made or changed. Needs root only to set this up (the
# tarball, nobody's HOME, a tiny tmpfs in a private mount namespace for the full-disk case).
set -euo pipefail
cd "$(dirname "$0")"
source_root=${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/nixie/metal
work=$(mktemp -d /tmp/nixie-site.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
step() { printf '=== %s (%ss)\n' "$*" "$SECONDS"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

step "build the tarball and install it with ansible-galaxy"
ansible-galaxy collection build --output-path "$work/dist" "$source_root" >/dev/null
env -u ANSIBLE_COLLECTIONS_PATH ansible-galaxy collection install --offline -p "$work/collections" "$work"/dist/*.tar.gz >/dev/null
installed=$work/collections/ansible_collections/nixie/metal

step "ansible-core and the collection's requirements in a virtualenv of the system's Python, which any user can run"
# The runner's own Python may live where nobody cannot reach it (a pyenv under /root). The
# versions are pinned to the runner's, so pip's cache answers; ansible-test's PYTHONPATH stays out.
/usr/bin/python3 -m venv --without-pip "$work/venv"
python -m pip freeze --exclude-editable | grep -E '^[A-Za-z0-9_.-]+==' > "$work/constraints.txt"
env -u PYTHONPATH python -m pip --python "$work/venv/bin/python" install -q --disable-pip-version-check \
  -c "$work/constraints.txt" ansible-core -r "$installed/requirements.txt" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
venv_bin=$work/venv/bin

uid=65534
# run_as HOME CWD ARGS...: as nobody, with only that HOME, the installed collection and no ansible.cfg.
# nobody's home in the password database is /nonexistent, where Ansible would put its remote
# temporary directory (a real user's is their home): ANSIBLE_REMOTE_TMP points into HOME.
run_as() {
  local home=$1 cwd=$2; shift 2
  (cd "$cwd" && env -i "PATH=$venv_bin:/usr/bin:/bin" "HOME=$home" "ANSIBLE_COLLECTIONS_PATH=$work/collections" \
     "ANSIBLE_REMOTE_TMP=$home/.ansible/tmp" "ANSIBLE_NOCOLOR=1" "ANSIBLE_FORCE_COLOR=0" "LANG=C.UTF-8" \
     setpriv --reuid=$uid --regid=$uid --clear-groups --inh-caps=-all "$@")
}
site() { local home=$1 cwd=$2 out=$3; shift 3; run_as "$home" "$cwd" ansible-playbook nixie.metal.site "$@" > "$out" 2>&1; }
expect() {  # expect FILE TEXT: the output holds TEXT
  grep -qF -- "$2" "$1" || { cat "$1"; fail "the output lacks: $2"; }
}
# Every path, size, mode, owner and content below a directory, but Ansible's own ~/.ansible.
snapshot() {
  (cd "$1" && find . -path ./.ansible -prune -o -printf '%p %s %m %u\n' | sort \
     && find . -path ./.ansible -prune -o -type f -exec sha256sum {} + | sort)
}
new_home() {  # new_home NAME [KEYS...]: a HOME owned by nobody with ~/.ssh holding those key types
  local home=$work/$1; shift
  mkdir -p "$home/.ssh" "$home/elsewhere"
  for type in "$@"; do ssh-keygen -q -t "$type" -N '' -C "user@$type" -f "$home/.ssh/id_$type"; done
  chown -R $uid:$uid "$home"; chmod 0700 "$home/.ssh"
  echo "$home"
}

step "a site from a HOME with two keys, as nobody, from another directory"
home=$(new_home user ed25519 ecdsa)
site "$home" "$home/elsewhere" "$work/made.out" -e 'nixie_site=~/rack1' || { cat "$work/made.out"; fail "the site playbook failed"; }
expect "$work/made.out" "changed: [localhost]"
expect "$work/made.out" "\"The site is $home/rack1. Edit, in this order:\""
expect "$work/made.out" "1. hosts.json        your machines: name (the flake attribute) -> MAC address"
expect "$work/made.out" "2. hosts/<name>.nix  per machine, site.disk: the disk that is ERASED, by id (/dev/disk/by-id/..."
expect "$work/made.out" "3. authorized_keys   has your keys from $home/.ssh/id_ecdsa.pub, $home/.ssh/id_ed25519.pub"
expect "$work/made.out" "check it will work: ansible-playbook nixie.metal.preflight -i hosts.nixie.yml"
expect "$work/made.out" "install (as root):  ansible-playbook nixie.metal.provision -i hosts.nixie.yml -e nixie_interface=<NIC on the machines' segment> -e nixie_ssh_key=$home/.ssh/id_ecdsa\""
site_dir=$home/rack1
(cd "$site_dir" && find . -type f | sed 's|^\./||' | sort) > "$work/files.txt"
cat > "$work/files.expected" <<'FILES'
ansible.cfg
authorized_keys
collections/requirements.yml
flake.nix
hosts.json
hosts.nixie.yml
hosts/arm1.nix
hosts/node1.nix
hosts/node2.nix
nixos/disk.nix
nixos/installer.nix
nixos/machine.nix
provision.yml
FILES
diff -u "$work/files.expected" "$work/files.txt" || fail "the site's files differ from the list above"
while read -r name; do
  [ "$name" = authorized_keys ] || cmp -s "$installed/examples/$name" "$site_dir/$name" || fail "$name differs from the installed example"
done < "$work/files.txt"
if [ "$(stat -c %U "$site_dir")" != nobody ] || [ -n "$(find "$site_dir" ! -user nobody)" ]; then fail "the site is not the user's own"; fi
for type in ed25519 ecdsa; do
  grep -qxF "$(cat "$home/.ssh/id_$type.pub")" "$site_dir/authorized_keys" || fail "authorized_keys lacks id_$type.pub"
done
[ "$(grep -vc '^#' "$site_dir/authorized_keys")" = 2 ] || { cat "$site_dir/authorized_keys"; fail "authorized_keys: not exactly two keys"; }
grep -q 'PRIVATE' "$site_dir/authorized_keys" && fail "a private key went into authorized_keys"
# The site works as made: its ansible.cfg names its inventory, which reads its hosts.json.
run_as "$home" "$site_dir" ansible-inventory --graph > "$work/graph.txt" 2>&1 || { cat "$work/graph.txt"; fail "ansible-inventory in the site failed"; }
for name in node1 node2 arm1; do grep -q -- "--$name\$" "$work/graph.txt" || { cat "$work/graph.txt"; fail "inventory lacks $name"; }; done

step "check mode makes nothing; a relative path is the working directory's"
site "$home" "$home/elsewhere" "$work/check.out" --check -e nixie_site=rack2 || { cat "$work/check.out"; fail "check mode failed"; }
expect "$work/check.out" "Check mode: nothing was made. The site would have 13 files: ansible.cfg, authorized_keys,"
expect "$work/check.out" "The site is $home/elsewhere/rack2. Edit, in this order:"
if [ -e "$home/elsewhere/rack2" ] || [ -n "$(ls -A "$home/elsewhere")" ]; then fail "check mode made something"; fi

step "an existing site is refused and left as it was"
echo '{"mine": {"mac_address": "52:54:00:00:00:09"}}' > "$site_dir/hosts.json"
snapshot "$site_dir" > "$work/before.txt"
site "$home" "$home" "$work/exists.out" -e 'nixie_site=~/rack1' && { cat "$work/exists.out"; fail "an existing site was accepted"; }
expect "$work/exists.out" "$site_dir exists already and is not empty (ansible.cfg, authorized_keys, collections, flake.nix, hosts, ...). Nothing was changed"
snapshot "$site_dir" > "$work/after.txt"
diff -u "$work/before.txt" "$work/after.txt" || fail "the existing site was changed"
site "$home" "$home" "$work/exists-check.out" --check -e 'nixie_site=~/rack1' && fail "check mode accepted an existing site"
expect "$work/exists-check.out" "exists already and is not empty"

step "an empty directory is filled, with the keys named in nixie_site_keys"
mkdir "$home/empty" && chown $uid:$uid "$home/empty" && chmod 0750 "$home/empty"
site "$home" "$home" "$work/empty.out" -e 'nixie_site=~/empty' -e '{"nixie_site_keys": ["~/.ssh/id_ed25519.pub"]}' \
  || { cat "$work/empty.out"; fail "an empty directory was refused"; }
if [ "$(stat -c %a "$home/empty")" != 750 ] || [ ! -f "$home/empty/flake.nix" ]; then fail "the empty directory was not filled as it was"; fi
[ "$(grep -v '^#' "$home/empty/authorized_keys")" = "$(cat "$home/.ssh/id_ed25519.pub")" ] \
  || { cat "$home/empty/authorized_keys"; fail "authorized_keys does not hold exactly the key of nixie_site_keys"; }

step "an unreadable key: named, nothing made"
home2=$(new_home unreadable ed25519)
cp "$home/.ssh/id_ecdsa.pub" "$home2/.ssh/work.pub" && chown root:root "$home2/.ssh/work.pub" && chmod 0600 "$home2/.ssh/work.pub"
snapshot "$home2" > "$work/before2.txt"
site "$home2" "$home2" "$work/unreadable.out" -e 'nixie_site=~/sites/rack1' && { cat "$work/unreadable.out"; fail "an unreadable key was accepted"; }
expect "$work/unreadable.out" "$home2/.ssh/work.pub: cannot read this public key (Permission denied). Nothing was made. Make it readable (chmod 644 $home2/.ssh/work.pub)"
snapshot "$home2" > "$work/after2.txt"
diff -u "$work/before2.txt" "$work/after2.txt" || fail "something was made or changed after the unreadable key"

step "a file that is not a public key: named with its line"
home3=$(new_home notakey ed25519)
cp "$home3/.ssh/id_ed25519" "$home3/.ssh/pasted.pub" && chmod 0644 "$home3/.ssh/pasted.pub"
site "$home3" "$home3" "$work/notakey.out" -e 'nixie_site=~/rack1' && { cat "$work/notakey.out"; fail "a private key in a .pub was accepted"; }
expect "$work/notakey.out" "$home3/.ssh/pasted.pub, line 1: not an OpenSSH public key: this is a private key; give the .pub file beside it. Nothing was made."
[ ! -e "$home3/rack1" ] || fail "a site was made after a bad key"

step "no key at all: the site is made, authorized_keys says so, and so does the run"
home4=$(new_home nokey)
site "$home4" "$home4" "$work/nokey.out" -e 'nixie_site=~/rack1' || { cat "$work/nokey.out"; fail "the site without keys was not made"; }
expect "$work/nokey.out" "[WARNING]: $home4/rack1/authorized_keys has no key (no *.pub file in $home4/.ssh). Add yours"
expect "$work/nokey.out" "3. authorized_keys   HAS NO KEY (none found): add yours"
if ! grep -q 'NO KEY YET' "$home4/rack1/authorized_keys" || grep -qv '^#' "$home4/rack1/authorized_keys"; then
  cat "$home4/rack1/authorized_keys"; fail "authorized_keys without keys is not all comments with the note"
fi

step "no site named; a place the user cannot write"
site "$home" "$home" "$work/unnamed.out" && fail "the playbook ran without nixie_site"
expect "$work/unnamed.out" "Name the site directory to make, for example: ansible-playbook nixie.metal.site -e nixie_site=~/rack1"
site "$home" "$home" "$work/root.out" -e nixie_site=/nixie-site-test/rack1 && fail "a site under / was made by nobody"
expect "$work/root.out" "/nixie-site-test/rack1: cannot make the site there: / is not writable by this user."
[ ! -e /nixie-site-test ] || fail "/nixie-site-test was made"

step "the disk fills up half-way: nothing is left behind"
mkdir "$work/tiny"
cat > "$work/tiny.sh" <<'TINY'
set -e
work=$1 uid=$2 venv_bin=$3 home=$4
# 16 KiB: a few of the site's files fit, not all of them.
mount -t tmpfs -o size=16k,mode=0777 tmpfs "$work/tiny"
status=0
(cd "$home" && env -i "PATH=$venv_bin:/usr/bin:/bin" "HOME=$home" "ANSIBLE_COLLECTIONS_PATH=$work/collections" \
  "ANSIBLE_REMOTE_TMP=$home/.ansible/tmp" "ANSIBLE_NOCOLOR=1" LANG=C.UTF-8 setpriv --reuid="$uid" --regid="$uid" --clear-groups --inh-caps=-all \
  ansible-playbook nixie.metal.site -e "nixie_site=$work/tiny/sites/rack1") > "$work/full.out" 2>&1 || status=$?
ls -A "$work/tiny" > "$work/tiny-left.txt"
exit $status
TINY
unshare --mount --propagation private sh "$work/tiny.sh" "$work" "$uid" "$venv_bin" "$home" && { cat "$work/full.out"; fail "the site was made on a full disk"; }
expect "$work/full.out" "$work/tiny/sites/rack1: the site could not be made ("
expect "$work/full.out" "No space left on device); nothing was left behind."
[ ! -s "$work/tiny-left.txt" ] || { cat "$work/tiny-left.txt"; fail "something was left on the full disk"; }
step "done"
