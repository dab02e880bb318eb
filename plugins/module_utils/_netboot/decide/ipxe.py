# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rendering of the per-host iPXE script (pure, no I/O).

The script makes sure the NIC has an address (iPXE already has one when it
fetched the script over HTTP; the DHCP loop only matters when it has not),
fetches the kernel and initrd from per-MAC URLs so the server can record
each step, and boots. If anything fails it says so on the console, waits,
and exits iPXE so the firmware falls through to its next boot device.

iPXE expands ``${...}`` and splits on white space; quotes, backslashes,
``&&``/``||`` and ``#`` are special to it. Nothing from the outside (extra
kernel arguments, base URL, host name) may smuggle any of that in: every
token is checked against a conservative character set and refused with a
ValueError that names it.

Note on the ``initrd`` line: iPXE passes any argument after the URL to the
image, and for an initrd that means "place this file at that path inside a
wrapping cpio archive" — which breaks a NixOS initrd. So the line carries
only ``--name initrd`` and the URL. The kernel line names ``initrd=initrd``
so EFI-stub kernels find the image by that name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ansible_collections.nixie.metal.plugins.module_utils._hosts import HostNetwork, is_canonical_mac
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.kernel_network import conflicting_arguments, network_arguments

# Characters allowed in one kernel command-line token. Letters, digits and
# the punctuation kernel arguments and URLs need (brackets for IPv6 literals);
# no white space, quotes, backslash, '$', '{', '}', '#', '&', '|', ';', '<', '>'.
_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9._,:/=+@%~\[\]-]{1,1024}$")
_BASE_URL = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")
_TOKEN_VALUE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")

# Arguments the server sets itself; an operator must not override them.
RESERVED_PREFIXES = ("nixie.api=", "nixie.token=", "nixie.mac=", "initrd=")

DEFAULT_DHCP_DELAYS = (1, 2, 4)
DEFAULT_FAIL_DELAY = 10


def is_token_value(token: object) -> bool:
    """True when ``token`` has the shape of a host token (16-128 URL-safe characters)."""
    return isinstance(token, str) and bool(_TOKEN_VALUE.match(token))


def check_token(token: str) -> str:
    """Return ``token`` if it is a safe kernel command-line token, else raise ValueError."""
    if not isinstance(token, str) or not _SAFE_TOKEN.match(token):
        raise ValueError(
            "kernel argument %r contains characters iPXE would interpret (white space, quotes, "
            "backslash, $ { } # & | ; < >) or is empty; use plain key=value arguments" % (token,))
    return token


def split_cmdline(extra: str | Sequence[str] | None) -> list[str]:
    """Turn the operator's extra kernel arguments into a checked list of tokens.

    ``extra`` is None, a string (split on white space) or a list of strings.
    Raises ValueError for unsafe tokens and for the arguments the server sets
    itself (nixie.api=, nixie.token=, nixie.mac=, initrd=).
    """
    if extra is None:
        return []
    if isinstance(extra, str):
        if "\n" in extra or "\r" in extra:
            raise ValueError("extra kernel arguments must be one line; found a line break")
        tokens = extra.split()
    elif isinstance(extra, (list, tuple)):
        tokens = []
        for item in extra:
            if not isinstance(item, str):
                raise ValueError("extra kernel arguments must be strings; got %r" % (item,))
            if "\n" in item or "\r" in item:
                raise ValueError("extra kernel argument %r contains a line break" % item)
            tokens.extend(item.split() if item.strip() else [item])
    else:
        raise ValueError("extra kernel arguments must be a string or a list of strings; got %r" % (extra,))
    for token in tokens:
        check_token(token)
        for prefix in RESERVED_PREFIXES:
            if token.startswith(prefix):
                raise ValueError("kernel argument %r is set by the nixie.metal server; remove it from the extra arguments" % token)
    return tokens


def check_base_url(base_url: str) -> str:
    """Return ``base_url`` without a trailing slash if it is a plain http(s) URL, else raise ValueError."""
    if not isinstance(base_url, str):
        raise ValueError("base URL must be a string such as http://192.0.2.1:8080; got %r" % (base_url,))
    url = base_url.rstrip("/")
    if not _BASE_URL.match(url):
        raise ValueError("base URL %r is not of the form http://<ip or name>[:port][/path] "
                         "with only letters, digits, '.', '-', '_', '~' and '/' in the path" % base_url)
    return url


def kernel_arguments(api_url: str, token: str, mac: str, extra: str | Sequence[str] | None = None,
                     network: HostNetwork | None = None, host_name: str | None = None) -> list[str]:
    """The kernel command line (as a list) given to the installer, after ``initrd=initrd``.

    ``mac``: the host's MAC as the registry holds it (lower-case, colon-separated). ``network``: the
    host's static network (:mod:`.kernel_network`), whose arguments the operator's ``extra`` must not
    also set; ``host_name`` goes into its ``ip=``.
    """
    if not is_canonical_mac(mac):
        raise ValueError("%r is not a MAC address in the one spelling (lower-case, colon-separated)" % (mac,))
    if not isinstance(token, str) or not _TOKEN_VALUE.match(token):
        raise ValueError("the host token must be 16-128 URL-safe characters")
    api = check_base_url(api_url)
    tokens = split_cmdline(extra)
    if network is not None:
        clash = conflicting_arguments(tokens)
        if clash:
            raise ValueError("kernel argument %s would contradict the host's static network (hosts.json network); "
                             "remove it from the extra arguments" % ", ".join(clash))
        tokens += [check_token(argument) for argument in network_arguments(network, host_name)]
    return tokens + [
        "nixie.api=" + api,
        "nixie.token=" + token,
        "nixie.mac=" + mac,
    ]


def render_script(base_url: str, mac: str, token: str, extra_cmdline: str | Sequence[str] | None = None,
                  host_name: str | None = None, api_url: str | None = None, dhcp_delays: Sequence[float] = DEFAULT_DHCP_DELAYS,
                  fail_delay: float = DEFAULT_FAIL_DELAY, address_setting: str = "ip", network: HostNetwork | None = None) -> str:
    """Return the iPXE script (text ending in a newline) for one host.

    ``base_url``: where iPXE reaches this server, e.g. ``http://192.0.2.1:8080``.
    ``api_url``: what the agent calls; default ``{base_url}/api/v1``.
    ``extra_cmdline``: operator's kernel arguments (string or list), checked.
    ``host_name``: only shown on the console; dropped if it is not a plain name.
    ``dhcp_delays``: seconds to sleep between DHCP attempts when the NIC has no
    address yet (one more attempt than delays). ``fail_delay``: seconds the
    failure message stays on screen before iPXE exits to the firmware.
    ``address_setting``: the iPXE setting that is set once the NIC has an
    address of the family the script was fetched over: ``ip`` (IPv4) or
    ``ip6`` (IPv6; on an IPv6-only segment ``${ip}`` stays empty, and another
    ``dhcp`` would wait out iPXE's DHCPv4 timeout again).
    ``network``: the host's static network; the installer gets it as ``ip=``,
    ``vlan=``, ``ifname=`` and ``nameserver=`` and asks no DHCP.
    """
    if address_setting not in ("ip", "ip6"):
        raise ValueError("address_setting must be ip or ip6, got %r" % (address_setting,))
    base = check_base_url(base_url)
    if not is_canonical_mac(mac):
        raise ValueError("%r is not a MAC address in the one spelling (lower-case, colon-separated)" % (mac,))
    args = kernel_arguments(api_url or base + "/api/v1", token, mac, extra_cmdline, network, host_name)
    delays = [int(d) for d in dhcp_delays]
    if any(d < 0 or d > 3600 for d in delays) or not 0 <= int(fail_delay) <= 3600:
        raise ValueError("delays must be between 0 and 3600 seconds")
    label = mac
    if isinstance(host_name, str) and _SAFE_NAME.match(host_name):
        label = "%s (%s)" % (host_name, mac)
    boot_url = "%s/boot/%s" % (base, mac)

    lines = [
        "#!ipxe",
        "echo nixie.metal: booting the NixOS installer for %s" % label,
        "isset ${%s} && goto nixie_net_ok || echo nixie.metal: no IP address yet, trying DHCP" % address_setting,
    ]
    for delay in delays:
        lines.append("dhcp && goto nixie_net_ok || sleep %d" % delay)
    lines += [
        "dhcp && goto nixie_net_ok || goto nixie_failed",
        ":nixie_net_ok",
        "kernel %s/kernel initrd=initrd %s || goto nixie_failed" % (boot_url, " ".join(args)),
        "initrd --name initrd %s/initrd || goto nixie_failed" % boot_url,
        "boot || goto nixie_failed",
        ":nixie_failed",
        "echo nixie.metal: could not boot the installer for %s: error ${errno}" % label,
        "echo nixie.metal: check that the nixie.metal server at %s is running, trying the next boot device in %d seconds"
        % (base, int(fail_delay)),
        "sleep %d" % int(fail_delay),
        "exit 1",
    ]
    return "\n".join(lines) + "\n"
