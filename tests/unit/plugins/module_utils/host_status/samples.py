# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Machines, systems and keys shared by the tests of host_status's parts."""

from __future__ import annotations

MAC = "52:54:00:12:34:01"
SYSTEM = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-web1"
OTHER = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-web1"
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDoZHtpvBvp3Kt0mQLz6sRa1lt45wIpMApw3u3Xn161H root@nixie-lab"
ECDSA = ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBF7rt0G4uDG0ZTIqEHfKO/7V/YjpktI/uao9QW8H3XIIA"
         "GzAGmx2GNwVD8j3RL76UeOZkyTcA5ENV9Hm02HcOkA=")
