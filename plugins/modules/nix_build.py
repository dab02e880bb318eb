#!/usr/bin/python
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nix_build
short_description: Build flake installables with Nix and return their store paths
version_added: 0.1.0
description:
  - Builds every installable of the task in B(one) C(nix build --no-link --json) call, so that outputs
    that belong together (an installer's kernel, netboot initrd and system) come from the same evaluation
    of the same flake, and returns the store paths of each installable's outputs.
  - With O(installer), builds the three outputs a NixOS configuration needs to boot over the network
    (C(config.system.build.kernel), C(config.system.build.netbootRamdisk) and C(config.system.build.toplevel))
    and returns what M(nixie.metal.pxe_server) takes - RV(kernel), RV(initrd) and RV(cmdline) - plus RV(init).
    O(installers) does the same for one installer per architecture and returns RV(artifacts).
  - The kernel file name and the kernel parameters are read from the built system (its C(kernel) link and
    C(kernel-params) file), so they are products of the same build. No result of another evaluation is mixed in.
  - With more than one installable, a C(nix build --dry-run) (evaluation only) runs first to learn which
    derivation belongs to which installable; the real build then must produce exactly those derivations,
    otherwise the task fails because the flake changed while it ran.
  - Enables the C(nix-command) and C(flakes) experimental features for its own calls; no change to
    C(nix.conf) is needed.
  - The installer's agent is always the one of the collection that runs the task. When the flake has an input
    named C(nixie-metal), every call gets C(--override-input nixie-metal path:...) pointing at this
    collection's C(flake.nix) and C(nix/) (see O(agent_flake)), whatever the flake or its C(flake.lock) say.
    A flake without that input is built as it is. O(override_inputs) overrides inputs of your own.
author:
  - nixie.metal contributors (@nixie-metal)
requirements:
  - >-
    Nix 2.8 or newer on the controller (Debian 12's C(nix-bin) is 2.8); the flake being built may need a newer one,
    see C(docs/nix.md).
extends_documentation_fragment:
  - nixie.metal._attributes
  - nixie.metal._attributes.action_group
  - nixie.metal._nix
  - nixie.metal._nix.flake_inputs
attributes:
  check_mode:
    details:
      - Runs C(nix build --dry-run), which evaluates but builds nothing, and returns the store paths the build
        would produce and what would be built or fetched. C(changed) says whether anything would be.
      - For O(installer) the kernel file name and parameters come from C(nix eval) when the system is not built yet.
options:
  installables:
    description:
      - Flake installables to build, such as C(./examples#nixosConfigurations.node1.config.system.build.toplevel)
        or C(github:owner/repo#package).
      - Relative flake paths resolve against O(chdir). Paths must start with C(./) or C(/); a bare word is a
        flake registry name to Nix.
      - Nix 2.8 builds the default outputs of each installable; RV(outputs) lists the ones built.
    type: list
    elements: str
    default: []
  installer:
    description:
      - A NixOS configuration to boot over the network, as C(FLAKE#nixosConfigurations.NAME).
        C(FLAKE#NAME) without a dot is short for that.
      - The configuration must import NixOS's netboot module (C(installer/netboot/netboot-minimal.nix) does),
        which defines C(config.system.build.netbootRamdisk).
      - Its kernel, netboot initrd and system are built in the same call as O(installables).
    type: str
  installers:
    description:
      - >-
        Installers for several architectures, as a mapping from Nix system to NixOS configuration, for
        example C({"x86_64-linux": "./site#installer", "aarch64-linux": "./site#installer-aarch64"}).
      - Each one is built like O(installer), in the same call, and returned under its key in RV(artifacts).
      - Building for another architecture than the controller's needs a remote builder or binfmt emulation
        (C(boot.binfmt.emulatedSystems) on NixOS, C(extra-platforms) in C(nix.conf)).
    type: dict
  timeout:
    description:
      - Seconds the whole task may take. When they are up, C(nix) and everything it started are stopped
        (C(SIGTERM), then C(SIGKILL)) and the task fails with the end of nix's log.
      - V(0) means no limit.
    type: int
    default: 0
seealso:
  - module: nixie.metal.pxe_server
  - name: The installer, how it is built and booted
    description: docs/installer.md of this collection.
    link: https://github.com/nixie-metal/nixie.metal/blob/main/docs/installer.md
notes:
  - >-
    While inputs are overridden nix does not write C(flake.lock); run C(nix flake lock) in the site once so that
    the other inputs stay pinned (nix prints a warning about the lock file then, which this module does not repeat).
  - C(changed) is V(true) only when Nix built or downloaded something (its C(building) and C(substituting)
    log events); a second run with the same inputs reports V(false).
  - On failure, C(msg) holds nix's error and the last lines of the failing builder; RV(log_tail) more of the log.
"""

EXAMPLES = r"""
- name: Build the installer of the example flake
  nixie.metal.nix_build:
    installer: "{{ playbook_dir }}/examples#nixosConfigurations.installer"
  register: installer

- name: Serve it
  nixie.metal.pxe_server:
    hosts_file: "{{ playbook_dir }}/examples/hosts.json"
    kernel: "{{ installer.kernel }}"
    initrd: "{{ installer.initrd }}"
    cmdline: "{{ installer.cmdline }}"
  async: 3600
  poll: 0
  become: true

- name: Installers for x86_64 and aarch64 and two host systems, all from one evaluation
  nixie.metal.nix_build:
    chdir: "{{ playbook_dir }}"
    installers:
      x86_64-linux: ./examples#installer
      aarch64-linux: ./examples#installer-aarch64
    installables:
      - ./examples#nixosConfigurations.node1.config.system.build.toplevel
      - ./examples#nixosConfigurations.node2.config.system.build.toplevel
    options:
      cores: 4
    timeout: 7200
  register: build

- name: Show where node1's system is
  ansible.builtin.debug:
    msg: "{{ build.outputs['./examples#nixosConfigurations.node1.config.system.build.toplevel'].out }}"
"""

RETURN = r"""
outputs:
  description: For each installable (as given), its outputs by name.
  returned: success
  type: dict
  sample:
    "./examples#nixosConfigurations.node1.config.system.build.toplevel":
      out: /nix/store/9x2dk4cf1pvyc7c0xsszg5s0v0xv1iqd-nixos-system-node1-25.05
drv_paths:
  description: For each installable, the derivation that was built (V(null) for a plain store path).
  returned: success
  type: dict
built:
  description: Derivations Nix built in this run; in check mode, the ones it would build.
  returned: success
  type: list
  elements: str
fetched:
  description: Store paths Nix downloaded from a substituter; in check mode, the ones it would download.
  returned: success
  type: list
  elements: str
override_inputs:
  description:
    - >-
      The inputs that were overridden, by name, with the flake reference each stands for: the ones of
      O(override_inputs), and C(nixie-metal) as C(path:) and the O(agent_flake) directory when the flake has that input.
    - Empty when nothing was overridden.
  returned: success
  type: dict
  sample:
    nixie-metal: path:/root/.ansible/collections/ansible_collections/nixie/metal
    nixpkgs: path:/srv/mirror/nixpkgs
cmd:
  description:
    - The C(nix build) command line (in check mode, with C(--dry-run)).
    - The copy of O(agent_flake) that nix was given is shown as the directory it was copied from.
  returned: success
  type: list
  elements: str
kernel:
  description: The installer's kernel image (C(bzImage) on x86_64, C(Image) on aarch64).
  returned: when O(installer) is given
  type: str
  sample: /nix/store/4ksm1v0hz7yb5z2c6wxk1s0x5b1j8pqa-linux-6.12.30/bzImage
initrd:
  description: The installer's netboot initrd, which carries the whole system in a squashfs.
  returned: when O(installer) is given
  type: str
  sample: /nix/store/3l3vprs4mqyq1gnb8bwqv0nl0w1dfq3z-initrd/initrd
init:
  description: The system's stage 2 init, C(<toplevel>/init); the kernel needs it as C(init=).
  returned: when O(installer) is given
  type: str
  sample: /nix/store/9dz5lqbbmv7bx3jf8y8wrxm39kmlx8yi-nixos-system-nixos-25.05/init
toplevel:
  description: The installer's system (C(config.system.build.toplevel)).
  returned: when O(installer) is given
  type: str
kernel_params:
  description: The configuration's C(boot.kernelParams), as the built system records them.
  returned: when O(installer) is given
  type: list
  elements: str
  sample: [loglevel=4, console=ttyS0]
cmdline:
  description:
    - The kernel command line the installer needs - C(init=) followed by RV(kernel_params) - ready for the
      O(nixie.metal.pxe_server#module:cmdline) option, which adds the C(nixie.*) arguments itself.
  returned: when O(installer) is given
  type: str
  sample: init=/nix/store/9dz5lqbbmv7bx3jf8y8wrxm39kmlx8yi-nixos-system-nixos-25.05/init loglevel=4
system:
  description: The installer's Nix system, read from the built system (NixOS releases that record it).
  returned: when O(installer) is given and known
  type: str
  sample: x86_64-linux
artifacts:
  description:
    - For each key of O(installers), the same values as for O(installer)
      (C(kernel), C(initrd), C(init), C(toplevel), C(kernel_params), C(cmdline), maybe C(system)).
  returned: when O(installers) is given
  type: dict
  sample:
    aarch64-linux:
      kernel: /nix/store/7c1a...-linux-6.12.30/Image
      initrd: /nix/store/0mqf...-initrd/initrd
      init: /nix/store/p3xw...-nixos-system-nixos-25.05/init
      cmdline: init=/nix/store/p3xw...-nixos-system-nixos-25.05/init loglevel=4
log_tail:
  description: The last lines of nix's log (build output, errors), ANSI colours removed.
  returned: failure
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nixie.metal.plugins.module_utils import _argspec
from ansible_collections.nixie.metal.plugins.module_utils._nix import calls, errors, version

INSTALLER_KEY = "\0installer"  # internal key of O(installer) among the installers


def main():
    module = AnsibleModule(
        argument_spec=dict(
            installables=dict(type="list", elements="str", default=[]),
            installer=dict(type="str"),
            installers=dict(type="dict"),
            timeout=dict(type="int", default=0),
            **_argspec.nix_call(),
            **_argspec.flake_inputs(),
        ),
        required_one_of=[("installables", "installer", "installers")],
        supports_check_mode=True,
    )
    params = module.params
    if not (params["installables"] or params["installer"] or params["installers"]):
        module.fail_json(msg="nothing to build: give installables, installer or installers")
    if params["timeout"] < 0:
        module.fail_json(msg="timeout must be 0 (no limit) or a number of seconds")
    installers = {str(k): str(v) for k, v in (params["installers"] or {}).items()}
    if params["installer"]:
        installers[INSTALLER_KEY] = params["installer"]

    try:
        nix = version.find_nix(params["executable"])
        result = calls.build(
            nix,
            installables=params["installables"],
            installers=installers,
            check_mode=module.check_mode,
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
        details = dict(log_tail=exc.log_tail)
        if exc.rc is not None:
            details["rc"] = exc.rc
        if exc.cmd:
            details["cmd"] = exc.cmd
        module.fail_json(msg=exc.msg, **details)

    for warning in result.pop("warnings"):
        module.warn("nix: %s" % warning)
    artifacts = result.pop("artifacts")
    if INSTALLER_KEY in artifacts:
        result.update(artifacts.pop(INSTALLER_KEY))
    if params["installers"]:
        result["artifacts"] = artifacts
    module.exit_json(**result)


if __name__ == "__main__":
    main()
