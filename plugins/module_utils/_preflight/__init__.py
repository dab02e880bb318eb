# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The preflight: "will this run work here?", answered before any machine is woken.

``report``    a row (name, ok, detail, hint) and the table a person reads.
``tools``     Nix and nixos-anywhere on the controller: versions and features.
``keys``      the SSH key the run logs in with (a file, or an agent's).
``ipxe``      the iPXE binaries for every architecture among the machines.
``ports``     the netboot server's ports: can they be bound, and who holds one that cannot.
``firewall``  would the local nftables/iptables rules drop the machines' requests.
``site_dhcp`` one DHCPDISCOVER on the segment: who answers, and with boot options or not.
``checks``    runs them all in order and returns the rows.

Every verdict is a pure function over what was read (command output, a ruleset, packets);
the functions that read (run a command, bind a socket, send a frame) are small and separate.
Private to the collection: the interface may change without notice.
"""

from __future__ import annotations
