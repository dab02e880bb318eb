# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The attributes block of every nixie.metal module, written once.

Private to this collection, as its leading underscore says (README, "Layout"): other collections
must not extend it, and it changes whenever the modules do.
"""

from __future__ import annotations


class ModuleDocFragment:
    # Every module extends this. It carries what each attribute means and the values all modules
    # share, so a module's own attributes block says only what is particular to it: what its check
    # mode does (details), a diff mode (power), why it needs Linux. A module's own keys win.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Runs in check mode, changes nothing there and reports whether a normal run would change something.
    support: full
  diff_mode:
    description: Returns what it changed (in check mode, what it would change) when the play runs with C(--diff).
    support: none
  platform:
    description: The systems the module runs on, usually the controller or the host a task is delegated to.
    support: N/A
    platforms: posix
"""

    # Modules of the action group nixie (meta/runtime.yml), so that module_defaults sets shared
    # options once for a play.
    ACTION_GROUP = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/nixie.metal.nixie) in C(module_defaults) to set this module's options once for a play.
    support: full
    membership:
      - nixie.metal.nixie
"""

    # Modules that only read, whose check mode is therefore a normal run.
    READ_ONLY = r"""
options: {}
attributes:
  check_mode:
    details:
      - The module only reads, so check mode does the same as a normal run.
"""
