#!/usr/bin/python
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_status
short_description: Tell whether a machine already runs the NixOS system its flake builds
version_added: 0.1.0
description:
  - Finds the machine with MAC address O(mac), connects to it over SSH once, and reports in RV(state) whether it needs
    installing.
  - The address is O(address) when given (for example the one C(hosts.json) records). Otherwise the controller's neighbour
    table (C(ip neigh)) is read; an IPv4 entry the kernel has just confirmed (C(REACHABLE), C(PERMANENT)) is used as is.
    Failing that, an ARP sweep asks every address of the directly connected IPv4 subnets (or of O(interface)/O(subnet))
    who has the MAC. A confirmed IPv6 neighbour is used only when no IPv4 address answers.
  - Over SSH, one command reads the C(ID) of C(/etc/os-release) and the target of C(/run/current-system).
  - With O(wait), the machine is looked for in rounds until an SSH server that is the machine answers, or the time is
    up. After a reboot, the installed system may come back late, and at another address than its installer's (NixOS
    leases by DUID, with a new machine-id). Each round looks at O(last_address) first, then for O(mac) as above; the
    last address counts only when it is still the machine's, that is, with O(known_host_keys), when it shows one of them,
    and without, when the neighbour table names no other MAC for it.
  - Only when the machine runs NixOS is the expected system needed. It is O(expected_system), or it is evaluated with
    C(nix eval FLAKE#nixosConfigurations.ATTRIBUTE.config.system.build.toplevel.outPath). Nothing is built, and the
    flake's C(flake.lock) is not written. A machine that is absent or runs another OS costs no evaluation.
  - The evaluation overrides the flake's inputs as M(nixie.metal.nix_build) does (O(agent_flake), O(override_inputs)),
    so it gives the path that module builds, and a flake whose C(nixie-metal) input cannot be fetched (no C(flake.lock),
    or one that does not pin it) evaluates all the same.
  - The module only reads. It never changes the machine or the controller, and always reports C(changed=false).
author:
  - nixie.metal contributors (@nixie-metal)
requirements:
  - The OpenSSH client (C(ssh)) on the machine the task runs on.
  - C(ip) (iproute2) to read the neighbour table and the controller's subnets, unless O(address) is given.
  - The Python library scapy and root (raw sockets) for the ARP sweep, when the address is neither given nor in the
    neighbour table.
  - Nix 2.8 or newer when O(flake) is used and the machine runs NixOS.
extends_documentation_fragment:
  - nixie.metal._attributes
  - nixie.metal._attributes.read_only
  - nixie.metal._attributes.action_group
  - nixie.metal._nix.flake_inputs
attributes:
  platform:
    details: Finding the address without O(address) needs Linux (C(ip neigh), raw sockets).
options:
  mac:
    description:
      - MAC address of the machine, in any usual spelling (V(52:54:00:12:34:01), V(52-54-00-12-34-01), V(525400123401)).
    type: str
    required: true
  address:
    description:
      - The machine's IP address or host name, when known. No discovery is made then.
      - Mutually exclusive with O(last_address).
    type: str
  last_address:
    description:
      - Where the machine was last seen, for example its installer's address before the reboot into the installed system.
        Looked at first, then the machine is looked for by O(mac), as without O(address).
      - It counts as the machine's only when an SSH server answers there and, with O(known_host_keys), it shows one of
        them (a mismatch there is no failure), or without, the neighbour table names no other MAC for it. Otherwise
        another machine may hold it now, and it is passed over.
      - Behind proxy ARP, where every neighbour entry holds the router's MAC, the machine is found only at an address
        that shows one of O(known_host_keys), or at O(address).
    type: str
  wait:
    description:
      - Seconds to keep looking for the machine while it is V(absent) (no address for O(mac), or no SSH server that is
        the machine answering). Rounds follow each other about a second apart; a round begun before the end is finished.
      - V(0) looks once (with O(last_address), at it and then by O(mac)).
    type: int
    default: 0
  interface:
    description:
      - The controller's network interface on the machines' segment, for example V(enp3s0). Limits the neighbour
        table lookup and the ARP sweep to it.
      - When neither O(interface) nor O(subnet) is set, every directly connected IPv4 subnet of at most 4096
        addresses is swept.
    type: str
  subnet:
    description:
      - The IPv4 subnet to sweep, for example V(192.168.10.0/24), at most 4096 addresses. Without O(interface) the
        sweep goes out of the interface that has an address in it.
    type: str
  arp_timeout:
    description:
      - Seconds to wait for ARP answers per swept subnet. The sweep stops as soon as the machine answers.
    type: float
    default: 2.0
  ssh_user:
    description: The user to log in as.
    type: str
    default: root
  ssh_key:
    description:
      - Private key file to log in with. Without it, the SSH agent and the default keys of the user running the
        task are tried.
    type: path
  ssh_port:
    description: The SSH port.
    type: int
    default: 22
  known_host_keys:
    description:
      - SSH host public keys of the machine, as V(TYPE BASE64) (a trailing comment is ignored), for example the
        C(ssh_host_keys) that M(nixie.metal.wait_for_agent) returns.
      - When given, the connection is made with exactly these keys as known hosts and strict host key checking.
        A machine showing any other key makes the task B(fail) (it is not the machine expected, it was reinstalled
        with new keys, or someone is in the middle); nothing but the key exchange has happened then.
      - When empty, any host key is accepted (a new, empty known hosts file each run). See the notes.
    type: list
    elements: str
    default: []
  expected_system:
    description:
      - Store path of the system the machine should run, for example
        V(/nix/store/0c2l4jxqn1g4q3z6jdd6yzkmzy8jzd0w-nixos-system-web1-24.05).
      - Mutually exclusive with O(flake).
      - Without O(expected_system) and O(flake), what the machine runs is read but compared with nothing, and a machine
        running NixOS is V(other_system).
    type: str
  flake:
    description:
      - Flake reference holding the machine's NixOS configuration, for example V(.) or V(github:example/site).
      - Evaluated, with O(attribute), only when the machine runs NixOS.
    type: str
  attribute:
    description:
      - Name of the machine's configuration under C(nixosConfigurations) of O(flake), usually the host's
        C(nixie_flake_attr).
      - Required with O(flake).
    type: str
  nix_executable:
    description:
      - Path or name of the C(nix) executable. By default C(nix) on the E(PATH), then the usual Nix install locations.
    type: str
  timeout:
    description:
      - Seconds the SSH connection may take to be set up. The whole SSH check is stopped after three times that.
    type: int
    default: 10
  eval_timeout:
    description: Seconds the evaluation of O(flake) may take (it may have to fetch the flake's inputs).
    type: int
    default: 600
seealso:
  - module: nixie.metal.wait_for_agent
  - plugin: nixie.metal.hosts
    plugin_type: inventory
notes:
  - >-
    States: V(absent) means no address was found for the MAC, or nothing listens on the SSH port, or the address is
    unreachable. V(unknown_os) means something answered but it is not NixOS, or SSH refused us (wrong key or user),
    or the check could not be completed. V(other_system) means NixOS runs a system other than the expected one.
    V(installed) means C(/run/current-system) is the expected store path.
  - >-
    Host keys: without O(known_host_keys) the module accepts whatever host key the machine shows. It sends nothing
    secret (public key authentication cannot be replayed elsewhere) and only reads two files, so the risk is a wrong
    answer planted by someone able to take over the machine's address on the segment: a machine reported V(installed)
    that is not, and is skipped. The user's own known hosts files are not used, because installers and reinstalled
    machines show new host keys at addresses that were seen before, which would make every check fail. Pass
    O(known_host_keys) where the keys are known, for example after M(nixie.metal.wait_for_agent).
  - The user's SSH client configuration (C(~/.ssh/config)) still applies, for example a C(ProxyJump); the options the
    module sets on the command line take precedence.
  - >-
    Whatever that configuration says, the connection is a new one whose host key is checked: the module always gives
    C(ControlMaster=no), C(ControlPath=none) (a master connection the configuration shares, C(ControlMaster auto), would
    otherwise be reused without any host key check), C(VerifyHostKeyDNS=no) and, with OpenSSH 8.5 or newer,
    C(KnownHostsCommand=none) (both would add accepted keys). An older client has no C(KnownHostsCommand) to override
    and would stop on the option, so it is left out; so it is, with a warning, when C(ssh -V) names no OpenSSH release.
"""

EXAMPLES = r"""
- name: Which machines need installing?
  nixie.metal.host_status:
    mac: "{{ nixie_mac }}"
    address: "{{ ansible_host | default(omit) }}"
    flake: "{{ nixie_flake }}"
    attribute: "{{ nixie_flake_attr }}"
    ssh_key: "{{ nixie_ssh_key | default(omit) }}"
    interface: enp3s0
  delegate_to: localhost
  become: true  # the ARP sweep needs raw sockets
  register: status

- name: Skip machines that already run their system
  ansible.builtin.meta: end_host
  when: status.state == 'installed'

- name: After the install, the machine must run exactly the built system, with the host keys it was given
  nixie.metal.host_status:
    mac: "{{ nixie_mac }}"
    address: "{{ agent.ip }}"
    expected_system: "{{ built.toplevel }}"
    known_host_keys: "{{ installed_host_keys }}"
  delegate_to: localhost
  register: after
  failed_when: after.state != 'installed'

- name: After the reboot, find the installed system by its MAC (it may have another address than its installer) and check it
  nixie.metal.host_status:
    mac: "{{ nixie_mac }}"
    last_address: "{{ agent.ip }}"
    wait: 900
    expected_system: "{{ built.toplevel }}"
    known_host_keys: "{{ installed_host_keys }}"
  delegate_to: localhost
  become: true  # the ARP sweep needs raw sockets
  register: after
  failed_when: after.state != 'installed'
"""

RETURN = r"""
state:
  description:
    - V(absent), V(unknown_os), V(other_system) or V(installed); see the notes.
  returned: success
  type: str
  sample: installed
ip:
  description: The address checked, or V(null) when none was found.
  returned: always
  type: str
  sample: 192.168.10.23
mac:
  description: O(mac), lower-case and colon-separated.
  returned: always
  type: str
  sample: "52:54:00:12:34:01"
address_source:
  description:
    - Where RV(ip) came from. V(address) (the option), V(neighbour) (a confirmed entry of the neighbour table),
      V(arp) (the ARP sweep), V(last_address) (the option), V(stale_neighbour) (an unconfirmed entry, used only when no sweep was possible,
      with a warning), or V(null).
  returned: always
  type: str
  sample: arp
os_id:
  description: C(ID) from the machine's C(/etc/os-release), or V(null) when it was not read.
  returned: always
  type: str
  sample: nixos
current_system:
  description: Where C(/run/current-system) points on the machine, or V(null).
  returned: always
  type: str
  sample: /nix/store/0c2l4jxqn1g4q3z6jdd6yzkmzy8jzd0w-nixos-system-web1-24.05
expected_system:
  description:
    - O(expected_system), or the evaluated store path of the system of O(flake). V(null) when O(flake) was not
      evaluated because the machine does not run NixOS.
  returned: always
  type: str
  sample: /nix/store/0c2l4jxqn1g4q3z6jdd6yzkmzy8jzd0w-nixos-system-web1-24.05
waited:
  description: Seconds spent looking for the machine (O(wait)); V(0) when it was looked for once.
  returned: success
  type: float
  sample: 23.4
reason:
  description: Why RV(state) is what it is, in words.
  returned: success
  type: str
  sample: 192.168.10.23 runs ID=debian, not NixOS
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nixie.metal.plugins.module_utils import _argspec
from ansible_collections.nixie.metal.plugins.module_utils._host_status import address, probe, status


def main():
    module = AnsibleModule(
        argument_spec=dict(
            mac=dict(type="str", required=True),
            address=dict(type="str"),
            last_address=dict(type="str"),
            wait=dict(type="int", default=0),
            interface=dict(type="str"),
            subnet=dict(type="str"),
            arp_timeout=dict(type="float", default=address.DEFAULT_ARP_TIMEOUT),
            ssh_user=dict(type="str", default="root"),
            ssh_key=dict(type="path"),
            ssh_port=dict(type="int", default=22),
            known_host_keys=dict(type="list", elements="str", default=[], no_log=False),
            expected_system=dict(type="str"),
            flake=dict(type="str"),
            attribute=dict(type="str"),
            nix_executable=dict(type="str"),
            timeout=dict(type="int", default=probe.DEFAULT_TIMEOUT),
            eval_timeout=dict(type="int", default=probe.DEFAULT_EVAL_TIMEOUT),
            **_argspec.flake_inputs(),
        ),
        mutually_exclusive=[("expected_system", "flake"), ("address", "last_address")],
        required_together=[("flake", "attribute")],
        supports_check_mode=True,
    )
    for name in ("timeout", "eval_timeout", "ssh_port"):
        if module.params[name] <= 0:
            module.fail_json(msg="%s must be a positive number" % name)
    if module.params["wait"] < 0:
        module.fail_json(msg="wait must be 0 (look once) or a positive number of seconds")
    if module.params["arp_timeout"] <= 0:
        module.fail_json(msg="arp_timeout must be a positive number")
    warnings = []
    try:
        result = status.host_status(module.params, warnings=warnings)
    except status.HostStatusError as exc:
        for warning in warnings:
            module.warn(warning)
        # What was found before the failure (mac, ip, ...), but no state: there is none.
        found = dict((k, v) for k, v in exc.result.items() if k not in ("state", "reason", "msg", "changed"))
        module.fail_json(msg=exc.msg, changed=False, **found)
    for warning in warnings:
        module.warn(warning)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
