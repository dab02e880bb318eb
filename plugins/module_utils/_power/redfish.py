# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A machine's Redfish BMC, through the ``sushy`` library (OpenStack's Redfish client).

``RedfishBmc`` reads and sets one ComputerSystem's power state and boot
override. Decisions (which ResetType, whether the BMC can take a one-time
override, how to read its ``Boot`` object) are in ``plan``; this file only
talks, and turns every library error into a ``PowerError`` that names the BMC.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._power import plan

try:
    import sushy
    from sushy import exceptions as sushy_errors
except ImportError:
    sushy = None
    sushy_errors = None
    SUSHY_IMPORT_ERROR = traceback.format_exc()
else:
    SUSHY_IMPORT_ERROR = None
    # sushy logs retries and fallbacks as warnings; the module reports what matters itself.
    logging.getLogger("sushy").addHandler(logging.NullHandler())
    logging.getLogger("sushy").propagate = False

# Requests that fail to connect or time out are tried this many times in all, a second apart.
ATTEMPTS = 2


class RedfishBmc:
    """One ComputerSystem of a Redfish service. Use as a context manager (the session is closed)."""

    driver = "redfish"

    def __init__(self, address: str, user: str, password: str, port: int | None = None, system: str | None = None,
                 validate_certs: bool = True, ca_path: str | None = None, timeout: float = 30) -> None:
        self.base_url = plan.redfish_base_url(address, port)
        self.label = plan.bmc_label(self.driver, self.base_url, system)
        self.system_path = None
        self._wanted = system
        self._user = user
        self._password = password
        self._verify = ca_path if ca_path else bool(validate_certs)
        self._timeout = timeout
        self._auth = None
        self._system = None

    def __enter__(self) -> RedfishBmc:
        try:
            with self._errors("open a session with"):
                self._auth = sushy.auth.SessionOrBasicAuth(username=self._user, password=self._password)
                root = sushy.Sushy(self.base_url, auth=self._auth, verify=self._verify,
                                   server_side_retries=ATTEMPTS, server_side_retries_delay=1,
                                   connect_timeout=self._timeout, read_timeout=self._timeout)
                members = root.get_system_collection().members_identities
            self.system_path = plan.choose_system(self.label, members, self._wanted)
            with self._errors("read the system %s of" % self.system_path):
                self._system = root.get_system(self.system_path)
        except BaseException:
            # `with` does not call __exit__ when __enter__ fails: close a session opened on the way.
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._auth is not None:
            # Closing deletes the Redfish session: BMCs allow only a few at a time.
            with contextlib.suppress(Exception), self._quiet():
                self._auth.close()
            self._auth = None

    # -- reading -----------------------------------------------------------------

    def _fresh(self) -> dict[str, Any]:
        with self._errors("read the system %s of" % self.system_path):
            self._system.refresh(force=True)
        return self._system.json

    def power(self) -> str:
        return plan.redfish_power(self._fresh().get("PowerState"))

    def boot(self) -> plan.Boot:
        return plan.redfish_boot(self._fresh().get("Boot"))

    def boot_applies_later(self) -> bool:
        """True when the BMC takes boot changes through a settings object applied at the next boot."""
        return "@Redfish.Settings" in self._system.json

    # -- acting ------------------------------------------------------------------

    def set_boot(self, device: str, mode: str | None = None) -> None:
        problem = plan.redfish_override_problem(self.label, self._fresh().get("Boot"), device, mode)
        if problem:
            raise plan.PowerError(problem)
        patch = plan.redfish_boot_patch(device, mode)
        with self._errors("set a one-time boot from %s on" % device):
            self._system.set_system_boot_options(
                target=sushy.BootSource(patch["BootSourceOverrideTarget"]),
                enabled=sushy.BootSourceOverrideEnabled(patch["BootSourceOverrideEnabled"]),
                mode=sushy.BootSourceOverrideMode(patch["BootSourceOverrideMode"]) if mode else None)

    def act(self, step: str) -> None:
        """Carry out a power step (plan.POWER_ON, POWER_OFF or RESET) with a ResetType the BMC allows."""
        with self._errors("read the reset types of"):
            allowed = {value.value for value in self._system.get_allowed_reset_system_values()}
        reset_type = plan.redfish_reset_type(step, allowed)
        if reset_type is None:
            raise plan.PowerError("%s allows no reset type that does %s (it allows %s)" % (
                self.label, step.replace("_", " "), ", ".join(sorted(allowed)) or "none"))
        with self._errors("%s (ResetType %s) through" % (step.replace("_", " "), reset_type)):
            self._system.reset_system(sushy.ResetType(reset_type))

    # -- errors ------------------------------------------------------------------

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        # urllib3 warns on every request when validate_certs is false; the option says it all.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn sushy's exceptions into a PowerError: '<BMC>: could not <action> it: <why>; <what to do>'."""
        try:
            with self._quiet():
                yield
        except plan.PowerError:
            raise
        except sushy_errors.AccessError as exc:
            raise plan.PowerError(
                "%s refused user %r (HTTP %s): the user or password is wrong, or the user may not %s it. Check power.user "
                "and the password (power.password_env or power.password_var in hosts.json)" % (
                    self.label, self._user, exc.status_code, action)) from None
        except sushy_errors.ResourceNotFoundError as exc:
            raise plan.PowerError("%s: could not %s it: %s is not there (HTTP 404). Check power.system in hosts.json" % (
                self.label, action, _path_of(exc))) from None
        except sushy_errors.HTTPError as exc:
            raise plan.PowerError("%s: could not %s it: HTTP %s: %s" % (
                self.label, action, exc.status_code, exc.detail or exc.code or "no reason given")) from None
        except sushy_errors.ConnectionError as exc:
            raise plan.PowerError("%s did not answer (%s, %d attempts). Check power.address%s and that this machine "
                                  "reaches the BMC's network" % (
                                      self.label, plan.explain_connection_error(str(exc), self._timeout), ATTEMPTS,
                                      "" if self.base_url.startswith("http:") else ", or power.validate_certs for a "
                                      "self-signed certificate")) from None
        except sushy_errors.SushyError as exc:
            raise plan.PowerError("%s: could not %s it: %s" % (self.label, action, exc)) from None
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # A BMC that answers something that is not Redfish (a login page, broken JSON) lands here.
            raise plan.PowerError("%s: could not %s it: unexpected answer (%s: %s). Check that power.address points "
                                  "at the BMC's Redfish service" % (self.label, action, type(exc).__name__, exc)) from None


def _path_of(exc: BaseException) -> str:
    """The URL a sushy HTTP error was about, from its message."""
    words = str(exc).split()
    for word in words:
        if word.startswith(("http://", "https://")):
            return word
    return "the resource"
