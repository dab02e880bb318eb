#!/usr/bin/python
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: preflight
short_description: Tell whether a provisioning run can work from this controller, before any machine is woken
version_added: 0.1.0
description:
  - Checks, on the machine the task runs on (the controller), everything a run of C(nixie.metal.provision) needs there,
    and returns one row per check in RV(rows) and a table in RV(msg) and RV(table). Every failing row says what to do.
  - V(nix) (unless O(check_nix=false)), the controller's Nix, at least 2.18, with C(nix-command) and C(flakes) usable.
  - V(nixos-anywhere), O(nixos_anywhere) is installed and new enough, 1.6.0 for C(--target-host), 1.7.0 with O(build_on).
    nixos-anywhere has no C(--version) option. Its version is read from its Nix store path
    (C(/nix/store/...-nixos-anywhere-1.13.0)), following symbolic links. Failing that, from the options its C(--help) lists.
  - V(ssh-client), C(ssh) and C(ssh-keyscan) are installed.
  - V(ssh-key), O(ssh_key) loads without a passphrase (C(ssh-keygen -y -P '')). Without O(ssh_key), an ssh-agent
    that C(SSH_AUTH_SOCK) names holds a key (C(ssh-add -L)). Running under C(sudo) without C(SSH_AUTH_SOCK) is said
    as such, with the way to keep it (C(sudo --preserve-env=SSH_AUTH_SOCK)).
  - V(ipxe), O(ipxe_dir) holds the iPXE binaries the netboot server offers to every architecture among O(hosts),
    C(ipxe.efi) and C(undionly.kpxe) for V(x86_64-linux), C(ipxe-arm64.efi) for V(aarch64-linux).
  - V(interface), the interface and address the netboot server would serve on, chosen exactly as
    M(nixie.metal.pxe_server) chooses them from O(interface), O(address), O(address6) and O(dhcp6).
  - V(ports), UDP 67, 4011 and 69 and TCP O(http_port) can be bound as the server binds them (each is bound and
    released at once). When one cannot, the process holding it is named when C(/proc) tells.
  - V(firewall), no nftables rule (C(nft -j list ruleset), which shows iptables-nft rules too) and no legacy iptables
    rule (C(iptables-legacy-save)) drops or rejects those ports on the interface. A rule that may drop them,
    depending on what the check cannot know, such as a source address, fails the row too and is named.
  - V(site-dhcp), one DHCPDISCOVER, shaped like a UEFI PXE client's, with a made-up, locally administered MAC
    address, is sent on the interface, and the answers are collected for O(dhcp_wait) seconds. The row names
    who answered and what address was offered. It fails when no server offers an address, because the netboot
    server is a proxy and gives none, or when an answer carries PXE boot options (60 C(PXEClient), 66, 67, 43,
    or the C(file) field). With those options, UEFI firmware boots from that answer and ignores the proxy offer.
    No REQUEST follows, so no lease is taken and there is nothing to release.
  - The module changes nothing, so check mode runs every check as well, the DISCOVER included.
author:
  - nixie.metal contributors (@nixie-metal)
requirements:
  - Root (sudo), as the run itself needs, to bind ports below 1024 and to send the raw DISCOVER frame.
  - C(ip) (iproute2), C(ssh-keygen) and C(ssh-add) (OpenSSH client), C(nft) (nftables).
extends_documentation_fragment:
  - nixie.metal._attributes
  - nixie.metal._attributes.read_only
  - nixie.metal._attributes.action_group
  - nixie.metal._netboot_server
attributes:
  platform:
    details: Linux only (C(/proc), raw sockets, C(SO_BINDTODEVICE)).
options:
  hosts:
    description:
      - The machines of the run, as M(nixie.metal.pxe_server) takes them. Only their architectures are checked here.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The machine's name, its flake attribute.
        type: str
        required: true
      mac:
        description: The MAC address the machine network-boots from.
        type: str
      arch:
        description: The machine's Nix system.
        type: str
        default: x86_64-linux
  ssh_key:
    description:
      - The private key the run logs in with (the playbook's C(nixie_ssh_key)).
      - Without it, an ssh-agent key is looked for through C(SSH_AUTH_SOCK).
    type: path
  nixos_anywhere:
    description: The nixos-anywhere executable, a name on C(PATH) or a path.
    type: str
    default: nixos-anywhere
  build_on:
    description: Whether the run passes C(--build-on) to nixos-anywhere, which needs nixos-anywhere 1.7.0.
    type: bool
    default: false
  check_nix:
    description:
      - Whether to check the controller's Nix. A run with a prebuilt installer (C(nixie_installer)) whose machines'
        systems nixos-anywhere builds itself (C(nixie_build=flake)) builds nothing here and needs no Nix.
    type: bool
    default: true
  dhcp_wait:
    description:
      - Seconds to collect answers to the DISCOVER. dnsmasq pings an address for up to 3 seconds before offering it.
    type: float
    default: 4.0
  ignore:
    description:
      - Names of rows that are shown but do not fail the module, for a check you have judged yourself,
        for example V(firewall) when a rule the check cannot decide is known to let the machines in.
    type: list
    elements: str
    choices: [nix, nixos-anywhere, ssh-client, ssh-key, ipxe, interface, ports, firewall, site-dhcp]
    default: []
seealso:
  - module: nixie.metal.pxe_server
notes:
  - The playbook C(nixie.metal.preflight) runs this module and prints the table; C(nixie.metal.provision) runs it
    first and stops before any machine is woken when a row fails.
"""

EXAMPLES = r"""
- name: Check that a run can start here
  nixie.metal.preflight:
    hosts:
      - {name: node1, mac: "52:54:00:12:34:01", arch: x86_64-linux}
    interface: enp3s0
    ssh_key: ~/.ssh/id_ed25519
  register: preflight

- name: Show the table
  ansible.builtin.debug:
    msg: "{{ preflight.table }}"

- name: Check with a prebuilt installer, and a firewall rule judged by hand
  nixie.metal.preflight:
    hosts: [{name: node1, arch: x86_64-linux}, {name: node2, arch: aarch64-linux}]
    check_nix: false
    ignore: [firewall]
"""

RETURN = r"""
rows:
  description: One entry per check, in the order of the table.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The check (V(nix), V(nixos-anywhere), V(ssh-client), V(ssh-key), V(ipxe), V(interface), V(ports), V(firewall), V(site-dhcp)).
      type: str
      sample: site-dhcp
    ok:
      description: Whether the check passed. A passing row with a RV(rows[].hint) is a warning.
      type: bool
      sample: true
    detail:
      description: What was found.
      type: str
      sample: "10.0.0.2 offered 10.0.0.142; no boot options"
    hint:
      description: What to do, for a failing row or a warning; empty otherwise.
      type: str
      sample: ""
failed_rows:
  description: The names of the rows that failed and are not in O(ignore).
  returned: always
  type: list
  elements: str
  sample: [ports]
table:
  description: The table, one line per row, with a line saying what to do under each failing row and each warning.
  returned: always
  type: list
  elements: str
  sample:
    - "nix             ok      Nix 2.24.10 at /nix/var/nix/profiles/default/bin/nix"
    - "ports           FAIL    UDP 67 (proxyDHCP) is taken by dnsmasq (pid 812)"
    - "                        -> stop dnsmasq (pid 812) (a DHCP/TFTP server on this machine, ...) for the run"
msg:
  description: The table as one text, and the names of the failing rows.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nixie.metal.plugins.module_utils import _argspec
from ansible_collections.nixie.metal.plugins.module_utils._preflight import checks, report


def main():
    module = AnsibleModule(
        argument_spec=dict(
            hosts=dict(type="list", elements="dict", default=[], options=dict(
                name=dict(type="str", required=True),
                mac=dict(type="str"),
                arch=dict(type="str", default="x86_64-linux"),
            )),
            ssh_key=dict(type="path", no_log=False),
            nixos_anywhere=dict(type="str", default="nixos-anywhere"),
            build_on=dict(type="bool", default=False),
            check_nix=dict(type="bool", default=True),
            dhcp_wait=dict(type="float", default=4.0),
            ignore=dict(type="list", elements="str", default=[], choices=list(report.ROW_NAMES)),
            **_argspec.netboot_server(),
        ),
        supports_check_mode=True,
    )
    if not 0 < module.params["http_port"] < 65536:
        module.fail_json(msg="http_port must be a TCP port (1-65535), got %d" % module.params["http_port"])
    if module.params["dhcp_wait"] <= 0:
        module.fail_json(msg="dhcp_wait must be a positive number of seconds")
    rows = checks.run(module.params)
    ignore = module.params["ignore"]
    table = report.table(rows, ignore)
    failing = [row.name for row in report.failing(rows, ignore)]
    result = dict(changed=False, rows=[row.as_dict() for row in rows], failed_rows=failing, table=table)
    if failing:
        module.fail_json(msg="the run cannot start here (%s):\n%s" % (", ".join(failing), "\n".join(table)), **result)
    module.exit_json(msg="\n".join(table), **result)


if __name__ == "__main__":
    main()
