# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A machine's IPMI BMC (IPMI 2.0, RMCP+ over UDP), through the ``pyghmi`` library.

``IpmiBmc`` reads and sets the chassis power state and the boot device of the
next boot. Decisions are in ``plan``; this file only talks, and turns every
library error into a ``PowerError`` that names the BMC.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator

from ansible_collections.nixie.metal.plugins.module_utils._power import plan

try:
    from pyghmi import exceptions as pyghmi_errors
    from pyghmi.ipmi import command as pyghmi_command
except ImportError:
    pyghmi_command = None
    pyghmi_errors = None
    PYGHMI_IMPORT_ERROR = traceback.format_exc()
else:
    PYGHMI_IMPORT_ERROR = None

# pyghmi's names of the chassis control actions (IPMI "Chassis Control", netfn 0 command 2).
_CHASSIS = {plan.POWER_ON: "on", plan.POWER_OFF: "off", plan.RESET: "reset"}
# pyghmi's own login timeout (its retries), for the message when a BMC does not answer.
LOGIN_SECONDS = 5


class IpmiBmc:
    """One IPMI BMC. Use as a context manager (the session is closed)."""

    driver = "ipmi"

    def __init__(self, address: str, user: str, password: str, port: int | None = None) -> None:
        self.host, self.port = plan.ipmi_target(address, port)
        where = "[%s]:%d" % (self.host, self.port) if ":" in self.host else "%s:%d" % (self.host, self.port)
        self.label = plan.bmc_label(self.driver, where)
        self._user = user
        self._password = password
        self._command = None

    def __enter__(self) -> IpmiBmc:
        with self._errors("log in to"):
            # keepalive=False: no background thread keeping the session up; the task is short.
            self._command = pyghmi_command.Command(bmc=self.host, userid=self._user, password=self._password,
                                                   port=self.port, keepalive=False)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._command is not None:
            # BMCs allow only a few sessions at a time: close ours.
            with contextlib.suppress(Exception):
                self._command.ipmi_session.logout()
            self._command = None

    def power(self) -> str:
        with self._errors("read the power state of"):
            return self._command.get_power()["powerstate"]

    def boot(self) -> plan.Boot:
        with self._errors("read the boot device of"):
            return plan.ipmi_boot(self._command.get_bootdev())

    @staticmethod
    def boot_applies_later() -> bool:
        return False

    def set_boot(self, device: str, mode: str | None = None) -> None:
        with self._errors("set a one-time boot from %s on" % device):
            answer = self._command.set_bootdev(plan.IPMI_DEVICES[device], persist=False, uefiboot=mode == "uefi")
        if isinstance(answer, dict) and answer.get("error"):
            raise plan.PowerError("%s refused a one-time boot from %s: %s" % (self.label, device, answer["error"]))

    def act(self, step: str) -> None:
        with self._errors("%s through" % step.replace("_", " ")):
            self._command.set_power(_CHASSIS[step], wait=False)

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn pyghmi's exceptions into a PowerError that names the BMC and says what to do."""
        try:
            yield
        except plan.PowerError:
            raise
        except pyghmi_errors.IpmiException as exc:
            raise plan.PowerError(plan.explain_ipmi_error(self.label, action, str(exc) if exc.args and exc.args[0] else "",
                                                          self._user, LOGIN_SECONDS)) from None
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # pyghmi fails with struct/assertion errors on answers it does not expect (a BMC that
            # agrees to one cipher suite and uses another, a device that is not a BMC).
            raise plan.PowerError("%s: could not %s it: unexpected answer (%s: %s). Check that power.address and "
                                  "power.port point at an IPMI 2.0 (RMCP+) BMC" % (
                                      self.label, action, type(exc).__name__, exc)) from None
