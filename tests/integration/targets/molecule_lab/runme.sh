#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Smoke test of the molecule scenario extensions/molecule/default: `molecule test` from the
# collection root (the copy on the collections path), as CI runs it. The scenario builds the lab
# (namespaces, a private libvirtd, two TCG domains, the Wake-on-LAN listener), wakes the domains
# through the lab bridge, installs them with nixie.metal.provision while an impostor asks for their boots,
# and tears everything down. Needs root; about three minutes.
set -eux
# The molecule_lab target (never the demo) puts an impostor on the lab bridge that keeps asking for every
# machine's boot throughout the run; verify.yml checks that it was refused each time and that the run warned.
export NIXIE_LAB_IMPOSTOR=1
collections_root=${ANSIBLE_COLLECTIONS_PATH%%:*}
collection=$collections_root/ansible_collections/nixie/metal
cd "$collection"
# molecule names its ephemeral directory after the project directory's base name only
# (~/.ansible/tmp/molecule.<hash of "metal">.default), so two staged copies would share it:
# give this run its own, and remove it afterwards.
MOLECULE_EPHEMERAL_DIRECTORY=$(mktemp -d "${TMPDIR:-/tmp}/molecule-lab.XXXXXX")
export MOLECULE_EPHEMERAL_DIRECTORY
cleanup() {
    # molecule destroys the lab even when a stage fails; this is the belt to those braces.
    (cd tests/lab && python -m nixielab.libvirt down --state "$MOLECULE_EPHEMERAL_DIRECTORY/nixielab-state.json") || true
    rm -rf "$MOLECULE_EPHEMERAL_DIRECTORY"
}
trap cleanup EXIT
molecule --version
molecule test -s default
# destroy is safe to run twice: a second run finds nothing and succeeds.
molecule destroy -s default
