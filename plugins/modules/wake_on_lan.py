#!/usr/bin/python
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: wake_on_lan
short_description: Wake machines by sending Wake-on-LAN magic packets
version_added: 0.1.0
description:
  - Sends Wake-on-LAN magic packets (UDP) for one or more MAC addresses from the machine the task runs on,
    usually the controller on the machines' network segment (C(delegate_to) V(localhost) and C(run_once)).
  - Each packet is sent O(repeat) times, O(interval) seconds apart, because a single UDP datagram can be lost
    and a NIC that is still settling after power-on may miss it.
  - On a controller with several networks, O(interface) pins the packets to the NIC on the machines' segment,
    so that the limited broadcast V(255.255.255.255) leaves there and not through the default route.
    O(source_address) binds a source address instead or as well.
  - IPv6 works too, for example O(broadcast=ff02::1) (all nodes on the link) with O(interface);
    whether a NIC wakes on an IPv6 magic packet depends on the NIC.
  - A magic packet gets no answer; the module cannot tell whether a machine woke up.
    Wait for it another way, for example with M(nixie.metal.wait_for_agent).
author:
  - nixie.metal contributors (@nixie-metal)
requirements:
  - wakeonlan (Python library) on the machine the task runs on
extends_documentation_fragment:
  - nixie.metal._attributes
  - nixie.metal._attributes.action_group
attributes:
  check_mode:
    details:
      - Checks every option, looks up O(interface) and resolves a host name in O(broadcast), then reports in RV(sent)
        what would be sent, with C(changed=true); sends nothing.
  platform:
    details: Choosing O(interface) needs Linux.
options:
  mac:
    description:
      - MAC addresses of the machines to wake, in any usual spelling
        (V(52:54:00:12:34:01), V(52-54-00-12-34-01), V(5254.0012.3401), V(525400123401)).
      - Duplicates (in any spelling) are sent once. An empty list sends nothing and reports no change.
      - Quote MAC addresses in YAML. Unquoted, YAML reads V(52:54:00:12:34:01) as a base-60 number;
        the module recognises such a number, turns it back into the MAC address and warns.
    type: list
    elements: str
    required: true
  broadcast:
    description:
      - Where the packets go. Usually a broadcast address, either V(255.255.255.255) (limited broadcast, with
        O(interface) on a multi-homed controller) or the segment's own broadcast address such as V(192.168.1.255).
      - May also be an IPv6 address such as V(ff02::1) (needs O(interface), or write it as V(ff02::1%enp3s0)),
        a unicast address, or a host name.
    type: str
    default: 255.255.255.255
    aliases: [address]
  port:
    description:
      - UDP port. Most NICs accept magic packets on any port; V(9) (discard) is the usual one, V(7) the other.
    type: int
    default: 9
  interface:
    description:
      - Name of the network interface to send through, for example V(enp3s0).
      - Linux only (the socket option C(SO_BINDTODEVICE)). Linux before 5.7 needs root or C(CAP_NET_RAW)
        for it; use C(become=true) there.
    type: str
  source_address:
    description:
      - Local IP address to send from. Must be an address of this machine, of the same IP version as O(broadcast).
    type: str
  repeat:
    description: How many times each packet is sent.
    type: int
    default: 3
  interval:
    description:
      - Seconds between two rounds of packets. One round sends one packet per MAC, back to back.
    type: float
    default: 0.1
  password:
    description:
      - SecureOn password for NICs that require one, appended to each packet.
      - Either 6 bytes written like a MAC address (V(aa:bb:cc:dd:ee:ff)) or 4 bytes written like an IPv4 address
        (V(192.168.1.1)).
      - Never returned or logged.
    type: str
seealso:
  - module: community.general.wakeonlan
    description: Sends one packet for one MAC, without interface selection, repeats or SecureOn.
  - plugin: nixie.metal.hosts
    plugin_type: inventory
notes:
  - >-
    Why the module opens its own socket: the C(wakeonlan) library builds the packets, but its sender takes a
    source IP address, not an interface, and sends each packet once. On a controller with several networks the
    kernel sends V(255.255.255.255) through the interface of the default route, which is often not the machines'
    segment, and a source address alone does not change that; binding the socket to the interface
    (C(SO_BINDTODEVICE)) does. The same option plus C(IPV6_MULTICAST_IF) and the scope of the destination
    choose the link for IPv6 link-local multicast (V(ff02::1)). So the module sends the library's payloads through
    a socket it configures itself.
  - The machines must have Wake-on-LAN enabled in their firmware and for their NIC (for example C(ethtool -s eth0 wol g)).
  - Routers do not forward V(255.255.255.255). To wake machines on another subnet, send to that subnet's directed
    broadcast address, if the router forwards directed broadcasts, or run the task on a machine in that subnet.
"""

EXAMPLES = r"""
- name: Wake every machine of the inventory from the controller's provisioning NIC
  nixie.metal.wake_on_lan:
    mac: "{{ groups['nixie'] | map('extract', hostvars, 'nixie_mac') | list }}"
    interface: enp3s0
  delegate_to: localhost
  run_once: true

- name: Wake one machine through a directed broadcast, five times, half a second apart
  nixie.metal.wake_on_lan:
    mac: 52-54-00-12-34-01
    broadcast: 192.168.10.255
    source_address: 192.168.10.2
    repeat: 5
    interval: 0.5
  delegate_to: localhost

- name: Wake a machine whose NIC wants a SecureOn password
  nixie.metal.wake_on_lan:
    mac: [5254.0012.3402]
    password: "{{ vault_secureon_password }}"
    interface: enp3s0
  delegate_to: localhost

- name: Wake machines over IPv6 (all nodes on the link)
  nixie.metal.wake_on_lan:
    mac: ["52:54:00:12:34:01", "52:54:00:12:34:02"]
    broadcast: ff02::1
    interface: enp3s0
  delegate_to: localhost
"""

RETURN = r"""
sent:
  description:
    - One entry per MAC with what was sent (in check mode, what would have been sent).
    - When sending fails half-way, the failure result carries what had already been sent.
  returned: always
  type: list
  elements: dict
  contains:
    mac:
      description: The MAC address, lower-case and colon-separated.
      type: str
      sample: "52:54:00:12:34:01"
    destination:
      description: The destination IP address (a host name in O(broadcast) is resolved).
      type: str
      sample: 255.255.255.255
    port:
      description: The UDP port.
      type: int
      sample: 9
    interface:
      description: The interface the packets were pinned to, or V(null).
      type: str
      sample: enp3s0
    count:
      description: How many packets were sent for this MAC.
      type: int
      sample: 3
    bytes:
      description: Size of one packet's payload (102, or 106 or 108 with a SecureOn password).
      type: int
      sample: 102
  sample:
    - {mac: "52:54:00:12:34:01", destination: 255.255.255.255, port: 9, interface: enp3s0, count: 3, bytes: 102}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.nixie.metal.plugins.module_utils import _wol


def main():
    module = AnsibleModule(
        argument_spec=dict(
            mac=dict(type="list", elements="str", required=True),
            broadcast=dict(type="str", default=_wol.DEFAULT_BROADCAST, aliases=["address"]),
            port=dict(type="int", default=_wol.DEFAULT_PORT),
            interface=dict(type="str"),
            source_address=dict(type="str"),
            repeat=dict(type="int", default=_wol.DEFAULT_REPEAT),
            interval=dict(type="float", default=_wol.DEFAULT_INTERVAL),
            password=dict(type="str", no_log=True),
        ),
        supports_check_mode=True,
    )
    if _wol.wakeonlan is None:
        module.fail_json(msg=missing_required_lib("wakeonlan"), exception=_wol.WAKEONLAN_IMPORT_ERROR, sent=[])
    try:
        plan = _wol.prepare(_wol.plan(module.params))
    except _wol.WolError as exc:
        module.fail_json(msg=str(exc), sent=[])
    for warning in plan.warnings:
        module.warn(warning)
    if not plan.macs:
        module.exit_json(changed=False, sent=[])
    if module.check_mode:
        module.exit_json(changed=True, sent=_wol.describe(plan))
    try:
        sent = _wol.send(plan)
    except _wol.WolError as exc:
        module.fail_json(msg=str(exc), sent=exc.sent)
    module.exit_json(changed=True, sent=sent)


if __name__ == "__main__":
    main()
