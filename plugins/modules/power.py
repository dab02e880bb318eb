#!/usr/bin/python
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: power
short_description: Power a machine on, off or reset it through its BMC, and make its next boot a network boot
version_added: 0.1.0
description:
  - Talks to a machine's baseboard management controller (BMC) over Redfish or IPMI from the machine the task runs on,
    usually the controller (C(delegate_to) V(localhost)).
  - Sets a one-time boot override (O(boot)) first, then brings the power to O(state), then waits until the BMC reports
    that state. A machine with an installed disk thus boots from the network once (O(boot=network)), and after the
    installation from its disk again (O(boot=disk)).
  - Idempotent. O(state=on) on a machine that is on, O(state=off) on one that is off, and a boot override that is
    already set change nothing. O(state=reset) always acts.
  - With neither O(state) nor O(boot) the module only reads the BMC and returns the power state and boot override.
  - Every failure names the BMC, says what went wrong and what to do (unreachable, user or password refused, a BMC that
    does not support one-time boot overrides, a power state that is not reached in time). The password is never
    returned or logged.
  - For Wake-on-LAN, which can only power a machine on, see M(nixie.metal.wake_on_lan).
author:
  - nixie.metal contributors (@nixie-metal)
requirements:
  - sushy (Python library) for O(driver=redfish), pyghmi (Python library) for O(driver=ipmi), on the machine the task
    runs on.
extends_documentation_fragment:
  - nixie.metal._attributes
  - nixie.metal._attributes.action_group
attributes:
  check_mode:
    details:
      - Logs in to the BMC and reads the power state and boot override (so a wrong address or password fails in check
        mode too), then reports what would change, with RV(power_after) and RV(boot_after) predicted. Changes nothing.
  diff_mode:
    support: full
    details: The power state and boot override before and after.
options:
  driver:
    description:
      - The protocol the BMC speaks. V(redfish) is the DMTF Redfish REST API over HTTPS (iDRAC, iLO, XClarity,
        OpenBMC and most BMCs since about 2016). V(ipmi) is IPMI 2.0 over UDP (RMCP+, C(ipmitool -I lanplus)).
    type: str
    required: true
    choices: [redfish, ipmi]
  address:
    description:
      - The BMC's host name or IP address.
      - For O(driver=redfish) also a URL, V(https://bmc1.example.org) or V(http://10.0.0.5:8000); without a scheme,
        V(https) is used. The service root C(/redfish/v1/) is implied.
    type: str
    required: true
  port:
    description:
      - The BMC's port when not the protocol's default (IPMI V(623); Redfish 443 for https, 80 for http).
    type: int
  user:
    description: The BMC user.
    type: str
    required: true
  password:
    description:
      - The BMC user's password. Never returned or logged.
      - The inventory plugin M(nixie.metal.hosts) gives it as the host variable C(nixie_power_password), taken from an
        environment variable or an Ansible Vault variable; C(hosts.json) never holds it.
    type: str
    required: true
  system:
    description:
      - For O(driver=redfish), the Redfish ComputerSystem to drive, by Id (V(1), V(System.Embedded.1)) or path
        (V(/redfish/v1/Systems/1)). Needed only when the BMC manages several systems (a blade chassis, an emulator).
    type: str
  validate_certs:
    description:
      - For O(driver=redfish) over https, whether the BMC's TLS certificate must be trusted. BMCs often come with a
        self-signed certificate; prefer O(ca_path) to V(false).
    type: bool
    default: true
  ca_path:
    description: For O(driver=redfish), a CA bundle (PEM) to check the BMC's certificate with.
    type: path
  state:
    description:
      - V(on) powers the machine on if it is off. V(off) cuts the power at once if it is on, like holding the power
        button; the operating system is not shut down.
      - V(reset) restarts a machine that is on at once and powers on one that is off, so a fresh boot begins either
        way. It always reports a change.
      - Not set, the power is left as it is.
    type: str
    choices: ['on', 'off', reset]
  boot:
    description:
      - Where the next boot comes from, set as a one-time override before any power change. V(network) is a PXE boot
        (Redfish C(BootSourceOverrideTarget=Pxe) with C(BootSourceOverrideEnabled=Once); IPMI C(bootdev network)).
        V(disk) is a boot from the machine's disk (C(Hdd); C(bootdev disk)); it also replaces a network boot override
        that a BMC keeps beyond one boot.
      - After setting it, the module reads the override back. For V(network), a BMC that accepts the request but
        reports another device fails the task (it does not support one-time boot overrides, and the machine would
        not reach the installer). For V(disk) the module warns instead, because some BMCs report the device the running
        machine started with until it restarts.
      - Not set, the boot override is left as it is.
    type: str
    choices: [network, disk]
  boot_mode:
    description:
      - The firmware mode of the boot set with O(boot), for machines that can boot either way.
      - For O(driver=redfish), V(uefi) or V(legacy) sets C(BootSourceOverrideMode); not set, the BMC keeps its own.
      - For O(driver=ipmi), V(uefi) sets the EFI boot flag. Not set or V(legacy), the flag is clear, which IPMI
        defines as a legacy BIOS boot; most machines boot UEFI anyway, but some switch to legacy, so set V(uefi) for
        UEFI machines.
    type: str
    choices: [uefi, legacy]
  timeout:
    description:
      - Seconds the BMC has to answer one request (Redfish; an IPMI BMC has about 5 s), and to reach O(state) after a
        power change.
    type: int
    default: 30
seealso:
  - module: nixie.metal.wake_on_lan
  - plugin: nixie.metal.hosts
    plugin_type: inventory
  - name: Redfish specification (DMTF DSP0266)
    link: https://www.dmtf.org/standards/redfish
    description: ComputerSystem.Reset and the Boot object's BootSourceOverride properties.
notes:
  - >-
    Some BMCs keep a one-time boot override beyond the next boot (the Redfish emulator C(sushy-emulator) turns
    C(Once) into C(Continuous); many IPMI BMCs ignore the persistence flag). The module warns when the BMC reports
    the override as persistent; set O(boot=disk) after installing, as the provision playbook does.
  - >-
    A BMC may need a moment after power-on before it reports C(On); O(timeout) bounds the wait.
"""

EXAMPLES = r"""
- name: Boot a machine from the network once, powering it on or restarting it
  nixie.metal.power:
    driver: redfish
    address: https://bmc-node1.example.org
    user: admin
    password: "{{ vault_bmc_password }}"
    boot: network
    state: reset
  delegate_to: localhost

- name: Boot from the disk again after the installation (IPMI)
  nixie.metal.power:
    driver: ipmi
    address: 10.0.0.21
    user: ADMIN
    password: "{{ lookup('ansible.builtin.env', 'NODE2_BMC_PASSWORD') }}"
    boot: disk
  delegate_to: localhost

- name: Power off every machine whose hosts.json entry names a BMC
  nixie.metal.power:
    driver: "{{ nixie_power_driver }}"
    address: "{{ nixie_power_address }}"
    port: "{{ nixie_power_port | default(omit) }}"
    user: "{{ nixie_power_user }}"
    password: "{{ nixie_power_password }}"
    system: "{{ nixie_power_system | default(omit) }}"
    state: "off"
  delegate_to: localhost
  when: nixie_power_driver != 'wol'

- name: Read the power state only
  nixie.metal.power:
    driver: redfish
    address: 10.0.0.5
    user: admin
    password: "{{ vault_bmc_password }}"
    validate_certs: false
  delegate_to: localhost
  register: node_power
"""

RETURN = r"""
bmc:
  description: How messages name the BMC (protocol, address and, for Redfish, the system).
  returned: always
  type: str
  sample: Redfish BMC https://10.0.0.5 (system 1)
power_before:
  description:
    - The power state read before acting; V(on), V(off), V(powering_on), V(powering_off) or V(unknown).
  returned: when the BMC could be read
  type: str
  sample: "off"
power_after:
  description:
    - The power state read after acting (in check mode, or when nothing was to be done, the state predicted).
  returned: success
  type: str
  sample: "on"
boot_before:
  description: The boot override read before acting.
  returned: when the BMC could be read
  type: dict
  contains:
    device:
      description: Where the next boot comes from (V(network), V(disk), V(cd), another device), or V(null) for the
        firmware's own boot order.
      type: str
      sample: disk
    persistent:
      description: Whether the BMC keeps the override beyond the next boot.
      type: bool
      sample: false
    mode:
      description: V(uefi), V(legacy), or V(null) when the BMC does not say.
      type: str
      sample: uefi
boot_after:
  description: The boot override read after acting (in check mode, the one predicted); as RV(boot_before).
  returned: success
  type: dict
  sample: {device: network, persistent: false, mode: uefi}
actions:
  description:
    - What was done, in order (in check mode, what would be done); empty when nothing had to change.
    - On failure, what had been done before it.
  returned: always
  type: list
  elements: str
  sample: [boot once from network, power on]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.nixie.metal.plugins.module_utils._power import control, plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            driver=dict(type="str", required=True, choices=list(plan.DRIVERS)),
            address=dict(type="str", required=True),
            port=dict(type="int"),
            user=dict(type="str", required=True),
            password=dict(type="str", required=True, no_log=True),
            system=dict(type="str"),
            validate_certs=dict(type="bool", default=True),
            ca_path=dict(type="path"),
            state=dict(type="str", choices=list(plan.STATES)),
            boot=dict(type="str", choices=list(plan.BOOT_DEVICES)),
            boot_mode=dict(type="str", choices=list(plan.BOOT_MODES)),
            timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    params = module.params
    missing = control.missing_library(params["driver"])
    if missing:
        module.fail_json(msg=missing_required_lib(missing[0]), exception=missing[1], actions=[])
    if params["timeout"] < 1:
        module.fail_json(msg="timeout must be at least 1 second, not %d" % params["timeout"], actions=[])
    if params["driver"] == "ipmi" and params["system"]:
        module.fail_json(msg="system is a Redfish option; an IPMI BMC drives one machine", actions=[])
    try:
        with control.open_bmc(params) as bmc:
            result = control.apply(bmc, state=params["state"], device=params["boot"], mode=params["boot_mode"],
                                   check_mode=module.check_mode, timeout=params["timeout"])
    except plan.PowerError as exc:
        partial = dict(exc.partial)
        partial.setdefault("actions", [])
        module.fail_json(msg=str(exc), **partial)
    for warning in result.pop("warnings"):
        module.warn(warning)
    if module._diff:
        result["diff"] = {
            "before": {"power": result["power_before"], "boot": result["boot_before"]},
            "after": {"power": result["power_after"], "boot": result["boot_after"]},
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
