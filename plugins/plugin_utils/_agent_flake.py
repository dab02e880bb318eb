# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The action plugins of the modules that evaluate or build the site's flake tell them where this collection is.

Such a module runs from a zip that holds no flake.nix, so it cannot find the agent of the
collection that runs the task by itself. Its action plugin runs from the collection on the
controller and fills in the module's ``agent_flake`` with the collection's root, so every
evaluation and build of a run overrides the flake's ``nixie-metal`` input the same way
(``_nix.overrides.run_overrides``). This file is private to the collection.
"""

from __future__ import annotations

import os

from ansible.plugins.action import ActionBase

# plugins/plugin_utils/_agent_flake.py -> the collection's root
COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class AgentFlakeAction(ActionBase):
    """Runs ``MODULE`` with agent_flake set to this collection unless the task gives it."""

    MODULE = None
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if args.get("agent_flake") is None and os.path.isfile(os.path.join(COLLECTION_ROOT, "flake.nix")):
            args["agent_flake"] = COLLECTION_ROOT
        # As ansible.builtin.normal does it, so async and the temporary directory behave the same.
        wrap_async = self._task.async_val and not self._connection.has_native_async
        result.update(self._execute_module(module_name=self.MODULE, module_args=args,
                                           task_vars=task_vars, wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
