# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""IPv6-only labs: the site as a router + DHCPv6 server, no IPv4 anywhere.

Use with ``Lab(site_dhcp=False)``, then:

* :func:`remove_ipv4` -- take the IPv4 addresses off the controller's bridge
  and the site's link, so nothing on the segment can use IPv4;
* :func:`start_site_dhcp6` -- dnsmasq in the site namespace as the site's
  router and stateful DHCPv6 server: router advertisements with the M flag
  (addresses by DHCPv6) and the A flag (SLAAC too, which the lab installer
  uses), addresses from :data:`SITE_RANGE6`, no boot options unless
  given: ``ipxe_script`` names the iPXE script for clients with user class
  ``iPXE`` (what docs/ipv6.md asks of a stateful site), ``extra`` adds lines.

The range is 2^32 addresses on purpose. EDK2 runs two DHCPv6 clients with
one DUID and two IAIDs (PXE, and its IPv6 stack's own once the RA's M flag
arrives); dnsmasq starts its search for a free address at a hash of IAID and
DUID modulo the range's size and does not hold an advertised address. In a
range of 2^k addresses two IAIDs that agree in their low k bits start on the
same address, and when the second client takes it first, dnsmasq refuses the
PXE client's Request and EDK2 never solicits again (docs/ipv6.md). Over 2^32
addresses that needs two equal IAIDs, which EDK2 never makes.

Without a site at all (``addresses`` mode of the server under test), only
:func:`remove_ipv4` is needed.
"""

from __future__ import annotations

import subprocess

from .net import IPV6_PREFIX, SITE_VETH, Lab, stop_process, wait_for_file_text

#: The controller's and the site's IPv6 addresses (net.Lab puts them on the bridge and the site link).
CONTROLLER_IP6 = f"{IPV6_PREFIX}1"
SITE_IP6 = f"{IPV6_PREFIX}2"

#: The site's DHCPv6 addresses: 2^32 of them, so no two IAIDs of one client start on one address.
SITE_RANGE6 = (f"{IPV6_PREFIX}1:0:0", f"{IPV6_PREFIX}1:ffff:ffff")
SITE_NETWORK6 = f"{IPV6_PREFIX}1:0:0/96"


def remove_ipv4(lab: Lab) -> None:
    """No IPv4 on the segment: flush it from the controller's bridge and the site's link."""
    subprocess.run(["ip", "-n", lab.lab_ns, "-4", "addr", "flush", "dev", lab.bridge], check=True, capture_output=True)
    subprocess.run(["ip", "-n", lab.site_ns, "-4", "addr", "flush", "dev", SITE_VETH], check=True, capture_output=True)


def site_dhcp6_config(lab: Lab, ipxe_script: str | None = None, extra: list[str] | None = None,
                      lease: str = "10m", address_range: tuple[str, str] = SITE_RANGE6) -> str:
    """dnsmasq as the site's IPv6 router and stateful DHCPv6 server (no DHCPv4, no DNS)."""
    first, last = address_range
    lines = [
        "port=0", f"interface={SITE_VETH}", "bind-interfaces",
        "enable-ra", f"dhcp-range={first},{last},slaac,64,{lease}",
        f"dhcp-leasefile={lab.workdir / 'site6.leases'}",
        "log-dhcp", f"log-facility={lab.workdir / 'site-dnsmasq.log'}",
        "user=root", "group=root", "pid-file=",
    ]
    if ipxe_script:
        lines += ["dhcp-userclass=set:ipxe,iPXE", f"dhcp-option=tag:ipxe,option6:bootfile-url,{ipxe_script}"]
    return "\n".join(lines + list(extra or [])) + "\n"


def start_site_dhcp6(lab: Lab, ipxe_script: str | None = None, extra: list[str] | None = None,
                     address_range: tuple[str, str] = SITE_RANGE6) -> subprocess.Popen:
    """(Re)start the site's dnsmasq in IPv6-only mode; it is stopped with the lab."""
    if lab.site_dnsmasq is not None:
        stop_process(lab.site_dnsmasq)
    conf = lab.workdir / "site-dnsmasq.conf"
    conf.write_text(site_dhcp6_config(lab, ipxe_script, extra, address_range=address_range))
    log = lab.workdir / "site-dnsmasq.log"
    log.unlink(missing_ok=True)
    proc = lab.popen(["dnsmasq", "-k", f"--conf-file={conf}"], ns=lab.site_ns,
                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_for_file_text(log, "DHCPv6, IP range", 10, proc)
    lab.site_dnsmasq = proc
    return proc


def ipxe_script_template(port: int = 8080) -> str:
    """The script URL a stateful site gives iPXE: iPXE expands ``${net0/mac}`` itself."""
    return f"http://[{CONTROLLER_IP6}]:{port}/boot/${{net0/mac}}/script.ipxe"


#: QEMU arguments that make OVMF skip its IPv4 PXE attempt (≈60 s under TCG on a segment without DHCPv4).
OVMF_NO_PXE4 = ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no"]
