# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure decisions of the power module: no sockets, no libraries, no Ansible.

A BMC is read into two values: its power state (``on``, ``off``, ``powering_on``,
``powering_off`` or ``unknown``) and its boot override (``Boot``: the device the
next boot comes from, or none). ``plan`` turns those and what the task asks for
into steps; ``predict`` tells what the BMC should report after them, which is
what check mode returns and what ``control`` checks after acting.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Container, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

DRIVERS = ("redfish", "ipmi")
STATES = ("on", "off", "reset")
BOOT_DEVICES = ("network", "disk")
BOOT_MODES = ("uefi", "legacy")
IPMI_DEFAULT_PORT = 623

# Step names, in the order they are carried out.
SET_BOOT = "set_boot"
POWER_ON = "power_on"
POWER_OFF = "power_off"
RESET = "reset"

# Redfish ComputerSystem.Boot values (DMTF DSP0268) for the devices this module sets.
REDFISH_TARGETS = {"network": "Pxe", "disk": "Hdd"}
REDFISH_MODES = {"uefi": "UEFI", "legacy": "Legacy"}
REDFISH_POWER = {"On": "on", "Off": "off", "PoweringOn": "powering_on", "PoweringOff": "powering_off"}
# ResetType values that bring about each step, best first: a BMC lists the ones it allows.
REDFISH_RESET_TYPES = {
    POWER_ON: ("On", "ForceOn", "PushPowerButton"),
    POWER_OFF: ("ForceOff", "GracefulShutdown", "PushPowerButton"),
    RESET: ("ForceRestart", "PowerCycle", "GracefulRestart"),
}
# pyghmi's names of the IPMI boot devices (Get/Set System Boot Options, parameter 5).
IPMI_DEVICES = {"network": "network", "disk": "hd"}

_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


class PowerError(Exception):
    """The BMC could not be used or did not do what was asked.

    The message names the BMC, says what went wrong and what to do. ``partial``
    holds what was known when it happened (power state read, steps done), so
    the module's failure result can still report it.
    """

    def __init__(self, message: str, partial: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.partial = dict(partial or {})


@dataclasses.dataclass(frozen=True)
class Boot:
    """A BMC's boot override: where the next boot comes from.

    ``device``: ``network``, ``disk``, ``cd``, another device's name in lower case, or
    None when there is no override (the firmware's own boot order applies).
    ``persistent``: True when the BMC keeps the override beyond the next boot.
    ``mode``: ``uefi``, ``legacy`` or None when the BMC does not say.
    """

    device: str | None = None
    persistent: bool = False
    mode: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"device": self.device, "persistent": self.persistent, "mode": self.mode}


NO_OVERRIDE = Boot()


# -- what to do ---------------------------------------------------------------------

def settled(power: str) -> str:
    """The state a power state is heading to: a machine powering on counts as on."""
    return {"powering_on": "on", "powering_off": "off"}.get(power, power)


def boot_satisfied(current: Boot, device: str | None, mode: str | None = None) -> bool:
    """Whether the next boot already comes from ``device`` (in ``mode``, when one is asked for).

    A persistent override counts: the next boot comes from that device either way.
    """
    if current.device != device:
        return False
    return mode is None or current.mode == mode


def plan(power: str, boot: Boot, state: str | None = None, device: str | None = None, mode: str | None = None,
         bmc: str = "the BMC") -> list[str]:
    """The steps that take a BMC from (``power``, ``boot``) to what the task asks for.

    ``state``: None (leave the power alone), ``on``, ``off`` or ``reset``; ``reset``
    restarts a machine that is on and powers on one that is off, so that either way
    a fresh boot begins. ``device``: None or the device of a one-time boot override.
    The override is set before any power step, so that the boot it starts uses it.
    """
    if state is not None and state not in STATES:
        raise ValueError("state %r is not one of %s" % (state, ", ".join(STATES)))
    if device is not None and device not in BOOT_DEVICES:
        raise ValueError("boot %r is not one of %s" % (device, ", ".join(BOOT_DEVICES)))
    steps = []
    if device is not None and not boot_satisfied(boot, device, mode):
        steps.append(SET_BOOT)
    if state is None:
        return steps
    current = settled(power)
    if current not in ("on", "off"):
        raise PowerError("%s reports the power state %r, neither on nor off, so state=%s cannot be decided; "
                         "look at the machine in the BMC's own interface" % (bmc, power, state))
    if state == "on" and current == "off":
        steps.append(POWER_ON)
    elif state == "off" and current == "on":
        steps.append(POWER_OFF)
    elif state == "reset":
        steps.append(RESET if current == "on" else POWER_ON)
    return steps


def power_after(power: str, steps: Sequence[str]) -> str:
    """The power state the BMC should report once ``steps`` are done."""
    if POWER_OFF in steps:
        return "off"
    if POWER_ON in steps or RESET in steps:
        return "on"
    return power


def boot_after(boot: Boot, steps: Sequence[str], device: str | None, mode: str | None = None) -> Boot:
    """The boot override the BMC should report once ``steps`` are done (before the machine boots)."""
    if SET_BOOT not in steps:
        return boot
    return Boot(device=device, persistent=False, mode=mode if mode is not None else boot.mode)


def describe_steps(steps: Iterable[str], device: str | None = None, mode: str | None = None) -> list[str]:
    """Human words for the steps, as the module returns them in ``actions``."""
    words = {
        SET_BOOT: "boot once from %s%s" % (device, " (%s)" % mode if mode else ""),
        POWER_ON: "power on",
        POWER_OFF: "power off",
        RESET: "reset",
    }
    return [words[step] for step in steps]


def check_boot_applied(label: str, wanted: str, reported: Boot) -> tuple[bool, str] | None:
    """``(is_error, sentence)`` when the BMC accepted a boot override but reports another, else None.

    For a network boot that is an error: the machine would not reach the installer, and
    the run would otherwise find out only when waiting for it times out. For the disk it
    is a warning: the machine is installed by then, and some BMCs (virtualbmc) report the
    boot device the running machine started with until it restarts.
    """
    if reported.device == wanted:
        return None
    shown = reported.device or "no override"
    if wanted == "network":
        return True, ("%s accepted a one-time boot from the network but reports %s afterwards: it does not support "
                      "one-time boot overrides (or ignores them). Set the machine to boot from the network in its "
                      "firmware, or use another driver" % (label, shown))
    return False, ("%s accepted a one-time boot from %s but reports %s afterwards; if the machine boots from %s at its "
                   "next start, put %s first in its firmware's boot order" % (label, wanted, shown, shown, wanted))


def persistence_warning(label: str, reported: Boot) -> str | None:
    """A warning when the BMC keeps a network boot set for one boot only (some do), else None."""
    if reported.persistent and reported.device == "network":
        return ("%s keeps the network boot override beyond the next boot: the machine boots from the network until "
                "it is changed (the provision playbook sets the disk after installing)" % label)
    return None


# -- Redfish ------------------------------------------------------------------------

def redfish_base_url(address: str, port: int | None = None) -> str:
    """The base URL of a Redfish service: ``https://address[:port]`` unless ``address`` is a URL.

    ``address`` may be a host name, an IPv4 or IPv6 address, or an ``http(s)://`` URL
    with no path beyond ``/`` (the service root ``/redfish/v1/`` is implied).
    """
    text = str(address or "").strip()
    if not text:
        raise PowerError("address is empty: give the BMC's host name, IP address or https:// URL")
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https"):
            raise PowerError("address %r: a Redfish URL starts with https:// (or http://)" % text)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise PowerError("address %r: give the BMC's URL without a path (the service root /redfish/v1/ is implied)" % text)
        try:
            url_port = parts.port
        except ValueError:
            raise PowerError("address %r has an invalid port" % text) from None
        host = parts.hostname
        if not host:
            raise PowerError("address %r has no host" % text)
        if port is not None and url_port is not None and int(port) != url_port:
            raise PowerError("address %r names port %d but port is %d; give one of them" % (text, url_port, int(port)))
        scheme = parts.scheme
        port = url_port if url_port is not None else port
    else:
        scheme = "https"
        host = _bare_host(text)
    if port is not None and not 1 <= int(port) <= 65535:
        raise PowerError("port %s is not a TCP port (1-65535)" % port)
    netloc = "[%s]" % host if ":" in host else host
    if port is not None:
        netloc += ":%d" % int(port)
    return "%s://%s" % (scheme, netloc)


def _bare_host(text: str) -> str:
    """A host name or IP address without brackets; anything else is refused."""
    candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        pass
    if _HOST_NAME.match(candidate) and not candidate.replace(".", "").isdigit():
        return candidate
    raise PowerError("address %r is neither a host name nor an IP address%s" % (
        text, "; give the port separately (port)" if candidate.count(":") == 1 else ""))


def redfish_system_path(system: object) -> str:
    """The path of a ComputerSystem from an Id (``1``, ``System.Embedded.1``) or a path."""
    text = str(system).strip()
    if text.startswith("/"):
        return text.rstrip("/")
    if not text or "/" in text:
        raise PowerError("system %r is neither a Redfish system Id (such as 1 or System.Embedded.1) nor a path "
                         "such as /redfish/v1/Systems/1" % system)
    return "/redfish/v1/Systems/%s" % text


def choose_system(label: str, members: Sequence[str], wanted: str | None = None) -> str:
    """The path of the system to drive among a BMC's ``members`` (paths of its Systems collection).

    Without ``wanted`` the BMC must have exactly one system. With it, ``wanted``
    is looked up by path or by the last path segment (the Id); a BMC may also
    accept another alias (a name), so an unknown ``wanted`` is still tried.
    """
    members = [m.rstrip("/") for m in members]
    if wanted is None:
        if len(members) == 1:
            return members[0]
        if not members:
            raise PowerError("%s lists no computer system; check that address points at the machine's BMC" % label)
        raise PowerError("%s manages %d systems (%s); name the machine's with system (hosts.json: power.system)" % (
            label, len(members), ", ".join(m.rsplit("/", 1)[-1] for m in members)))
    path = redfish_system_path(wanted)
    for member in members:
        if member == path or member.rsplit("/", 1)[-1] == path.rsplit("/", 1)[-1]:
            return member
    return path


def redfish_power(value: str | None) -> str:
    """A Redfish PowerState as this module names it."""
    return REDFISH_POWER.get(value, "unknown")


def redfish_boot(boot: Mapping[str, Any] | None) -> Boot:
    """A Redfish ``Boot`` object (a dict from the ComputerSystem) as a ``Boot``."""
    boot = boot or {}
    enabled = boot.get("BootSourceOverrideEnabled")
    target = boot.get("BootSourceOverrideTarget")
    mode = {v: k for k, v in REDFISH_MODES.items()}.get(boot.get("BootSourceOverrideMode"))
    if enabled == "Disabled" or target in (None, "", "None"):
        return Boot(device=None, persistent=False, mode=mode)
    names = {v: k for k, v in REDFISH_TARGETS.items()}
    names["Cd"] = "cd"
    device = names.get(target, str(target).lower())
    return Boot(device=device, persistent=enabled == "Continuous", mode=mode)


def redfish_override_problem(label: str, boot: Mapping[str, Any] | None, device: str, mode: str | None = None) -> str | None:
    """Why the BMC cannot take a one-time override to ``device``, from what it advertises; else None.

    BMCs list the values they accept in ``...@Redfish.AllowableValues``; a BMC that
    lists none is not judged here (its answer to the PATCH is).
    """
    boot = boot or {}
    targets = boot.get("BootSourceOverrideTarget@Redfish.AllowableValues")
    if targets is not None and REDFISH_TARGETS[device] not in targets:
        return "%s cannot boot from %s: it offers the boot targets %s, not %s" % (
            label, device, ", ".join(targets) or "none", REDFISH_TARGETS[device])
    frequencies = boot.get("BootSourceOverrideEnabled@Redfish.AllowableValues")
    if frequencies is not None and "Once" not in frequencies:
        return ("%s does not support one-time boot overrides: it offers %s, not Once. Set the machine to boot from %s "
                "in its firmware, or use another driver" % (label, ", ".join(frequencies) or "nothing", device))
    modes = boot.get("BootSourceOverrideMode@Redfish.AllowableValues")
    if mode is not None and modes is not None and REDFISH_MODES[mode] not in modes:
        return "%s cannot boot in %s mode: it offers %s" % (label, mode, ", ".join(modes) or "no mode")
    return None


def redfish_boot_patch(device: str, mode: str | None = None) -> dict[str, Any]:
    """The ``Boot`` object of the PATCH that sets a one-time override."""
    patch = {"BootSourceOverrideTarget": REDFISH_TARGETS[device], "BootSourceOverrideEnabled": "Once"}
    if mode is not None:
        patch["BootSourceOverrideMode"] = REDFISH_MODES[mode]
    return patch


_CONNECTION_CAUSES = (
    (("CERTIFICATE_VERIFY_FAILED", "certificate verify failed"),
     "its TLS certificate is not trusted: set validate_certs to false (hosts.json power.validate_certs) or give ca_path"),
    (("SSLError", "SSL:", "TLS"), "the TLS handshake failed"),
    (("timed out", "Timeout"), "no answer within %s s"),
    (("Connection refused",), "connection refused: nothing listens on that port"),
    (("Name or service not known", "Temporary failure in name resolution", "Failed to resolve", "nodename nor servname"),
     "the host name does not resolve"),
    (("No route to host",), "no route to the host"),
    (("Network is unreachable",), "the network is unreachable"),
)


def explain_connection_error(text: str, timeout: float) -> str:
    """A short cause for a failed HTTP connection, from the error's text (requests/urllib3 wording)."""
    for needles, cause in _CONNECTION_CAUSES:
        if any(needle in text for needle in needles):
            return cause % timeout if "%s" in cause else cause
    text = " ".join(str(text).split())
    return text if len(text) <= 200 else text[:197] + "..."


def redfish_reset_type(step: str, allowed: Container[str]) -> str | None:
    """The ResetType that performs ``step`` among those the BMC allows (None: it allows none)."""
    for candidate in REDFISH_RESET_TYPES[step]:
        if candidate in allowed:
            return candidate
    return None


# -- IPMI ---------------------------------------------------------------------------

def ipmi_target(address: str, port: int | None = None) -> tuple[str, int]:
    """``(host, port)`` of an IPMI BMC; URLs and ``host:port`` are refused with a hint."""
    text = str(address or "").strip()
    if not text:
        raise PowerError("address is empty: give the BMC's host name or IP address")
    if "://" in text:
        raise PowerError("address %r is a URL; IPMI takes the BMC's host name or IP address (and port, default 623)" % text)
    host = _bare_host(text)
    port = IPMI_DEFAULT_PORT if port is None else int(port)
    if not 1 <= port <= 65535:
        raise PowerError("port %s is not a UDP port (1-65535)" % port)
    return host, port


def ipmi_boot(answer: Mapping[str, Any] | None) -> Boot:
    """pyghmi's ``get_bootdev()`` answer as a ``Boot``."""
    answer = answer or {}
    device = answer.get("bootdev")
    mode = None
    if "uefimode" in answer:
        mode = "uefi" if answer.get("uefimode") else "legacy"
    if device in (None, "default"):
        return Boot(device=None, persistent=False, mode=mode)
    names = {v: k for k, v in IPMI_DEVICES.items()}
    names.update({"optical": "cd", "safe": "disk"})
    return Boot(device=names.get(device, str(device)), persistent=bool(answer.get("persistent")), mode=mode)


_IPMI_CREDENTIAL_ERRORS = ("Incorrect password", "Unauthorized name", "Invalid username length",
                           "Unauthorized role", "Invalid role", "Unauthorized GUID")


def explain_ipmi_error(bmc: str, action: str, text: str, user: str, login_seconds: int) -> str:
    """The message for a pyghmi IpmiException raised while trying to ``action`` the BMC.

    pyghmi raises it with no text when the BMC never answered its login.
    """
    if not text:
        return ("%s did not answer within about %d s (IPMI over UDP). Check power.address and power.port (default %d) "
                "in hosts.json and that this machine reaches the BMC's network" % (bmc, login_seconds, IPMI_DEFAULT_PORT))
    if any(needle in text for needle in _IPMI_CREDENTIAL_ERRORS):
        return ("%s refused user %r (%s): the user or password is wrong, or the user lacks the privilege. Check "
                "power.user and the password (power.password_env or power.password_var in hosts.json)" % (bmc, user, text))
    if "Insufficient resources" in text:
        return "%s has no free session (%s); wait for old sessions to time out, then try again" % (bmc, text)
    return "%s: could not %s it: %s" % (bmc, action, text)


def bmc_label(driver: str, where: str, system: str | None = None) -> str:
    """How messages name a BMC: ``redfish BMC https://10.0.0.5 (system 1)``, ``IPMI BMC 10.0.0.6:623``."""
    text = "%s BMC %s" % ("IPMI" if driver == "ipmi" else "Redfish", where)
    if system:
        text += " (system %s)" % system
    return text
