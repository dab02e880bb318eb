#!/usr/bin/python
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nix_eval
short_description: Evaluate an attribute of a flake with Nix, with the run's input overrides
version_added: 0.1.0
description:
  - Runs C(nix eval --json) of one flake installable and returns its value. Nothing is built, and the flake's
    C(flake.lock) is not written (C(--no-write-lock-file)).
  - The flake's inputs are overridden as M(nixie.metal.nix_build) overrides them (O(agent_flake), O(override_inputs)),
    so a value evaluated here belongs to the same flake that module builds, and a flake whose C(nixie-metal) input
    cannot be fetched (no C(flake.lock), or one that does not pin it) evaluates all the same.
  - The role M(nixie.metal.nixos_anywhere) evaluates the disks of a machine's disko configuration with it.
  - Enables the C(nix-command) and C(flakes) experimental features for its own call; no change to C(nix.conf) is needed.
author:
  - nixie.metal contributors (@nixie-metal)
requirements:
  - Nix 2.8 or newer on the machine the task runs on (Debian 12's C(nix-bin) is 2.8); see C(docs/nix.md).
extends_documentation_fragment:
  - nixie.metal._attributes
  - nixie.metal._attributes.read_only
  - nixie.metal._attributes.action_group
  - nixie.metal._nix
  - nixie.metal._nix.flake_inputs
options:
  installable:
    description:
      - The flake installable to evaluate, as C(FLAKE#ATTRIBUTE.PATH), for example
        C(./site#nixosConfigurations.node1.config.networking.hostName).
      - A relative flake path resolves against O(chdir). It must start with C(./) or C(/); a bare word is a flake
        registry name to Nix.
    type: str
    required: true
  apply:
    description:
      - >-
        A Nix function applied to the value before it is returned (C(--apply)), for example
        C(disks: builtins.attrNames disks).
    type: str
  timeout:
    description:
      - Seconds the evaluation may take (it may have to fetch the flake's inputs). When they are up, C(nix) is stopped
        and the task fails with the end of its log. V(0) means no limit.
    type: int
    default: 600
seealso:
  - module: nixie.metal.nix_build
  - name: Which Nix, and how the flake's inputs are overridden
    description: docs/nix.md of this collection.
    link: https://github.com/nixie-metal/nixie.metal/blob/main/docs/nix.md
notes:
  - C(changed) is always V(false).
"""

EXAMPLES = r"""
- name: The disks the disko configuration of node1 names
  nixie.metal.nix_eval:
    installable: "{{ playbook_dir }}/site#nixosConfigurations.node1.config.disko.devices.disk"
    apply: "disks: map (name: disks.${name}.device) (builtins.attrNames disks)"
  register: disks

- name: Show them
  ansible.builtin.debug:
    msg: "{{ disks.value }}"
"""

RETURN = r"""
value:
  description: The value of O(installable) (after O(apply)), as JSON gives it.
  returned: success
  type: raw
  sample: [/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T123456]
override_inputs:
  description:
    - The inputs that were overridden, by name, with the flake reference each stands for; C(nixie-metal) as C(path:)
      and the O(agent_flake) directory when the flake has that input. Empty when nothing was overridden.
  returned: success
  type: dict
  sample:
    nixie-metal: path:/root/.ansible/collections/ansible_collections/nixie/metal
cmd:
  description: The C(nix eval) command line; the copy of O(agent_flake) is shown as the directory it was copied from.
  returned: always
  type: list
  elements: str
log_tail:
  description: The last lines of nix's log, ANSI colours removed.
  returned: failure
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nixie.metal.plugins.module_utils import _argspec
from ansible_collections.nixie.metal.plugins.module_utils._nix import calls, errors, version


def main():
    module = AnsibleModule(
        argument_spec=dict(
            installable=dict(type="str", required=True),
            apply=dict(type="str"),
            timeout=dict(type="int", default=600),
            **_argspec.nix_call(),
            **_argspec.flake_inputs(),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["timeout"] < 0:
        module.fail_json(msg="timeout must be 0 (no limit) or a number of seconds")
    if "#" not in params["installable"]:
        module.fail_json(msg="installable %r must be FLAKE#ATTRIBUTE, for example './site#nixosConfigurations.node1.config'"
                         % params["installable"])
    try:
        nix = version.find_nix(params["executable"])
        result = calls.evaluate(
            nix,
            params["installable"],
            apply=params["apply"],
            cwd=params["chdir"],
            timeout=params["timeout"] or None,
            impure=params["impure"],
            offline=params["offline"],
            options=params["options"],
            extra_args=params["extra_args"],
            override_inputs=params["override_inputs"],
            agent_flake=params["agent_flake"],
        )
    except errors.NixError as exc:
        details = dict(log_tail=exc.log_tail, cmd=exc.cmd)
        if exc.rc is not None:
            details["rc"] = exc.rc
        module.fail_json(msg=exc.msg, **details)

    for warning in result.pop("warnings"):
        module.warn("nix: %s" % warning)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
