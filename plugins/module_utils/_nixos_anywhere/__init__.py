# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decisions of the nixos_anywhere role, without Ansible: pure functions, no I/O.

``arguments`` the role's arguments settled (defaults, addresses, keys, paths); the files and programs a run needs.
``problems``  what is wrong with the settled arguments, each a sentence naming the argument.
``command``   ``plan``: the nixos-anywhere command line and the SSH endpoints it uses.
``version``   which nixos-anywhere the controller has, and whether it is recent enough.
``logins``    how the role logs in and runs nixos-anywhere, and which of its steps run.
``outcome``   judgements of what came back (the checks, the disk guard, the run, the installed system).
"""
