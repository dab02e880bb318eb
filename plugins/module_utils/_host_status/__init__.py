# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Does a machine need installing? The logic behind the host_status module, without Ansible.

``address``  where the machine is: the kernel's neighbour table, else an ARP sweep.
``probe``    what it runs: one SSH connection, and the system its flake would build (``nix eval``).
``status``   the verdict (one of ``STATES``) and one run of the module, step by step.
``common``   the error every part raises and the one way they run a program.

Private to the collection: the interface may change without notice.
"""

from __future__ import annotations
