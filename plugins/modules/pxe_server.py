#!/usr/bin/python
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pxe_server
short_description: Serve a NixOS installer over the network for one provisioning run
version_added: 0.1.0
description:
  - Runs an ephemeral network boot server on the controller, in the foreground, until the run is over.
    Meant to be started with C(async) and C(poll=0) so the play goes on while it serves.
  - ProxyDHCP on UDP 67 and 4011 beside the site's own DHCP server, which keeps handing out addresses
    (or, with O(dhcp=addresses), the inventory's own DHCP server on a segment without one); TFTP on UDP 69
    for the iPXE binaries; HTTP for the per-machine iPXE script, the kernel and initrd, iPXE over HTTP
    for UEFI HTTP boot, and the API the installer's agent phones home to.
  - Only machines listed in O(hosts_file) or O(hosts) get an answer; every other request is ignored
    and counted. Once a machine has phoned home it gets no more offers, so after installation it boots
    from its disk even when its firmware tries the network first.
  - The server stops by itself when every host has phoned home or failed (after O(linger) seconds),
    after O(max_duration), after O(idle_timeout) without any request, on SIGTERM or SIGINT, or when
    another task runs this module with O(state=stopped). It then returns the per-host timeline.
  - Keep O(max_duration) shorter than the task's C(async) value. Ansible ends an async job that runs
    out of time with SIGKILL and no warning; the next run notices what was left and cleans it up, and
    keeps the per-host tokens of the server that died, so installers it booted can still phone home.
  - Binding ports 67, 69 and 4011 needs root or C(CAP_NET_BIND_SERVICE) (and binding to O(interface) needs
    C(CAP_NET_RAW) on Linux before 5.7); use C(become=true). Once every port is bound the server gives up all its
    capabilities for good (and sets C(no_new_privs)) and switches to O(user); it opens no raw socket, except with
    O(dhcp6=addresses), whose router advertisements go out of one opened before that.
  - Machines are served over the address family they boot with; on a dual-stack segment both are served.
author:
  - nixie.metal contributors (@nixie-metal)
requirements:
  - aiohttp
  - jsonschema
  - iproute2 (the C(ip) command) when O(interface) or O(address) is not given
extends_documentation_fragment:
  - nixie.metal._attributes
  - nixie.metal._attributes.action_group
  - nixie.metal._netboot_server
attributes:
  check_mode:
    details: Checks every input and reports what would be served; binds no port.
options:
  state:
    description:
      - V(started) serves until the run is over, then returns the timeline.
      - V(stopped) stops a server that is running from the same O(run_dir); nothing happens if none is.
    type: str
    choices: [started, stopped]
    default: started
  hosts_file:
    description:
      - A C(hosts.json) file (upstream Nixie's format) listing the machines to serve.
      - Mutually exclusive with O(hosts).
    type: path
  hosts:
    description:
      - The machines to serve, as a list instead of O(hosts_file).
    type: list
    elements: dict
    suboptions:
      name:
        description: The machine's name, its flake attribute.
        type: str
        required: true
      mac:
        description: The MAC address the machine network-boots from.
        type: str
        required: true
      arch:
        description: The machine's Nix system.
        type: str
        choices: [x86_64-linux, aarch64-linux]
        default: x86_64-linux
      ip:
        description:
          - The machine's address, the C(ip) of C(hosts.json). With O(dhcp=addresses), an IPv4 one is the address it
            leases.
        type: str
      network:
        description:
          - The static network of the machine's installer, the C(network) of C(hosts.json) (docs/dhcp.md, "Static
            network per host"). The installer gets it on its kernel command line (C(ip=), C(vlan=), C(ifname=),
            C(nameserver=)) and comes up with it with no DHCP; nixie-agent phones home over it.
          - An IPv4 network only; refused on an IPv6-only run (an O(interface) without an IPv4 address).
        type: dict
        suboptions:
          address:
            description: The installer's IPv4 address with its prefix length, for example V(192.0.2.10/24).
            type: str
            required: true
          gateway:
            description: The default router, on the address's subnet; none when not given.
            type: str
          nameservers:
            description: DNS servers (IP addresses) for the installer's C(/etc/resolv.conf).
            type: list
            elements: str
          vlan:
            description: The 802.1Q VLAN ID (1-4094) the address lives on; the link is untagged without it.
            type: int
          interface:
            description: MAC address of the NIC to configure; default O(hosts[].mac).
            type: str
  dhcp_ranges:
    description:
      - With O(dhcp=addresses), where machines without an C(ip) get theirs, as V(first-last) ranges (or single
        addresses) of the serving subnet, for example V(10.0.0.100-10.0.0.199). Hosts are given addresses in
        the inventory's order, so the same inventory gets the same addresses; what is left is kept for a machine
        whose address another one turns out to hold (DHCPDECLINE).
    type: list
    elements: str
  dhcp_routers:
    description: With O(dhcp=addresses), the routers (option 3) the machines get, on the serving subnet; none when unset.
    type: list
    elements: str
  dhcp_dns_servers:
    description: With O(dhcp=addresses), the DNS servers (option 6) the machines get; none when unset.
    type: list
    elements: str
  dhcp_lease_time:
    description:
      - With O(dhcp=addresses), the lease time in seconds. Clients renew at half of it while the run lasts; after the
        run, nothing answers them, so an installed system that must keep its address needs its own network settings.
    type: int
    default: 3600
  dhcp_probe:
    description:
      - With O(dhcp=addresses), before answering, send one DHCPDISCOVER of a made-up MAC on the segment and refuse to
        start if another DHCP server offers an address (4 seconds), as two address servers on one segment fight over every
        client. V(false) skips the look, for a segment whose other server is known to ignore the inventory's MACs.
    type: bool
    default: true
  kernel:
    description:
      - The installer's kernel for V(x86_64-linux) machines, for example the C(kernel) that
        M(nixie.metal.nix_build) returns.
    type: path
  initrd:
    description: The installer's initrd for V(x86_64-linux) machines.
    type: path
  artifacts:
    description:
      - Kernel and initrd per Nix system, for runs with other architectures. A dictionary keyed by
        Nix system, for example V(aarch64-linux), whose values have the keys C(kernel) and C(initrd),
        and optionally C(cmdline), that build's own kernel arguments (its C(init=)), which come before O(cmdline).
      - This is the shape of RV(nixie.metal.nix_build#module:artifacts). Entries here override O(kernel) and O(initrd).
    type: dict
  cmdline:
    description:
      - Extra kernel arguments for the installer, for example C(init=/nix/store/...-nixos-system/init loglevel=4),
        which is what M(nixie.metal.nix_build) returns as RV(nixie.metal.nix_build#module:cmdline).
      - The server adds C(nixie.api=), C(nixie.token=) and C(nixie.mac=) itself.
    type: str
  max_duration:
    description: Seconds after which the server stops whatever the state of the hosts.
    type: float
    default: 3600
  idle_timeout:
    description: Seconds without any event (request, transfer, phone-home) after which the server stops.
    type: float
    default: 900
  linger:
    description:
      - Seconds the server keeps answering the API after the last host is done, so that
        M(nixie.metal.wait_for_agent) can read the last answers.
    type: float
    default: 30
  peer_check:
    description:
      - Serve a host's boot script, kernel and initrd, and accept its phone-home, only from an address that the
        controller's neighbour table (ARP, NDP) says is the host's own MAC on the segment. Requests from another MAC are
        refused and recorded in the host's C(impostors) rows (RV(hosts)); the first admitted fetch of the script in each boot
        claims the host's token, and another address asking in the same boot is refused.
      - Clients behind a router (relayed DHCP) cannot be checked this way; they are served, and the host gets a
        C(binding_unchecked) event.
      - Set V(false) only on a segment where the controller cannot see the machines' MACs (a proxy-ARP router between
        them); every request is then served unchecked. See C(docs/security.md).
    type: bool
    default: true
  owner_pid:
    description:
      - The server also stops when the process with this PID ends. The provision playbook passes the
        PID of C(ansible-playbook) itself, so that a run interrupted with Ctrl-C does not leave the server
        serving until its timeouts.
    type: int
  run_dir:
    description:
      - Where the running server keeps its state file (PID, API URL, the token that stops it, the hosts' tokens),
        readable by its owner only.
      - Defaults to C(/run/nixie-metal) for root, else C($XDG_RUNTIME_DIR/nixie-metal).
    type: path
  user:
    description:
      - The account the server switches to once every port is bound, with that account's primary group and no
        supplementary group, like dnsmasq's C(--user). The process that parses what comes from the network then owns
        no root file and cannot signal root's processes; the module's own process stays root to keep the state file
        in O(run_dir) and to pass signals on, but never touches the network.
      - That account must be able to read the kernel, initrd and iPXE binaries (files in the Nix store are readable
        by everyone); the module checks this, and that it may switch at all (C(CAP_SETUID) and C(CAP_SETGID)),
        before it binds anything.
      - V(root) keeps root's user ID, still without any capability. Only root can switch; when the module runs as
        another user, the server keeps that user.
    type: str
    default: nobody
seealso:
  - module: nixie.metal.wait_for_agent
  - plugin: nixie.metal.hosts
    plugin_type: inventory
notes:
  - The per-host tokens that authenticate the agents are never returned or logged.
"""

EXAMPLES = r"""
- name: Serve the installer while the machines boot
  nixie.metal.pxe_server:
    hosts_file: "{{ playbook_dir }}/hosts.json"
    kernel: "{{ installer.kernel }}"
    initrd: "{{ installer.initrd }}"
    cmdline: "{{ installer.cmdline }}"
    interface: enp3s0
    max_duration: 3000
  async: 3600
  poll: 0
  become: true
  register: pxe_job

- name: Stop the server when the play is over
  nixie.metal.pxe_server:
    state: stopped
  become: true
"""

RETURN = r"""
api_url:
  description: Base URL of the agent API, for M(nixie.metal.wait_for_agent).
  returned: always
  type: str
  sample: http://192.168.1.10:8080/api/v1
stop_reason:
  description: Why the server stopped.
  returned: when O(state=started) and not in check mode
  type: str
  sample: every host is done
hosts:
  description:
    - Every host of the run with its state and timestamped events.
    - C(binding) says how its phone-home was checked against its MAC; C(impostors) lists the requests for its boot that
      were refused (address, MAC seen, reason, count, routes) and C(warnings) says the same in one line per row.
  returned: when O(state=started)
  type: list
  elements: dict
  sample:
    - name: node1
      mac: "52:54:00:12:34:01"
      state: phoned_home
      address: 192.168.1.57
      binding: {checked: true, method: arp, scope: on_segment, mac_seen: "52:54:00:12:34:01", interface: enp3s0}
      impostors: []
      warnings: []
      events:
        - {seq: 1, time: 1764151200.1, event: offered, state: offered}
counts:
  description: How many hosts ended in each state.
  returned: when O(state=started) and not in check mode
  type: dict
  sample: {phoned_home: 2, failed: 0}
ignored:
  description: Requests from machines that are not hosts of this run, by MAC (bounded).
  returned: when O(state=started) and not in check mode
  type: dict
refused_requests:
  description: Requests for a host's script, kernel, initrd or phone-home refused by O(peer_check), by reason.
  returned: when O(state=started) and not in check mode
  type: dict
  sample: {impostor: 3, unverified: 0, claimed: 1}
counters:
  description: What the server did over the run, counted.
  returned: when O(state=started) and not in check mode
  type: dict
  contains:
    dhcp_answered:
      description: DHCP requests answered, on port 67 and on 4011.
      type: int
      sample: 4
    dhcp_ignored:
      description: DHCP requests not answered (a machine that is not a host of the run, a finished host, nothing to boot).
      type: int
      sample: 1
    dhcp_malformed:
      description: Datagrams on the DHCP ports that are not DHCP.
      type: int
      sample: 0
    dhcp_send_errors:
      description: Answers the network refused to send.
      type: int
      sample: 0
    api_answered_at_accept:
      description: Agent API requests answered as soon as their connection was accepted (the fast path of a phone-home).
      type: int
      sample: 2
    http_refused:
      description: HTTP connections reset because the port already had as many open as the server allows (half its open files).
      type: int
      sample: 0
    peer_check_errors:
      description: Times the kernel could not say which MAC a peer is (the request was refused); see the server's log.
      type: int
      sample: 0
    peer_check_resyncs:
      description:
        - Times the kernel's neighbour notices came faster than the server read them and were lost, so the check
          forgot what it kept and asked the kernel again. Nothing is let in by it; many of them mean a very busy segment.
      type: int
      sample: 0
leases:
  description:
    - With O(dhcp=addresses), the address of every host when the run ended, the last thing its DHCP client did
      (C(lease_offered), C(lease_acked), C(lease_released), C(lease_declined), C(lease_refused); V(null) if it never
      asked) and the seconds left on its lease.
    - A host whose address another machine held (C(lease_declined)) moved to a spare address of O(dhcp_ranges), or has
      V(null) when none was left.
  returned: when O(state=started) and O(dhcp=addresses), not in check mode
  type: list
  elements: dict
  sample: [{mac: "52:54:00:12:34:01", address: 10.0.0.100, state: lease_acked, seconds_left: 3412}]
server:
  description: Where the server listens, and how it answers DHCPv4 (O(dhcp)) and DHCPv6 (O(dhcp6)); V(off) for a family it does not serve.
  returned: when O(state=started)
  type: dict
  sample: {interface: enp3s0, address: 192.168.1.10, http_port: 8080, address6: "fd00:1::10", dhcp: proxy, dhcp6: proxy}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.nixie.metal.plugins.module_utils import _argspec, _pxe_server
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import runtime
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.options import ServerOptions
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.http import AIOHTTP_IMPORT_ERROR


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["started", "stopped"], default="started"),
            hosts_file=dict(type="path"),
            hosts=dict(type="list", elements="dict", options=dict(
                name=dict(type="str", required=True),
                mac=dict(type="str", required=True),
                arch=dict(type="str", choices=["x86_64-linux", "aarch64-linux"], default="x86_64-linux"),
                ip=dict(type="str"),
                network=dict(type="dict", options=dict(
                    address=dict(type="str", required=True),
                    gateway=dict(type="str"),
                    nameservers=dict(type="list", elements="str"),
                    vlan=dict(type="int"),
                    interface=dict(type="str"),
                )),
            )),
            dhcp_ranges=dict(type="list", elements="str"),
            dhcp_routers=dict(type="list", elements="str"),
            dhcp_dns_servers=dict(type="list", elements="str"),
            dhcp_lease_time=dict(type="int", default=ServerOptions.dhcp_lease_time),
            dhcp_probe=dict(type="bool", default=True),
            kernel=dict(type="path"),
            initrd=dict(type="path"),
            artifacts=dict(type="dict"),
            cmdline=dict(type="str"),
            max_duration=dict(type="float", default=ServerOptions.max_duration),
            idle_timeout=dict(type="float", default=ServerOptions.idle_timeout),
            linger=dict(type="float", default=ServerOptions.linger),
            run_dir=dict(type="path"),
            owner_pid=dict(type="int"),
            user=dict(type="str", default="nobody"),
            peer_check=dict(type="bool", default=True),
            **_argspec.netboot_server(),
        ),
        mutually_exclusive=[("hosts_file", "hosts")],
        required_by={"initrd": "kernel", "kernel": "initrd"},
        supports_check_mode=True,
    )
    run_dir = module.params["run_dir"] or runtime.default_run_dir()

    if module.params["state"] == "stopped":
        if module.check_mode:
            record = runtime.read_state(run_dir)
            module.exit_json(changed=bool(record and runtime.is_alive(record)))
        try:
            stopped = _pxe_server.stop(run_dir)
        except OSError as exc:
            module.fail_json(msg="cannot stop the server: %s" % exc)
        module.exit_json(changed=stopped)

    if AIOHTTP_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("aiohttp"), exception=AIOHTTP_IMPORT_ERROR)
    try:
        options = _pxe_server.plan(module.params)
        owner = _pxe_server.owner_of(module.params["owner_pid"])
        if options.addresses is not None and module.params["dhcp_probe"]:
            _pxe_server.refuse_other_address_servers(options.interface)
    except _pxe_server.ControlError as exc:
        module.fail_json(msg=str(exc))
    summary = dict(api_url=options.api_url,
                   server=dict(interface=options.interface, address=options.server_ip, http_port=options.http_port,
                               address6=options.server_ip6, dhcp6=options.dhcp6_mode if options.server_ip6 else "off",
                               dhcp=options.dhcp_mode if options.server_ip else "off"))
    if module.check_mode:
        module.exit_json(changed=False, hosts=_pxe_server.hosts_summary(options.hosts), **summary)
    try:
        result = _pxe_server.run(options, run_dir, owner=owner)
    except _pxe_server.ControlError as exc:
        module.fail_json(msg=str(exc), **summary)
    for name in result.pop("late_imports", ()):
        module.warn("the server imported %s after it switched to %s; it may fail where %s cannot read Python's files. "
                    "This is a bug of nixie.metal, please report it" % (name, options.user, options.user))
    module.exit_json(changed=True, **dict(result, **summary))


if __name__ == "__main__":
    main()
