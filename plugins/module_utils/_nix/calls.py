# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running ``nix build`` and ``nix eval`` on the site's flake, once per module run.

Everything that decides something is a pure function (command lines, parsing nix's JSON
and its ``--log-format internal-json`` stream, mapping results to installables, the
netboot shortcut); :func:`run` is the one place that starts a process. No Ansible imports.

Every build and evaluation of a run (nix_build, nix_eval, host_status, the nixos_anywhere
role through them) overrides the flake's inputs the same way, :func:`run_overrides`: the
running collection's flake as ``nixie-metal``, and the user's ``override_inputs``.

How one run goes (see docs/installer.md):

1. With more than one installable, ``nix build --dry-run --json`` evaluates them and
   prints one entry per installable, in order: that gives each installable's derivation.
   (A real ``nix build --json`` lists its results sorted, not in the installables' order.)
2. One ``nix build --no-link --json`` builds every installable together. Its results are
   matched to installables by derivation path. If a derivation of step 1 is missing from
   step 2 the flake changed in between, and the run fails instead of mixing two evaluations.
3. For a NixOS installer, kernel file, initrd and kernel parameters are read from the
   built system (``toplevel/kernel``, ``toplevel/kernel-params``), which is a product of
   the same build. Check mode, which builds nothing, asks ``nix eval`` instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._nix.commands import build_command, eval_command, netboot_installables, nixos_configuration, unique
from ansible_collections.nixie.metal.plugins.module_utils._nix.errors import NixError, NixTimeout
from ansible_collections.nixie.metal.plugins.module_utils._nix.output import NixLog, match_results, netboot_artifacts, parse_build_json, read_toplevel
from ansible_collections.nixie.metal.plugins.module_utils._nix.overrides import LOCK_NOT_WRITTEN, run_overrides
from ansible_collections.nixie.metal.plugins.module_utils._nix.process import Deadline, Runner, run

# Evaluated in check mode only, when the system has not been built yet.
NETBOOT_EVAL_APPLY = "c: { kernelFile = c.system.boot.loader.kernelFile; kernelParams = c.boot.kernelParams; }"


# --- one module run ----------------------------------------------------------------


def build(nix: str, installables: Iterable[str] = (), installers: Mapping[str, str] | None = None, check_mode: bool = False,
          cwd: str | None = None, timeout: float | None = None, env: Mapping[str, str] | None = None, runner: Runner = run,
          override_inputs: Mapping[Any, Any] | None = None, agent_flake: str | None = None, **flags: Any) -> dict[str, Any]:
    """Build (or, in check mode, evaluate) installables and installers in one nix build call.

    ``installers``: key -> NixOS configuration reference; each key gets the netboot
    artifacts of that configuration. ``override_inputs`` and ``agent_flake``: see
    :func:`run_overrides`. Returns a dict shaped like the module's result.
    """
    if cwd and not os.path.isdir(cwd):
        raise NixError("chdir %s is not a directory" % cwd)
    with run_overrides(override_inputs, agent_flake) as overrides:
        result = _build(nix, installables, installers, check_mode, cwd, timeout, env, runner,
                        dict(flags, override_inputs=overrides.flags))
        used, result["warnings"] = overrides.settle(result["warnings"])
        result["override_inputs"] = overrides.shown(used)
        result["cmd"] = overrides.show_command(result["cmd"])
    return result


def evaluate(nix: str, installable: str, apply: str | None = None, cwd: str | None = None, timeout: float | None = None,
             env: Mapping[str, str] | None = None, runner: Runner = run, override_inputs: Mapping[Any, Any] | None = None,
             agent_flake: str | None = None, **flags: Any) -> dict[str, Any]:
    """``nix eval --json`` of one installable with the run's overrides; nothing is built, no lock file written.

    Returns {value, cmd, override_inputs, warnings}. Raises NixError with nix's errors.
    """
    if cwd and not os.path.isdir(cwd):
        raise NixError("chdir %s is not a directory" % cwd)
    with run_overrides(override_inputs, agent_flake) as overrides:
        argv = eval_command(nix, installable, apply=apply, write_lock_file=False,
                            **dict(flags, override_inputs=overrides.flags))
        try:
            rc, out, err = runner(argv, cwd=cwd, env=env, timeout=timeout)
        except NixTimeout as exc:
            exc.cmd = overrides.show_command(argv)
            raise
        log = NixLog().feed_text(err)
        if rc != 0:
            raise NixError(log.failure_message("nix eval of %s" % installable, rc), rc=rc, log_tail=log.tail,
                           cmd=overrides.show_command(argv))
        try:
            value = json.loads(out)
        except ValueError:
            raise NixError("nix eval of %s printed no JSON value: %r" % (installable, out[:200]),
                           cmd=overrides.show_command(argv)) from None
        used, warnings = overrides.settle(log.warnings)
        # The lock file is left alone on purpose (--no-write-lock-file): saying so is no news.
        warnings = [w for w in warnings if not w.startswith(LOCK_NOT_WRITTEN)]
        return {"value": value, "cmd": overrides.show_command(argv), "override_inputs": overrides.shown(used),
                "warnings": warnings}


def _build(nix: str, installables: Iterable[str], installers: Mapping[str, str] | None, check_mode: bool, cwd: str | None,
           timeout: float | None, env: Mapping[str, str] | None, runner: Runner, flags: dict[str, Any]) -> dict[str, Any]:
    deadline = Deadline(timeout)
    installers = dict(installers or {})
    roles = {key: netboot_installables(ref) for key, ref in installers.items()}
    wanted = unique(list(installables) + [i for r in roles.values() for i in r.values()])
    if not wanted:
        raise NixError("nothing to build: give installables or an installer")

    def call(argv: list[str], what: str) -> tuple[str, NixLog]:
        try:
            rc, out, err = runner(argv, cwd=cwd, env=env, timeout=deadline.left())
        except NixTimeout as exc:
            exc.msg = "%s ran out of time (timeout %s seconds) and was stopped%s" % (what, timeout, exc.msg.partition(" and was stopped")[2])
            raise
        log = NixLog().feed_text(err)
        if rc != 0:
            raise NixError(log.failure_message(what, rc), rc=rc, log_tail=log.tail, cmd=argv)
        return out, log

    planned = None
    plan_log = None
    if check_mode or len(wanted) > 1:
        out, plan_log = call(build_command(nix, wanted, dry_run=True, **flags), "nix build --dry-run")
        planned = parse_build_json(out)
    cmd = build_command(nix, wanted, dry_run=check_mode, **flags)
    if check_mode:
        mapped = match_results(wanted, planned, planned)
        built, fetched = plan_log.will_build, plan_log.will_fetch
        warnings = plan_log.warnings
    else:
        out, log = call(cmd, "nix build")
        mapped = match_results(wanted, planned, parse_build_json(out))
        built, fetched = log.built, log.fetched
        warnings = unique((plan_log.warnings if plan_log else []) + log.warnings)

    result = {
        "changed": bool(built or fetched),
        "cmd": cmd,
        "outputs": {i: mapped[i]["outputs"] for i in wanted},
        "drv_paths": {i: mapped[i]["drv_path"] for i in wanted},
        "built": built,
        "fetched": fetched,
        "warnings": warnings,
        "artifacts": {},
    }
    for key, role in roles.items():
        paths = {name: mapped[inst]["outputs"].get("out") for name, inst in role.items()}
        result["artifacts"][key] = _installer_artifacts(
            nix, installers[key], paths, check_mode, lambda argv: call(argv, "nix eval")[0], flags)
    return result


def _installer_artifacts(nix: str, installer: str, paths: Mapping[str, str], check_mode: bool,
                         evaluate: Callable[[list[str]], str], flags: dict[str, Any]) -> dict[str, Any]:
    toplevel = paths["toplevel"]
    if os.path.isdir(toplevel):
        kernel_file, params, system = read_toplevel(toplevel)
    elif check_mode:
        out = evaluate(eval_command(nix, nixos_configuration(installer) + ".config", apply=NETBOOT_EVAL_APPLY, **flags))
        data = json.loads(out)
        kernel_file, params, system = data["kernelFile"], data["kernelParams"], None
    else:
        raise NixError("nix built %s but %s does not exist" % (installer, toplevel))
    return netboot_artifacts(paths["kernel"], paths["initrd"], toplevel, kernel_file, params, system)
