# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Does a machine need installing? The logic behind the host_status module.

One run:

1. Address. O(address) if given; else the kernel's neighbour table (``ip -j neigh``):
   an IPv4 entry for the MAC that the kernel has just confirmed (REACHABLE, PERMANENT) is
   used as is; otherwise an ARP sweep (scapy, imported only then) of the directly connected
   IPv4 subnets, or of the given interface/subnet, asks every address who has it. A confirmed
   IPv6 neighbour is used when no IPv4 address answers; a stale entry only when no sweep is
   possible (no scapy, no root), with a warning.
2. One SSH connection (the OpenSSH client, BatchMode) runs one command that prints
   ``/etc/os-release`` and the target of ``/run/current-system``. It is a new connection with
   the collection's pinned options (``_ssh``), whatever the operator's ssh configuration shares.
3. Only when the machine runs NixOS is the expected system evaluated
   (``nix eval FLAKE#nixosConfigurations.ATTR.config.system.build.toplevel.outPath``, nothing
   is built, with the same input overrides as nix_build), unless given as a store path.
4. :func:`classify` turns that into one of :data:`STATES`.

Decisions and parsing are pure functions; processes and sockets are at the edges
(:func:`run`, :func:`read_neighbours`, :func:`read_addresses`, :func:`arp_sweep`,
:func:`ssh_probe`, :func:`evaluate_expected_system`), and :func:`host_status` takes them as
parameters so the whole run can be tested without a network. No Ansible imports.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils import _interfaces, _ssh
from ansible_collections.nixie.metal.plugins.module_utils._nix import (
    calls as nix_calls, commands as nix_commands, errors as nix_errors, overrides as nix_overrides, process as nix_process,
    version as nix_version)
from ansible_collections.nixie.metal.plugins.module_utils._hosts import normalize_mac
from ansible_collections.nixie.metal.plugins.module_utils._interfaces import addresses_of

STATES = ("absent", "unknown_os", "other_system", "installed")

DEFAULT_TIMEOUT = 10
DEFAULT_ARP_TIMEOUT = 2.0
DEFAULT_EVAL_TIMEOUT = 600
#: Largest subnet swept (addresses). Automatically chosen bigger subnets are skipped.
MAX_SWEEP = 4096
#: Neighbour states in which the kernel has the MAC/IP pair confirmed right now.
TRUSTED_NEIGHBOUR_STATES = frozenset(("REACHABLE", "PERMANENT", "NOARP"))
#: Neighbour states that mean "no such neighbour".
DEAD_NEIGHBOUR_STATES = frozenset(("FAILED", "INCOMPLETE", "NONE"))
#: The name known_hosts entries are written under (ssh -o HostKeyAlias), so the port and the
#: address do not matter to the lookup.
HOST_KEY_ALIAS = "nixie-host-status-target"

BEGIN = "nixie-host-status-begin"
END = "nixie-host-status-end"
#: Runs under the remote user's login shell (POSIX sh on the installer, bash on NixOS).
#: GNU and busybox ``readlink -f`` print a path even when it does not exist, hence the test.
REMOTE_COMMAND = (
    "echo %(begin)s; "
    "echo os-release:; "
    "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null; "
    "echo; echo current-system:; "
    "if [ -e /run/current-system ]; then readlink -f /run/current-system; else echo; fi; "
    "echo %(end)s"
) % {"begin": BEGIN, "end": END}

SSH_INSTALL_HINT = "install the OpenSSH client on the controller (Debian/Ubuntu: apt-get install openssh-client)"

_KEY_TYPE = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


class HostStatusError(Exception):
    """The check itself could not be made; the message says why and what to do."""

    def __init__(self, msg: str, **result: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.result = result


# --- pure: parsing ---------------------------------------------------------------------


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5) text -> dict. Handles comments, blank lines, single/double quotes, escapes."""
    values = {}
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip()
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            quote = value[0]
            value = value[1:-1]
            if quote == '"':
                value = re.sub(r'\\([\\"$`])', r"\1", value)
        values[key] = value
    return values


def parse_probe_output(stdout: str) -> tuple[dict[str, str], str | None] | None:
    """Output of :data:`REMOTE_COMMAND` -> (os_release dict, current_system or None).

    Returns None when the markers are missing (the command did not run as written:
    a forced command, a restricted shell, something that is not a POSIX system).
    """
    text = stdout or ""
    start = text.find(BEGIN + "\n")
    end = text.find(END, start + 1) if start >= 0 else -1
    if start < 0 or end < 0:
        return None
    body = text[start + len(BEGIN) + 1:end]
    head, sep, tail = body.partition("current-system:\n")
    if not sep or not head.startswith("os-release:\n"):
        return None
    os_release = parse_os_release(head[len("os-release:\n"):])
    current = tail.strip().splitlines()[0].strip() if tail.strip() else ""
    return os_release, normalize_store_path(current) or None


def normalize_store_path(path: str | None) -> str | None:
    """Strip whitespace and trailing slashes ('/nix/store/x-sys/' -> '/nix/store/x-sys')."""
    path = (path or "").strip()
    while len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


def parse_neighbours(text: str) -> list[dict[str, Any]]:
    """``ip -j neigh show`` -> [{ip, dev, mac, states}] (mac lower-case or None)."""
    try:
        entries = json.loads(text or "[]")
    except ValueError as exc:
        raise HostStatusError("cannot read the output of 'ip -j neigh show': %s" % exc) from None
    result = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or "dst" not in entry:
            continue
        states = entry.get("state") or []
        if isinstance(states, str):
            states = [states]
        lladdr = entry.get("lladdr")
        result.append({
            "ip": str(entry["dst"]),
            "dev": entry.get("dev"),
            "mac": normalize_mac(lladdr) if lladdr else None,
            "states": [str(s).upper() for s in states],
        })
    return result


def _address_order(ip: str) -> tuple | None:
    """IPv4 first, then global IPv6; link-local IPv6 is never used (it needs a scope)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if addr.version == 6 and (addr.is_link_local or addr.is_multicast):
        return None
    return (addr.version, addr)


def neighbour_candidates(neighbours: Iterable[Mapping[str, Any]], mac: str,
                         interface: str | None = None) -> tuple[list[str], list[str]]:
    """Addresses the neighbour table holds for ``mac``: (trusted, stale), IPv4 first."""
    trusted, stale = [], []
    for entry in neighbours:
        if entry["mac"] != mac or (interface and entry["dev"] != interface):
            continue
        if _address_order(entry["ip"]) is None:
            continue
        states = set(entry["states"])
        if states & DEAD_NEIGHBOUR_STATES:
            continue
        (trusted if states & TRUSTED_NEIGHBOUR_STATES else stale).append(entry["ip"])

    def order(ips: Iterable[str]) -> list[str]:
        return sorted(dict.fromkeys(ips), key=_address_order)

    return order(trusted), order(stale)


def serving_ipv4(links: list) -> list[tuple[str, ipaddress.IPv4Interface]]:
    """``ip -j addr`` output (parsed) -> [(ifname, IPv4Interface)] of up, non-loopback interfaces."""
    return [(found.interface, found.ip) for found in addresses_of(links) if found.version == 4 and found.serves]


def sweep_targets(addresses: Sequence[tuple[str, ipaddress.IPv4Interface]], interface: str | None = None,
                  subnet: str | None = None, warnings: list[str] | None = None) -> list[tuple[str, ipaddress.IPv4Network]]:
    """Where to sweep: [(ifname, IPv4Network)], from the controller's addresses.

    ``subnet`` given: that subnet, on ``interface`` or else on the interface whose address
    lies in it. ``interface`` alone: its IPv4 subnets. Neither: every directly connected
    IPv4 subnet of at most :data:`MAX_SWEEP` addresses (bigger ones are skipped with a warning).
    """
    warnings = warnings if warnings is not None else []
    if subnet:
        try:
            network = ipaddress.ip_network(subnet, strict=False)
        except ValueError as exc:
            raise HostStatusError("subnet %r is not an IP network such as 192.168.1.0/24: %s" % (subnet, exc)) from None
        if network.version != 4:
            raise HostStatusError("subnet %s: an ARP sweep needs an IPv4 subnet; for IPv6 give the address" % network)
        if network.num_addresses > MAX_SWEEP:
            raise HostStatusError(
                "subnet %s has %d addresses; sweeping more than %d is too slow. Give a smaller subnet or the "
                "machine's address" % (network, network.num_addresses, MAX_SWEEP))
        if interface:
            return [(interface, network)]
        for ifname, iface in addresses:
            if iface.ip in network or network.subnet_of(iface.network):
                return [(ifname, network)]
        raise HostStatusError(
            "no interface of this machine has an address in %s; set interface to the NIC on that segment" % network)
    chosen = [(ifname, iface.network) for ifname, iface in addresses if not interface or ifname == interface]
    if interface and not chosen:
        raise HostStatusError(
            "interface %s has no IPv4 address to sweep from; give it one, set subnet, or give the machine's "
            "address" % interface)
    result = []
    for ifname, network in chosen:
        if network.num_addresses > MAX_SWEEP:
            warnings.append("not sweeping %s on %s: more than %d addresses; set subnet or address"
                            % (network, ifname, MAX_SWEEP))
            continue
        if (ifname, network) not in result:
            result.append((ifname, network))
    if not result:
        raise HostStatusError(
            "no directly connected IPv4 subnet to sweep for the machine's MAC; set interface/subnet, "
            "or give the machine's address")
    return result


def known_hosts_lines(keys: Iterable[str], alias: str = HOST_KEY_ALIAS) -> list[str]:
    """known_hosts lines for "type base64 [comment]" keys, all under ``alias``."""
    lines = []
    for key in keys:
        fields = str(key).split()
        if len(fields) < 2 or not _KEY_TYPE.match(fields[0]) or not _BASE64.match(fields[1]):
            raise HostStatusError(
                "known_host_keys entry %r is not an SSH public key of the form 'TYPE BASE64' "
                "(for example 'ssh-ed25519 AAAAC3Nz...'), as in /etc/ssh/ssh_host_*_key.pub" % key)
        lines.append("%s %s %s" % (alias, fields[0], fields[1]))
    return lines


def ssh_command(ssh: str, ip: str, known_hosts_file: str, user: str = "root", port: int = 22, key: str | None = None,
                strict: bool = False, timeout: float = DEFAULT_TIMEOUT, remote: str = REMOTE_COMMAND,
                ssh_version: Sequence[int] | None = None) -> list[str]:
    """argv of the one SSH call; ``strict``: only the keys in known_hosts_file are accepted.

    ``ssh_version``: the client's (major, minor), for :func:`_ssh.pinned_options`. Without ``strict`` the
    login still gets those options: the first key it accepts must be the one the address shows, not a
    shared master connection's.
    """
    argv = [ssh, "-T", "-x", "-a"]
    argv += _ssh.option_args(_ssh.pinned_options(ssh_version) + _ssh.known_hosts_options(known_hosts_file, strict=strict))
    argv += [
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=%d" % max(1, int(timeout)),
        "-o", "ConnectionAttempts=1",
        "-o", "ServerAliveInterval=%d" % max(1, int(timeout)),
        "-o", "ServerAliveCountMax=2",
        "-o", "HostKeyAlias=%s" % HOST_KEY_ALIAS,
        "-o", "LogLevel=ERROR",
        "-p", str(port),
        "-l", user,
    ]
    if key:
        argv += ["-i", key, "-o", "IdentitiesOnly=yes"]
    return argv + ["--", ip, remote]


_ABSENT_PATTERNS = (
    ("closed", re.compile(r"connect to host .* port \d+: Connection refused")),
    ("unreachable", re.compile(r"connect to host .* port \d+: (Connection timed out|Operation timed out|No route to host|"
                               r"Network is unreachable|Host is unreachable|Host is down)")),
    ("unreachable", re.compile(r"Could not resolve hostname")),
)
_REACHABLE_PATTERNS = (
    ("auth", re.compile(r"Permission denied \(|Too many authentication failures|no matching host key type|"
                        r"Unable to negotiate")),
    ("host_key", re.compile(r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|"
                            r"No \S+ host key is known for")),
)


def classify_ssh_failure(stderr: str) -> str:
    """ssh's stderr after exit status 255 -> closed|unreachable|auth|host_key|other."""
    for kind, pattern in _ABSENT_PATTERNS + _REACHABLE_PATTERNS:
        if pattern.search(stderr or ""):
            return kind
    return "other"


def last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def classify(ip: str | None, probe: Mapping[str, Any] | None, expected_system: str | None = None) -> tuple[str, str]:
    """(state, reason) from what was found. Pure.

    ``probe``: None when no address was found, else a dict with ``outcome`` (``ok``,
    ``closed``, ``unreachable``, ``auth``, ``other``, ``timeout``, ``garbled``), ``stderr``,
    ``os_id`` and ``current_system``.
    """
    if not ip or probe is None:
        return "absent", "no address found for the MAC"
    outcome = probe.get("outcome")
    detail = last_line(probe.get("stderr"))
    if outcome == "closed":
        return "absent", "SSH port closed at %s (%s)" % (ip, detail or "connection refused")
    if outcome == "unreachable":
        return "absent", "%s is unreachable (%s)" % (ip, detail or "no answer")
    if outcome == "auth":
        return "unknown_os", "SSH at %s refused us (%s)" % (ip, detail)
    if outcome == "timeout":
        return "unknown_os", "%s accepted the SSH connection but the check did not finish in time" % ip
    if outcome == "garbled":
        return "unknown_os", "the command run over SSH at %s did not print what it should (a forced command or restricted shell?)" % ip
    if outcome != "ok":
        return "unknown_os", "SSH at %s failed: %s" % (ip, detail or "no message")
    os_id = probe.get("os_id")
    if os_id != "nixos":
        return "unknown_os", "%s runs %s, not NixOS" % (ip, "ID=%s" % os_id if os_id else "a system without /etc/os-release")
    current = probe.get("current_system")
    if not current:
        return "other_system", "%s runs NixOS but has no /run/current-system" % ip
    if expected_system is None:
        return "other_system", "%s runs NixOS (%s); no expected system to compare with" % (ip, current)
    if normalize_store_path(current) == normalize_store_path(expected_system):
        return "installed", "%s runs the expected system" % ip
    return "other_system", "%s runs %s, expected %s" % (ip, current, expected_system)


# --- processes and sockets (the edges) -------------------------------------------------


def run(argv: Sequence[str], timeout: float | None = None, env: Mapping[str, str] | None = None) -> tuple[int | None, str, str]:
    """(rc, stdout, stderr); rc None on timeout. Raises FileNotFoundError when argv[0] is missing."""
    try:
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, errors="replace",
                              timeout=timeout, stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode("utf-8", "replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return None, out, err
    return proc.returncode, proc.stdout, proc.stderr


def read_neighbours(interface: str | None = None, runner: Callable[..., tuple[int | None, str, str]] = run) -> list[dict[str, Any]]:
    """The kernel's neighbour table; [] when ``ip`` is missing or fails."""
    argv = ["ip", "-j", "neigh", "show"] + (["dev", interface] if interface else [])
    try:
        rc, out, dummy = runner(argv, timeout=10)
    except OSError:
        return []
    return parse_neighbours(out) if rc == 0 else []


def read_addresses() -> list[tuple[str, ipaddress.IPv4Interface]]:
    """The controller's IPv4 interfaces (the shared ``ip -j addr show`` reader)."""
    try:
        links = _interfaces.read_links()
    except _interfaces.InterfacesError as exc:
        raise HostStatusError("cannot find the subnets to sweep: %s; set subnet and interface, or give the machine's "
                              "address" % exc) from None
    return serving_ipv4(links)


def arp_sweep(targets: Iterable[tuple[str, ipaddress.IPv4Network]], mac: str, timeout: float = DEFAULT_ARP_TIMEOUT) -> list[str]:
    """Ask every address of each (ifname, network) who has it; return the IPv4 addresses ``mac`` answered from.

    scapy is imported here, not at module load: it costs 0.2-0.4 s and tens of MiB, and
    most runs (address given, or found in the neighbour table) do not need it.
    Needs CAP_NET_RAW (root). Stops listening as soon as ``mac`` answers.
    """
    try:
        # pylint: disable-next=import-outside-toplevel
        from scapy.layers.l2 import ARP, Ether
        # pylint: disable-next=import-outside-toplevel
        from scapy.sendrecv import srp
    except ImportError:
        raise HostStatusError(
            "the ARP sweep needs the Python library scapy on the controller (pip install scapy); "
            "or give the machine's address") from None

    def is_answer(packet: Any) -> bool:
        return ARP in packet and packet[ARP].op == 2 and str(packet[ARP].hwsrc).lower() == mac

    found = []
    for ifname, network in targets:
        request = Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=str(network))
        try:
            try:
                answered, dummy = srp(request, iface=ifname, timeout=timeout, verbose=0, stop_filter=is_answer)
            except TypeError:  # scapy without stop_filter for srp
                answered, dummy = srp(request, iface=ifname, timeout=timeout, verbose=0)
        except PermissionError:
            raise HostStatusError(
                "the ARP sweep needs root (raw sockets): run the task with become: true, or give the machine's "
                "address") from None
        except OSError as exc:
            raise HostStatusError("ARP sweep of %s on %s failed: %s" % (network, ifname, exc)) from None
        for dummy_sent, received in answered:
            if is_answer(received) and received[ARP].psrc not in found:
                found.append(received[ARP].psrc)
        if found:
            break
    return found


def find_ssh(executable: str | None = None) -> str:
    found = shutil.which(executable or "ssh")
    if not found:
        raise HostStatusError("%s not found: %s" % (executable or "ssh", SSH_INSTALL_HINT))
    return found


def ssh_probe(ssh: str, ip: str, user: str = "root", port: int = 22, key: str | None = None,
              known_host_keys: Sequence[str] | None = None, timeout: float = DEFAULT_TIMEOUT,
              runner: Callable[..., tuple[int | None, str, str]] = run, ssh_version: Sequence[int] | None = None) -> dict[str, Any]:
    """Connect once and read os-release and /run/current-system. Returns the probe dict for :func:`classify`.

    Raises HostStatusError when known_host_keys were given and the machine showed another key.
    """
    strict = bool(known_host_keys)
    lines = known_hosts_lines(known_host_keys) if strict else []
    with tempfile.TemporaryDirectory(prefix="nixie-host-status-") as tmp:
        known_hosts = os.path.join(tmp, "known_hosts")
        with open(known_hosts, "w", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in lines))
        try:
            argv = ssh_command(ssh, ip, known_hosts, user=user, port=port, key=key, strict=strict, timeout=timeout,
                               ssh_version=ssh_version)
        except ValueError as exc:
            raise HostStatusError("cannot check %s: %s; nothing was sent" % (ip, exc), ip=ip) from None
        try:
            rc, out, err = runner(argv, timeout=3 * max(1, int(timeout)) + 5)
        except FileNotFoundError:
            raise HostStatusError("%s not found: %s" % (ssh, SSH_INSTALL_HINT)) from None
    probe = {"outcome": "ok", "stderr": err, "rc": rc, "os_id": None, "current_system": None, "os_release": {}}
    if rc is None:
        probe["outcome"] = "timeout"
        return probe
    if rc == 255 and BEGIN not in out:
        kind = classify_ssh_failure(err)
        if kind == "host_key":
            raise HostStatusError(
                "the SSH host key of %s is none of known_host_keys, so the machine at that address is not the "
                "one expected (another machine took the address, it was reinstalled with new keys, or someone is "
                "in the middle); nothing was sent. ssh said: %s" % (ip, last_line(err)), ip=ip)
        probe["outcome"] = kind
        return probe
    parsed = parse_probe_output(out)
    if parsed is None:
        probe["outcome"] = "garbled"
        return probe
    os_release, current = parsed
    probe["os_release"] = os_release
    probe["os_id"] = os_release.get("ID") or None
    probe["current_system"] = current
    return probe


def evaluate_expected_system(flake: str, attribute: str, nix: str | None = None, timeout: float = DEFAULT_EVAL_TIMEOUT,
                             runner: nix_process.Runner = nix_process.run, cwd: str | None = None,
                             override_inputs: Mapping[Any, Any] | None = None, agent_flake: str | None = None,
                             warnings: list[str] | None = None) -> str | None:
    """The store path the flake builds for the host (``nix eval``, nothing is built).

    Evaluated with the run's input overrides (``_nix.overrides.run_overrides``), as nix_build builds it:
    the same path, and no fetch of an input the overrides replace.
    """
    try:
        nix_path = nix_version.find_nix(nix)
    except nix_errors.NixError as exc:
        raise HostStatusError("cannot evaluate %s#%s: %s" % (flake, attribute, exc.msg)) from None
    installable = nix_commands.configuration_installable(flake, attribute, "config.system.build.toplevel.outPath")
    try:
        result = nix_calls.evaluate(nix_path, installable, cwd=cwd, timeout=timeout, runner=runner,
                                    override_inputs=override_inputs, agent_flake=agent_flake)
    except nix_errors.NixTimeout as exc:
        raise HostStatusError(exc.msg, cmd=exc.cmd) from None
    except nix_errors.NixError as exc:
        raise HostStatusError("%s\nCheck nixosConfigurations.%s in the flake %s." % (exc.msg, attribute, flake),
                              cmd=exc.cmd) from None
    path = result["value"]
    if not isinstance(path, str) or not path.startswith("/"):
        raise HostStatusError("nix eval of %s gave %r, not a store path" % (installable, path), cmd=result["cmd"])
    if warnings is not None:
        warnings.extend("nix: %s" % warning for warning in result["warnings"])
    return normalize_store_path(path)


# --- one run ------------------------------------------------------------------------------


def discover_address(mac: str, interface: str | None = None, subnet: str | None = None, arp_timeout: float = DEFAULT_ARP_TIMEOUT,
                     warnings: list[str] | None = None, neighbours: Callable[..., list[dict[str, Any]]] = read_neighbours,
                     addresses: Callable[[], list[tuple[str, ipaddress.IPv4Interface]]] = read_addresses,
                     sweep: Callable[..., list[str]] = arp_sweep) -> tuple[str | None, str | None]:
    """(ip or None, source) with source one of neighbour, arp, stale_neighbour, None."""
    warnings = warnings if warnings is not None else []
    trusted, stale = neighbour_candidates(neighbours(interface), mac, interface)
    # IPv4 first: a confirmed IPv6 neighbour is used only when no IPv4 address answers.
    if trusted and ":" not in trusted[0]:
        return trusted[0], "neighbour"
    try:
        targets = sweep_targets(addresses(), interface=interface, subnet=subnet, warnings=warnings)
        found = sweep(targets, mac, arp_timeout)
    except HostStatusError as exc:
        if trusted:
            return trusted[0], "neighbour"
        if stale:
            warnings.append("%s; using %s from the neighbour table (not confirmed)" % (exc.msg, stale[0]))
            return stale[0], "stale_neighbour"
        raise
    if found:
        return found[0], "arp"
    if trusted:
        return trusted[0], "neighbour"
    return None, None


def host_status(params: Mapping[str, Any], warnings: list[str] | None = None, discover: Callable[..., tuple[str | None, str | None]] = discover_address,
                probe: Callable[..., dict[str, Any]] = ssh_probe, evaluate: Callable[..., str | None] = evaluate_expected_system,
                read_ssh_version: Callable[[str], str] = _ssh.read_version) -> dict[str, Any]:
    """The module's result for ``params`` (the module's options). Raises HostStatusError."""
    warnings = warnings if warnings is not None else []
    mac = normalize_mac(params["mac"])
    if not mac:
        raise HostStatusError("mac %r is not a MAC address such as 52:54:00:12:34:01" % (params["mac"],))
    expected = params.get("expected_system")
    if expected is not None:
        expected = normalize_store_path(expected)
        if not expected.startswith("/"):
            raise HostStatusError("expected_system %r is not an absolute store path such as "
                                  "/nix/store/<hash>-nixos-system-<name>" % params["expected_system"])
    timeout = params.get("timeout") or DEFAULT_TIMEOUT
    ssh = find_ssh(params.get("ssh_executable"))
    key = params.get("ssh_key")
    if key and not os.path.isfile(key):
        raise HostStatusError("ssh_key %s does not exist" % key)
    known = [k for k in (params.get("known_host_keys") or []) if k and str(k).strip()]
    if known:
        known_hosts_lines(known)  # fail early on a malformed key
    try:
        nix_overrides.check_override_inputs(params.get("override_inputs"))  # early too, whether or not the flake is evaluated
    except nix_errors.NixError as exc:
        raise HostStatusError(exc.msg) from None

    result = {"mac": mac, "ip": None, "address_source": None, "state": None, "os_id": None,
              "current_system": None, "expected_system": expected, "reason": None}
    if params.get("address"):
        ip, source = params["address"], "address"
    else:
        ip, source = discover(mac, interface=params.get("interface"), subnet=params.get("subnet"),
                              arp_timeout=params.get("arp_timeout") or DEFAULT_ARP_TIMEOUT, warnings=warnings)
    result.update(ip=ip, address_source=source)
    found = None
    if ip:
        version_text = read_ssh_version(ssh)
        ssh_version = _ssh.parse_ssh_version(version_text)
        if ssh_version is None:
            warnings.append(_ssh.version_warning(ssh, version_text, ssh_version))
        try:
            found = probe(ssh, ip, user=params.get("ssh_user") or "root", port=params.get("ssh_port") or 22,
                          key=key, known_host_keys=known, timeout=timeout, ssh_version=ssh_version)
        except HostStatusError as exc:
            exc.result = dict(result, **exc.result)
            raise
        result.update(os_id=found.get("os_id"), current_system=found.get("current_system"))
        if found.get("os_id") == "nixos" and expected is None and params.get("flake"):
            try:
                expected = evaluate(params["flake"], params["attribute"], nix=params.get("nix_executable"),
                                    timeout=params.get("eval_timeout") or DEFAULT_EVAL_TIMEOUT,
                                    override_inputs=params.get("override_inputs"), agent_flake=params.get("agent_flake"),
                                    warnings=warnings)
            except HostStatusError as exc:
                exc.result = dict(result, **exc.result)
                raise
            result["expected_system"] = expected
    state, reason = classify(ip, found, expected)
    if not ip:
        reason = "no address found for %s: not in the neighbour table and no answer to the ARP sweep" % mac
    result.update(state=state, reason=reason)
    return result
