# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Carry out what the power module asks of one BMC: read, decide, act, wait, read back.

A BMC object (``redfish.RedfishBmc`` or ``ipmi.IpmiBmc``) offers ``label``,
``power()``, ``boot()``, ``set_boot(device, mode)``, ``act(step)`` and
``boot_applies_later()``; ``apply`` needs nothing else, so it is the same for
both protocols.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Union

from ansible_collections.nixie.metal.plugins.module_utils._power import ipmi, plan, redfish

POLL_SECONDS = 1.0

# The BMC of either protocol: the same methods, the same errors (plan.PowerError).
Bmc = Union[ipmi.IpmiBmc, redfish.RedfishBmc]


def missing_library(driver: str) -> tuple[str, str | None] | None:
    """``(library, traceback)`` when the driver's library cannot be imported, else None."""
    if driver == "redfish" and redfish.sushy is None:
        return "sushy", redfish.SUSHY_IMPORT_ERROR
    if driver == "ipmi" and ipmi.pyghmi_command is None:
        return "pyghmi", ipmi.PYGHMI_IMPORT_ERROR
    return None


def open_bmc(params: Mapping[str, Any]) -> Bmc:
    """The BMC the module's parameters describe, not yet connected (use it in a ``with`` block)."""
    if params["driver"] == "redfish":
        return redfish.RedfishBmc(params["address"], params["user"], params["password"], port=params.get("port"),
                                  system=params.get("system"), validate_certs=params.get("validate_certs", True),
                                  ca_path=params.get("ca_path"), timeout=params.get("timeout", 30))
    if params["driver"] == "ipmi":
        return ipmi.IpmiBmc(params["address"], params["user"], params["password"], port=params.get("port"))
    raise plan.PowerError("driver %r is not one of %s" % (params["driver"], ", ".join(plan.DRIVERS)))


def wait_for_power(bmc: Bmc, wanted: str, timeout: float, sleep: Callable[[float], object] = time.sleep,
                   clock: Callable[[], float] = time.monotonic) -> str:
    """Poll until the BMC reports ``wanted`` (on/off); a PowerError after ``timeout`` seconds."""
    deadline = clock() + timeout
    while True:
        current = bmc.power()
        if current == wanted:
            return current
        if clock() >= deadline:
            raise plan.PowerError("%s was asked to power %s but still reports %s after %s s; look at the machine in "
                                  "the BMC's own interface" % (bmc.label, wanted, current, timeout))
        sleep(POLL_SECONDS)


def apply(bmc: Bmc, state: str | None = None, device: str | None = None, mode: str | None = None, check_mode: bool = False,
          timeout: float = 60, sleep: Callable[[float], object] = time.sleep, clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Bring the BMC to ``state`` with a one-time boot from ``device``; the module's result.

    In check mode, or when nothing is to be done, the BMC is only read and the
    result says what would happen (``power_after`` and ``boot_after`` predicted).
    """
    power_before = bmc.power()
    boot_before = bmc.boot()
    steps = plan.plan(power_before, boot_before, state, device, mode, bmc=bmc.label)
    result = {
        "changed": bool(steps),
        "bmc": bmc.label,
        "power_before": power_before,
        "boot_before": boot_before.as_dict(),
        "actions": plan.describe_steps(steps, device, mode),
        "warnings": [],
    }
    if check_mode or not steps:
        result["power_after"] = plan.power_after(power_before, steps)
        result["boot_after"] = plan.boot_after(boot_before, steps, device, mode).as_dict()
        return result
    done = []
    try:
        for step in steps:
            if step == plan.SET_BOOT:
                bmc.set_boot(device, mode)
                reported = bmc.boot()
                if bmc.boot_applies_later():
                    result["warnings"].append("%s applies boot settings at the next boot, so the one-time boot from %s "
                                              "could not be checked now" % (bmc.label, device))
                else:
                    problem = plan.check_boot_applied(bmc.label, device, reported)
                    if problem and problem[0]:
                        raise plan.PowerError(problem[1])
                    if problem:
                        result["warnings"].append(problem[1])
                    warning = plan.persistence_warning(bmc.label, reported)
                    if warning:
                        result["warnings"].append(warning)
            else:
                bmc.act(step)
                wait_for_power(bmc, plan.power_after(power_before, [step]), timeout, sleep, clock)
            done.append(step)
    except plan.PowerError as exc:
        exc.partial.update(bmc=bmc.label, power_before=power_before, boot_before=boot_before.as_dict(),
                           actions=plan.describe_steps(done, device, mode))
        raise
    result["power_after"] = bmc.power()
    result["boot_after"] = bmc.boot().as_dict()
    return result
