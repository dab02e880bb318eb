# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run's event names and boot stages: the one place they are spelled.

Events travel as JSON (the agent API's host snapshots, the ``on_event`` hook,
``wait_for_agent``'s answer and the playbook that reads it), so each value is
part of the wire contract and never changes. They are plain strings, not an
enum, so ``json.dumps`` writes them as it always has. Every other file names
them through this module; ``tests/unit/plugins/module_utils/netboot/wire/test_events.py``
fails when a spelled-out event name appears anywhere else in ``plugins/``.
"""

from __future__ import annotations

# A host's state before any request of it was seen (a state, never recorded as an event).
KNOWN = "known"

# DHCP answers, one per reply (decide/policy.py, decide/policy6.py).
OFFERED = "offered"                  # port 67 offer of an iPXE binary (firmware PXE / HTTP boot)
SCRIPT_OFFERED = "script_offered"    # port 67 offer of the iPXE script URL (client is iPXE)
BOOT_FILE_ACKED = "boot_file_acked"  # port 4011 ack naming an iPXE binary
SCRIPT_ACKED = "script_acked"        # port 4011 ack naming the iPXE script URL
# DHCP requests not answered: a reason every time, and a refusal when the host cannot be booted as it is.
DHCP_IGNORED = "dhcp_ignored"
DHCP_REFUSED = "dhcp_refused"
# DHCPv6 lease upkeep answered (Renew, Rebind, Confirm, Release, Decline).
DHCP6_LEASE = "dhcp6_lease"
# dhcp=addresses: what each DHCPv4 answer did to the host's lease (decide/leases.py).
LEASE_OFFERED = "lease_offered"
LEASE_ACKED = "lease_acked"
LEASE_REFUSED = "lease_refused"    # a DHCPNAK
LEASE_RELEASED = "lease_released"
LEASE_DECLINED = "lease_declined"  # the client found its address in use
LEASE_INFORMED = "lease_informed"

# The iPXE binary, over TFTP or UEFI HTTP boot.
IPXE_STARTED = "ipxe_started"
IPXE_SERVED = "ipxe_served"
IPXE_FAILED = "ipxe_failed"
TFTP_REFUSED = "tftp_refused"
# The HTTP app's own hook events for an iPXE binary (it cannot know the MAC; serve/server.py ties them to one).
IPXE_FILE_SERVED = "ipxe_file_served"
IPXE_FILE_ABORTED = "ipxe_file_aborted"

# The boot routes over HTTP: script, kernel and initrd.
SCRIPT_SERVED = "script_served"
KERNEL_SERVED = "kernel_served"
INITRD_SERVED = "initrd_served"
KERNEL_ABORTED = "kernel_aborted"
INITRD_ABORTED = "initrd_aborted"
# A boot route asked for a MAC that is not a host of the run.
SCRIPT_REQUESTED = "script_requested"
KERNEL_REQUESTED = "kernel_requested"
INITRD_REQUESTED = "initrd_requested"

# The trust check (docs/design/trust.md).
BINDING_UNCHECKED = "binding_unchecked"
IMPOSTOR = "impostor"

# The agent API.
PHONED_HOME = "phoned_home"
PHONE_HOME_REJECTED = "phone_home_rejected"
STOP_REQUESTED = "stop_requested"

# A host given up on, with a reason (also its final state).
FAILED = "failed"

#: The progress stages a machine reaches, in boot order: a host's state is the furthest one,
#: and wait_for_agent can wait for each.
BOOT_STAGES = (OFFERED, IPXE_SERVED, SCRIPT_SERVED, KERNEL_SERVED, INITRD_SERVED, PHONED_HOME)

#: Each boot route's event when it is served, cut short, or asked for by a MAC that is not a host.
SERVED = {"script": SCRIPT_SERVED, "kernel": KERNEL_SERVED, "initrd": INITRD_SERVED}
ABORTED = {"kernel": KERNEL_ABORTED, "initrd": INITRD_ABORTED}
REQUESTED = {"script": SCRIPT_REQUESTED, "kernel": KERNEL_REQUESTED, "initrd": INITRD_REQUESTED}
#: The event of each kind of TFTP transfer report (serve/tftp.py's ``TftpEvent.kind``).
TFTP = {"started": IPXE_STARTED, "finished": IPXE_SERVED, "failed": IPXE_FAILED, "refused": TFTP_REFUSED}

#: Every event name, for the test that keeps them spelled here only.
ALL = frozenset(value for name, value in dict(globals()).items() if name.isupper() and isinstance(value, str))
