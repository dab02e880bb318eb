#!/usr/bin/python
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: wait_for_agent
short_description: Wait for a machine's installer to phone home and return its address
version_added: 0.1.0
description:
  - Waits until the installer booted by M(nixie.metal.pxe_server) on the machine with O(mac) phones home,
    then returns the address it called from, the addresses and SSH host keys it reported.
  - Long-polls the server's API, so the answer comes as soon as the agent calls.
  - When O(timeout) passes first, fails with the host's last event and the likely cause, for example
    no DHCP request seen (not powered on, or wrong network segment), an offer but no TFTP transfer
    (a firewall on UDP 69), or kernel and initrd served but no phone-home (the kernel or the agent).
author:
  - nixie.metal contributors (@nixie-metal)
extends_documentation_fragment:
  - nixie.metal._attributes
  - nixie.metal._attributes.action_group
attributes:
  check_mode:
    details: In check mode nothing is waited for; the module reports what it would wait for.
options:
  api_url:
    description: The agent API of the running server, as M(nixie.metal.pxe_server) returns it in RV(nixie.metal.pxe_server#module:api_url).
    type: str
    required: true
  mac:
    description: The MAC address the machine network-boots from (any usual spelling).
    type: str
    required: true
  timeout:
    description: Seconds to wait for the phone-home.
    type: float
    default: 600
  poll:
    description: Longest single long-poll, in seconds; each returns early when the host has news.
    type: float
    default: 25
  until_state:
    description:
      - The boot stage to wait for. The default waits for the phone-home; an earlier stage returns as soon as
        the machine has reached it or gone past it, so a loop over the stages shows the boot's progress as it
        happens (the provision playbook does this, one line per stage).
      - Only with V(phoned_home) are RV(ip), RV(addresses), RV(ssh_host_keys) and RV(hostname) returned.
    type: str
    choices: [offered, ipxe_served, script_served, kernel_served, initrd_served, phoned_home]
    default: phoned_home
seealso:
  - module: nixie.metal.pxe_server
"""

EXAMPLES = r"""
- name: Wait for the installer to phone home
  nixie.metal.wait_for_agent:
    api_url: "http://{{ pxe_address }}:8080/api/v1"
    mac: "{{ nixie_mac }}"
    timeout: 900
  delegate_to: localhost
  register: agent

- name: Follow the machine's boot, one line per stage as it is reached
  nixie.metal.wait_for_agent:
    api_url: "http://{{ pxe_address }}:8080/api/v1"
    mac: "{{ nixie_mac }}"
    until_state: "{{ stages[stages.index(boot.state) + 1 if boot.state is defined else 0] }}"
    timeout: 900
  vars:
    stages: [offered, ipxe_served, script_served, kernel_served, initrd_served, phoned_home]
  loop: "{{ range(6) | list }}"
  loop_control:
    label: "{{ boot.state | default('?') }}"
    break_when: boot.state == 'phoned_home'
  delegate_to: localhost
  register: boot

- name: Install on the address it phoned home from
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} is at {{ agent.ip }}"
"""

RETURN = r"""
ip:
  description:
    - The address the server saw the phone-home come from, checked against the machine's MAC (RV(binding)); reach the installer there.
    - Never an address the report itself names.
  returned: success, when O(until_state=phoned_home)
  type: str
  sample: 192.168.1.57
addresses:
  description: Every address the agent reported, with interface, MAC and prefix length.
  returned: success, when O(until_state=phoned_home)
  type: list
  elements: dict
  sample: [{ifname: eth0, mac: "52:54:00:12:34:01", address: 192.168.1.57, prefix: 24}]
ssh_host_keys:
  description: The installer's SSH host public keys, as reported over the token-authenticated phone-home.
  returned: success, when O(until_state=phoned_home)
  type: list
  elements: str
  sample: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... root@nixos"]
hostname:
  description: The installer's host name.
  returned: success, when O(until_state=phoned_home)
  type: str
events:
  description: The host's timestamped events, from the first DHCP offer to the phone-home.
  returned: always
  type: list
  elements: dict
binding:
  description:
    - How the server checked that the phone-home came from the machine itself (docs/security.md).
    - RV(binding.checked) is V(false) for a peer behind a router or with the server's O(nixie.metal.pxe_server#module:peer_check=false);
      RV(binding.mac_seen) is the MAC the controller's neighbour table holds for RV(ip).
  returned: success, when O(until_state=phoned_home)
  type: dict
  contains:
    checked:
      description: Whether the segment's evidence was read.
      type: bool
    method:
      description: V(arp) (IPv4), V(ndp) (IPv6) or V(none).
      type: str
    scope:
      description: V(on_segment), V(routed), V(local) (the controller itself) or V(not_checked).
      type: str
    mac_seen:
      description: The MAC of RV(ip) on the segment, when checked.
      type: str
    interface:
      description: The controller's interface towards RV(ip).
      type: str
  sample: {checked: true, method: arp, scope: on_segment, mac_seen: "52:54:00:12:34:01", interface: br0}
impostors:
  description:
    - Requests for this host's script, kernel, initrd or phone-home that the server refused, one row per address, MAC seen and reason.
    - Each row also becomes a warning of the task. Empty when only the machine itself asked.
  returned: always
  type: list
  elements: dict
  sample: [{address: 10.0.0.50, mac: "02:00:00:bb:00:02", reason: impostor, count: 3, routes: [phone_home, script],
            first: 1765100000.1, last: 1765100004.9}]
state:
  description: The host's state at the end of the wait (V(phoned_home) on success, or the stage reached for an earlier O(until_state)).
  returned: always
  type: str
  sample: phoned_home
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nixie.metal.plugins.module_utils._agent_api import BOOT_STAGES, AgentApiError, pick_address, wait_for_phone_home
from ansible_collections.nixie.metal.plugins.module_utils._hosts import normalize_mac
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.trust import refusal_warnings
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.events import PHONED_HOME


def main():
    module = AnsibleModule(
        argument_spec=dict(
            api_url=dict(type="str", required=True),
            mac=dict(type="str", required=True),
            timeout=dict(type="float", default=600),
            poll=dict(type="float", default=25),
            until_state=dict(type="str", default=PHONED_HOME, choices=list(BOOT_STAGES)),
        ),
        supports_check_mode=True,
    )
    mac = normalize_mac(module.params["mac"])
    if mac is None:
        module.fail_json(msg="mac: %r is not a MAC address; write six hex octets such as bc:24:11:d0:28:34" % module.params["mac"])
    if not module.params["api_url"].startswith(("http://", "https://")):
        module.fail_json(msg="api_url: %r is not an http:// URL; use the api_url the pxe_server module returns" % module.params["api_url"])
    if module.params["timeout"] <= 0 or module.params["poll"] <= 0:
        module.fail_json(msg="timeout and poll must be positive numbers of seconds")
    if module.check_mode:
        module.exit_json(changed=False, state="unknown", events=[], msg="would wait for %s to reach %s" % (mac, module.params["until_state"]))

    try:
        host = wait_for_phone_home(module.params["api_url"], mac, module.params["timeout"], poll=module.params["poll"],
                                   until_state=module.params["until_state"])
    except AgentApiError as exc:
        host = exc.host or {}
        warn_refusals(module, host)
        module.fail_json(msg=str(exc), state=host.get("state"), events=host.get("events", []),
                         impostors=host.get("impostors", []))
    warn_refusals(module, host)
    module.exit_json(
        changed=False,
        ip=pick_address(host),
        addresses=host.get("addresses", []),
        ssh_host_keys=host.get("ssh_host_keys", []),
        hostname=host.get("hostname"),
        state=host.get("state"),
        events=host.get("events", []),
        binding=host.get("binding"),
        impostors=host.get("impostors", []),
    )


def warn_refusals(module, host):
    for line in refusal_warnings(host):
        module.warn(line)


if __name__ == "__main__":
    main()
