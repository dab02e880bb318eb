# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""nixielab: a QEMU + network-namespace lab for nixie.metal's netboot server.

Modules: installer (lab installer kernel+initrd), net (namespaces, bridge,
site DHCP, captures), vm (QEMU clients), services (dnsmasq proxy and a tiny
HTTP stand-in used as the baseline), fixtures (pcap trimming/description).
See tests/lab/README.md.
"""

from __future__ import annotations
