# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs that several modules share, each the twin of a doc fragment in plugins/doc_fragments/.

A module unpacks the ones it takes into its own ``argument_spec`` (``dict(own=..., **nix_call())``),
so an option it also declared itself would be a TypeError, not a silent override. Each call returns
new dicts: a spec's ``{}`` and ``[]`` defaults are never shared between modules.

Private to this collection, as its leading underscore says (README, "Layout").
"""

from __future__ import annotations

from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.options import IPXE_DIR, ServerOptions

Spec = dict[str, dict[str, Any]]

DHCP_MODES = ("proxy", "addresses", "off")
DHCP6_MODES = ("proxy", "addresses", "off")


def nix_call() -> Spec:
    """How nix_build and nix_eval call nix (doc fragment nixie.metal._nix)."""
    return dict(
        chdir=dict(type="path"),
        executable=dict(type="str"),
        impure=dict(type="bool", default=False),
        offline=dict(type="bool", default=False),
        options=dict(type="dict", default={}),
        extra_args=dict(type="list", elements="str", default=[]),
    )


def flake_inputs() -> Spec:
    """The flake inputs nix_build, nix_eval and host_status override alike (nixie.metal._nix.flake_inputs)."""
    return dict(
        override_inputs=dict(type="dict", default={}),
        agent_flake=dict(type="path"),
    )


def netboot_server() -> Spec:
    """Where and how pxe_server serves, which preflight checks (nixie.metal._netboot_server)."""
    return dict(
        interface=dict(type="str"),
        address=dict(type="str"),
        address6=dict(type="str"),
        dhcp=dict(type="str", choices=list(DHCP_MODES), default=ServerOptions.dhcp_mode),
        dhcp6=dict(type="str", choices=list(DHCP6_MODES), default="proxy"),
        http_port=dict(type="int", default=ServerOptions.http_port),
        ipxe_dir=dict(type="path", default=IPXE_DIR),
    )
