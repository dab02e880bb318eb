# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of nixie.metal.host_status: fills in the module's agent_flake with this collection (plugin_utils/_agent_flake.py)."""

from __future__ import annotations

from ansible_collections.nixie.metal.plugins.plugin_utils._agent_flake import AgentFlakeAction


class ActionModule(AgentFlakeAction):
    """Run nixie.metal.host_status with agent_flake set to this collection unless given."""

    MODULE = "nixie.metal.host_status"
