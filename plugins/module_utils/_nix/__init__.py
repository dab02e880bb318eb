# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nix on the controller: ``nix build`` and ``nix eval`` of the site's flake for the modules.

``errors``    NixError and its kinds (not found, out of time), and how to install Nix.
``version``   finding the nix executable; is its version, are its features good enough.
``commands``  installables and the command lines of nix build and nix eval.
``output``    nix's internal-json log, ``nix build --json``, a built installer's netboot artifacts.
``overrides`` the run's flake input overrides (the user's, and the collection's flake as ``nixie-metal``).
``process``   running nix in its own process group, and the deadline several calls share.
``calls``     one module run: :func:`calls.build` and :func:`calls.evaluate`.

Everything that decides something is a pure function; ``process.run`` is the one place
that starts a process. No Ansible imports. Private to the collection: the interface may
change without notice.
"""

from __future__ import annotations
