# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where and how the netboot server serves, written once; the argument spec is _argspec.netboot_server().

pxe_server serves with these options; preflight takes the same ones to check that interface, those
ports and those iPXE binaries before a run. Private to this collection, as its leading underscore
says (README, "Layout"): other collections must not extend it, and it changes whenever the modules do.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  interface:
    description:
      - The controller's network interface on the machines' segment. Found by itself when the controller has exactly
        one interface with an IPv4 address that is up.
    type: str
  address:
    description: The controller's IPv4 address on the machines' segment; the machines fetch files from it.
    type: str
  address6:
    description:
      - The controller's IPv6 address on the machines' segment, global or unique-local (not link-local).
        Boot file URLs name it, and machines that boot over IPv6 fetch files from it and phone home to it.
      - Found by itself on O(interface) (a unique-local address first) when not given. An interface with
        IPv6 addresses but no IPv4 one makes an IPv6-only run.
    type: str
  dhcp:
    description:
      - How machines that boot over IPv4 are answered (see C(docs/dhcp.md) in the collection). The preflight judges the
        site's DHCP server by it.
      - V(proxy) answers network-boot firmware beside the site's DHCP server, which keeps giving the addresses.
      - V(addresses) makes the server the DHCP server of the inventory's MACs, and of nothing else, on a segment
        with no other DHCP server, for all of their DHCP as long as the run lasts (firmware, iPXE, the installer and
        the installed system). Each gets its C(ip), or an address from O(nixie.metal.pxe_server#module:dhcp_ranges),
        with the subnet of the serving address, O(nixie.metal.pxe_server#module:dhcp_routers) and
        O(nixie.metal.pxe_server#module:dhcp_dns_servers); firmware gets its boot file in the same answer.
        Leases are kept by MAC, whatever client identifier a system sends. Unknown MACs get nothing.
      - V(off) answers no DHCPv4 at all (TFTP and HTTP are still served). The site's DHCP server must name the
        boot file, or the machines use static addresses and UEFI HTTP boot.
    type: str
    choices: [proxy, addresses, "off"]
    default: proxy
  dhcp6:
    description:
      - How machines that boot over IPv6 are answered (see C(docs/ipv6.md) in the collection).
      - V(proxy) answers UEFI firmware beside the site's router and DHCPv6 server, without addresses, with
        the boot file URL on UDP 547 and 4011. It also answers iPXE's Information-request (a router
        advertisement with the O flag only); on a segment whose router sets the M flag, iPXE takes its boot
        file only from the DHCPv6 server that gives it its address, so that server must name the script.
      - V(addresses) is for an isolated segment with no router and no other DHCPv6 server. The server sends
        router advertisements (M and O flags, the prefix of O(address6) for SLAAC, router lifetime 0) and
        gives each machine of the inventory an address itself (the prefix plus the 48 bits of its MAC).
      - V(off) serves IPv4 only.
      - IPv6 is served only when the interface has a global or unique-local IPv6 address.
    type: str
    choices: [proxy, addresses, "off"]
    default: proxy
  http_port:
    description: TCP port of the netboot server's HTTP server and agent API.
    type: int
    default: 8080
  ipxe_dir:
    description:
      - Directory holding the iPXE binaries C(undionly.kpxe), C(ipxe.efi), C(snponly.efi), C(ipxe-arm64.efi).
        Debian and Ubuntu install them in C(/usr/lib/ipxe) with the C(ipxe) package.
    type: path
    default: /usr/lib/ipxe
"""
