#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# The release as a user gets it: `ansible-galaxy collection build`, then the tarball installed
# into a fresh virtualenv and collection path (never this checkout), and there: ansible-doc for
# every plugin and the role, ansible-inventory on the shipped example, and the provision playbook
# in check mode inside a private network namespace (offline: a prebuilt installer is given, and a
# nixos-anywhere that fails the test if it is ever run). Needs root (the namespace, the ARP sweep).
set -euo pipefail
cd "$(dirname "$0")"
here=$PWD
source_root=${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/nixie/metal
work=$(mktemp -d /tmp/nixie-release.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The netboot server reads the installer as nobody once bound (pxe_server's user); mktemp makes 0700.
chmod 0755 "$work"
step() { printf '=== %s (%ss)\n' "$*" "$SECONDS"; }

step "build the tarball"
version=$(python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["version"])' "$source_root/galaxy.yml")
ansible-galaxy collection build --output-path "$work/dist" "$source_root" >/dev/null
tarball=$work/dist/nixie-metal-$version.tar.gz
python check_tarball.py "$tarball"

step "a fresh virtualenv with the collection's own requirements"
# Versions pinned to the ones the test runner has, so pip's cache answers; no site packages.
# The runner's pip installs into it (--python), which spares the venv its own pip (seconds).
# ansible-test puts its own ansible on PYTHONPATH; pip must not take that for installed.
base_python=$(python -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')
"$base_python" -m venv --without-pip "$work/venv"
python -m pip freeze --exclude-editable | grep -E '^[A-Za-z0-9_.-]+==' > "$work/constraints.txt"
mkdir "$work/unpacked" && tar -xzf "$tarball" -C "$work/unpacked" requirements.txt
env -u PYTHONPATH python -m pip --python "$work/venv/bin/python" install -q --disable-pip-version-check -c "$work/constraints.txt" \
  ansible-core -r "$work/unpacked/requirements.txt" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

step "install the tarball"
# Nothing of the checkout or the runner's environment may leak in: own PATH, collection path,
# HOME and working directory; no ansible.cfg.
user_env=(env -i "PATH=$work/venv/bin:$work/bin:/usr/sbin:/usr/bin:/sbin:/bin" "HOME=$work/home"
          "ANSIBLE_COLLECTIONS_PATH=$work/collections" "ANSIBLE_NOCOLOR=1" "ANSIBLE_FORCE_COLOR=0" "LANG=C.UTF-8")
mkdir -p "$work/home" "$work/bin" "$work/site"
cd "$work/site"
"${user_env[@]}" ansible-galaxy collection install --offline -p "$work/collections" "$tarball" >/dev/null
installed=$work/collections/ansible_collections/nixie/metal
"${user_env[@]}" ansible-galaxy collection list nixie.metal > "$work/list.txt"
grep -q "^nixie.metal *$version" "$work/list.txt" || { cat "$work/list.txt"; echo "FAIL: nixie.metal $version is not installed" >&2; exit 1; }
if [ "$(grep -c '^nixie.metal ' "$work/list.txt")" -ne 1 ] || ! grep -q "^# $work/collections/ansible_collections" "$work/list.txt"; then
  cat "$work/list.txt"; echo "FAIL: another copy of nixie.metal is visible besides the installed tarball" >&2; exit 1
fi

step "ansible-doc for every plugin and the role"
python "$here/check_docs.py" "$installed" -- "${user_env[@]}"

step "ansible-inventory on the shipped example, from another directory"
"${user_env[@]}" ansible-inventory -i "$installed/examples/hosts.nixie.yml" --list > "$work/inventory.json"
"${user_env[@]}" ansible-inventory -i "$installed/examples/hosts.nixie.yml" --graph > "$work/graph.txt"
# The same checks as the inventory_hosts target makes on the checkout's example.
python "$source_root/tests/integration/targets/inventory_hosts/check_inventory.py" "$work/inventory.json" "$work/graph.txt" "$installed/examples/hosts.json"

step "the provision playbook in check mode, offline, in a private network namespace"
# A prebuilt installer (two small files) instead of a nix build; nixos-anywhere is a trap. The
# preflight's rows for the SSH key and the site's DHCP server are shown but do not stop it: this
# namespace has neither, and check mode logs in nowhere. The machines' systems cannot be evaluated
# offline (the example's nixpkgs and disko come from GitHub), so the role is in its flake mode,
# whose check mode shows nixos-anywhere's command line without evaluating.
# A prebuilt installer is for x86_64 machines: the example's aarch64 machine is left out
# (--limit), as a user with only an x86_64 installer at hand would do.
printf 'kernel' > "$work/kernel"; printf 'initrd' > "$work/initrd"
cat > "$work/bin/nixos-anywhere" <<TRAP
#!/bin/sh
echo "\$0 \$*" >> "$work/nixos-anywhere-ran"
exit 1
TRAP
chmod +x "$work/bin/nixos-anywhere"
cat > "$work/vars.json" <<VARS
{"nixie_installer": {"kernel": "$work/kernel", "initrd": "$work/initrd", "cmdline": "console=ttyS0"},
 "nixie_interface": "nixie0", "nixie_address": "10.99.0.1", "nixie_agent_timeout": 5,
 "nixie_preflight_ignore": ["ssh-key", "site-dhcp"], "nixie_build": "flake"}
VARS
mkdir -p /run/nixie-metal
# In a network namespace with loopback and one veth pair (nothing leaves it) and a mount
# namespace whose /run/nixie-metal is private; the listening sockets are listed at the end.
cat > "$work/in-namespace.sh" <<'NAMESPACE'
collection=$1 work=$2
mount -t tmpfs tmpfs /run/nixie-metal
ip link set lo up
ip link add nixie0 type veth peer name nixie1
ip link set nixie1 up
ip addr add 10.99.0.1/24 dev nixie0
ip link set nixie0 up
status=0
ansible-playbook -i "$collection/examples/hosts.nixie.yml" --limit localhost,arch_x86_64_linux --check \
  -e "@$work/vars.json" nixie.metal.provision > "$work/check.out" 2>&1 || status=$?
ss -H -lnut > "$work/listening.txt"
find /run/nixie-metal -mindepth 1 > "$work/run-dir.txt"
exit $status
NAMESPACE
"${user_env[@]}" unshare --net --mount sh -e "$work/in-namespace.sh" "$installed" "$work" \
  || { cat "$work/check.out"; echo "FAIL: the provision playbook failed in check mode" >&2; exit 1; }
python "$here/check_check_mode.py" "$work" "$installed"
step "done"
