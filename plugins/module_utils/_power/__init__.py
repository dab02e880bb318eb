# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Power control through a machine's BMC, for the power module, without Ansible.

``plan``     pure decisions: what to do given the power state and boot override read from the BMC,
             how to read a Redfish ``Boot`` object or an IPMI boot-flags answer, BMC addresses, messages.
``redfish``  the Redfish edge, through the ``sushy`` library.
``ipmi``     the IPMI edge, through the ``pyghmi`` library.
``control``  opens the right one and carries a plan out: read, act, wait, read back.

Private to the collection: the interface may change without notice.
"""

from __future__ import annotations
