# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client side of the netboot server's agent API: wait for a host to phone home.

The waiting is a loop of long-polls (the server holds each request until the
host has a newer event or ``poll`` seconds pass), so a phone-home is seen at
once without hammering the server. When time runs out, ``diagnose`` turns the
host's last event into the likely cause.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from ansible.module_utils.urls import open_url

from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.options import ServerOptions
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import events
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.events import BOOT_STAGES

# What a host's furthest state says about where the boot stopped, in boot order.
HINTS = {
    events.KNOWN: "no DHCP request from this MAC was seen: the machine is not powered on, does not try to "
                  "network-boot (check the boot order and that PXE/network boot is enabled), or is on another "
                  "network segment than the server's interface",
    events.OFFERED: "the server answered DHCP but the iPXE binary was not fetched: a firewall may block UDP 69 "
                    "(TFTP) or 4011 on the controller, or the firmware ignored the proxy offer (Secure Boot on, "
                    "or the site DHCP server sends its own boot options)",
    events.IPXE_SERVED: "iPXE was sent but its script was not fetched: iPXE may get no DHCP answer in time, or "
                        "cannot reach the HTTP port (firewall on TCP %(http_port)s)",
    events.SCRIPT_SERVED: "the iPXE script was fetched but not the kernel: check the kernel path and that the "
                          "HTTP port is reachable",
    events.KERNEL_SERVED: "the kernel was fetched but not the initrd: the download failed or was cut",
    events.INITRD_SERVED: "kernel and initrd were fetched but the agent never phoned home: the kernel may not "
                          "boot (wrong architecture, panic), the installer's network may not come up, or the "
                          "agent cannot reach the API; look at the machine's console",
}


# The server saw the machine ask but could not answer it (engine: policy.Ignore reasons).
REFUSAL_HINTS = {
    "no-boot-file": "the machine asked to network-boot but the server has no iPXE binary for its firmware "
                    "(for arm64: ipxe-arm64.efi in ipxe_dir)",
    "arch-mismatch": "the machine's firmware reports another architecture than its arch in hosts.json; fix arch",
    "unsupported-arch": "the machine's firmware architecture cannot be served (for example 32-bit UEFI)",
}


class AgentApiError(Exception):
    """The API could not be used or the host did not phone home in time."""

    def __init__(self, message: str, host: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.host = host


def host_url(api_url: str, mac: str, wait: float | None = None, after: int | None = None) -> str:
    url = "%s/hosts/%s" % (api_url.rstrip("/"), urllib.parse.quote(mac, safe=""))
    query = {}
    if wait is not None:
        query["wait"] = "%g" % wait
    if after is not None:
        query["after"] = str(after)
    return url + ("?" + urllib.parse.urlencode(query) if query else "")


def fetch_json(url: str, timeout: float) -> Any:
    try:
        with open_url(url, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            body = {}
        raise AgentApiError("%s answered %d: %s" % (url, exc.code, body.get("error") or exc.reason)) from None


def diagnose(host: Mapping[str, Any] | None, http_port: int = ServerOptions.http_port) -> str:
    """One sentence on where this host's boot stopped and what to check (``http_port``: the server's, for the hint)."""
    if host is None:
        return "the server knows nothing of this host"
    if host.get("state") == events.FAILED:
        return "the host failed: %s" % (host.get("failed_reason") or "no reason recorded")
    refused = [event for event in host.get("events") or [] if event.get("event") == events.DHCP_REFUSED]
    if refused and host.get("state") == events.KNOWN:
        return REFUSAL_HINTS.get(refused[-1].get("reason"), "the server refused its DHCP request (%s)" % refused[-1].get("reason"))
    hint = HINTS.get(host.get("state"), "no hint for state %r" % host.get("state"))
    return hint % {"http_port": http_port}


def last_event(host: Mapping[str, Any]) -> dict[str, Any] | None:
    events = (host or {}).get("events") or []
    return events[-1] if events else None


def reached(host: Mapping[str, Any], stage: str) -> bool:
    """Whether the host's furthest state is ``stage`` or a later one."""
    state = (host or {}).get("state")
    return state in BOOT_STAGES and BOOT_STAGES.index(state) >= BOOT_STAGES.index(stage)


def wait_for_phone_home(api_url: str, mac: str, timeout: float, poll: float = 25.0, clock: Callable[[], float] = time.monotonic,
                        on_event: Callable[[dict[str, Any]], object] | None = None,
                        until_state: str = events.PHONED_HOME) -> dict[str, Any]:
    """Block until the host with ``mac`` phones home (or reaches ``until_state``); return its snapshot.

    Raises AgentApiError with the diagnosis when ``timeout`` passes first, when
    the host fails, or when the server stops or cannot be reached for longer
    than the remaining time.
    """
    deadline = clock() + timeout
    after = 0
    host = None
    unreachable_since = None
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            break
        wait = max(0.0, min(poll, remaining))
        try:
            answer = fetch_json(host_url(api_url, mac, wait=wait, after=after), timeout=wait + 10)
            unreachable_since = None
        except (urllib.error.URLError, OSError) as exc:
            if unreachable_since is None:
                unreachable_since = clock()
            reason = getattr(exc, "reason", exc)
            if clock() - unreachable_since > 15:
                raise AgentApiError("the PXE server's API at %s cannot be reached: %s; is the pxe_server job still "
                                    "running?" % (api_url, reason), host) from None
            time.sleep(min(1.0, max(0.0, deadline - clock())))
            continue
        host = answer.get("host") or {}
        if on_event is not None:
            for event in host.get("events", []):
                if event.get("seq", 0) > after:
                    on_event(event)
        after = max(after, host.get("last_seq") or 0)
        if reached(host, until_state):
            return host
        if host.get("state") == events.FAILED:
            raise AgentApiError(diagnose(host), host)
        if answer.get("stopping"):
            raise AgentApiError("the PXE server stopped before %s %s; %s" % (mac, _goal(until_state), diagnose(host)), host)
    event = last_event(host)
    last = "last event: %s" % event["event"] if event else "no event at all"
    port = urllib.parse.urlsplit(api_url).port or 80
    raise AgentApiError("%s did not %s within %gs (%s). Likely cause: %s" % (
        mac, _goal(until_state, infinitive=True), timeout, last, diagnose(host, port)), host)


def _goal(stage: str, infinitive: bool = False) -> str:
    if stage == events.PHONED_HOME:
        return "phone home" if infinitive else "phoned home"
    return ("reach %s" if infinitive else "reached %s") % stage


def pick_address(host: Mapping[str, Any]) -> str | None:
    """The address to reach the installer at: the one it phoned home from."""
    return host.get("address")
