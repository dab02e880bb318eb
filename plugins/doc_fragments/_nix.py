# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of the modules that call nix, written once; their argument specs are in module_utils/_argspec.py.

Private to this collection, as its leading underscore says (README, "Layout"): other collections
must not extend it, and it changes whenever the modules do.
"""

from __future__ import annotations


class ModuleDocFragment:
    # How nix is called, for nix_build and nix_eval (_argspec.nix_call).
    DOCUMENTATION = r"""
options:
  chdir:
    description:
      - Directory to run C(nix) in; relative flake paths such as C(./examples) resolve against it.
      - Defaults to the directory the module runs in. Give C({{ playbook_dir }}) or an absolute flake path to be sure.
    type: path
  executable:
    description:
      - The C(nix) command, as a path or a name looked up on C(PATH).
      - By default C(nix) on C(PATH), else C(/nix/var/nix/profiles/default/bin/nix),
        C(/run/current-system/sw/bin/nix) or the user's profile, since a module's C(PATH) often lacks them.
    type: str
  impure:
    description: Pass C(--impure), allowing the evaluation to read the environment and files outside the flake.
    type: bool
    default: false
  offline:
    description: Pass C(--offline) - use no substituters and no network for flake inputs that are already cached.
    type: bool
    default: false
  options:
    description:
      - >-
        Nix settings for the task's C(nix) calls, each passed as C(--option NAME VALUE), for example
        C({"cores": 4, "builders-use-substitutes": true}). Lists are joined with spaces.
    type: dict
    default: {}
  extra_args:
    description: More arguments for every C(nix) call of the task, such as C(--show-trace) or C(-L).
    type: list
    elements: str
    default: []
"""

    # The flake's inputs, overridden alike wherever a flake is built or evaluated, so that what
    # nix_eval and host_status evaluate is what nix_build builds (_argspec.flake_inputs).
    FLAKE_INPUTS = r"""
options:
  override_inputs:
    description:
      - >-
        Inputs of the flake to replace, as a mapping from input name to flake reference, each passed as
        C(--override-input NAME REF), for example C({"nixpkgs": "path:/srv/mirror/nixpkgs"}).
        An input of an input is named with a slash, such as C(disko/nixpkgs).
      - The flake's C(flake.lock) is not changed; nix evaluates as if the inputs were locked to these references.
      - A name that matches no input of the flake fails the task (nix itself would only warn).
      - Naming C(nixie-metal) here replaces the automatic override of O(agent_flake).
    type: dict
    default: {}
  agent_flake:
    description:
      - >-
        Root directory of the nixie.metal collection given to the flake's input C(nixie-metal), which the installer
        takes its agent from. Only its C(flake.nix), C(flake.lock) and C(nix/) are copied into the store.
      - >-
        By default the collection that runs the task: the action plugin of this module fills it in on the
        controller, so that an installer built, or a system evaluated, for a run carries the agent of the collection
        that serves it.
      - Ignored when the flake has no input named C(nixie-metal), or when O(override_inputs) names it.
    type: path
"""
