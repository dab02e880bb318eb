#!/bin/sh
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Installed as "ssh" in a private directory that the nixie.metal.nixos_anywhere role puts first on
# nixos-anywhere's PATH. nixos-anywhere runs every ssh (its own sessions, ssh-copy-id and nix copy)
# with "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no" before the user's --ssh-option
# values, and ssh keeps the first value it is given for an option; so the options below, given
# first, win: the target must present one of the host keys the installer reported, or ssh stops.
# Every call is logged, so the role can tell whether nixos-anywhere used this wrapper at all.
set -eu
printf '%s\n' "$*" >> "$NIXOS_ANYWHERE_PINNED_LOG"
exec "$NIXOS_ANYWHERE_REAL_SSH" \
    -o StrictHostKeyChecking=yes \
    -o "UserKnownHostsFile=$NIXOS_ANYWHERE_KNOWN_HOSTS" \
    -o GlobalKnownHostsFile=/dev/null \
    -o CheckHostIP=no \
    -o UpdateHostKeys=no \
    "$@"
