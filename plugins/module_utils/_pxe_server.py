# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the pxe_server module does, without Ansible: plan a run, run it, stop one.

``plan`` checks every input and returns ServerOptions without binding anything
(check mode stops there). ``run`` refuses to start beside a live server,
recovers from a stale state file, serves until a stop condition and always
removes its state file. ``stop`` ends the server a state file names.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import secrets
import signal
import time
import urllib.error
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

from ansible.module_utils.urls import open_url

from ansible_collections.nixie.metal.plugins.module_utils import _interfaces, _pxe_dhcp
from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host, HostsFileError, hosts_from_option, load_hosts
from ansible_collections.nixie.metal.plugins.module_utils._interfaces import addresses_of
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import ipxe, kernel_network
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import privileges, runtime, separation, server, tftp
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.options import IPXE_DIR, ServerOptions


class ControlError(Exception):
    """A run cannot be planned, started or stopped; the message says why and what to do."""


# -- the serving address ---------------------------------------------------------

def choose_address(links: list, interface: str | None = None, address: str | None = None) -> tuple[str, str]:
    """Pick ``(interface, IPv4 address)`` to serve on from ``ip -j -4 addr`` output.

    With neither given, the one up, non-loopback interface with an IPv4
    address is chosen; more than one is ambiguous and the error lists them.
    """
    candidates = [found for found in addresses_of(links) if found.version == 4]
    if address is not None:
        for found in candidates:
            if found.text == address and (interface is None or interface == found.interface):
                return found.interface, found.text
        raise ControlError("address %s is not configured on %s; give an address of this machine "
                           "(ip -4 addr shows them)" % (address, interface or "any interface"))
    if interface is not None:
        for found in candidates:
            if found.interface == interface:
                return found.interface, found.text
        known = sorted({found.interface for found in candidates})
        raise ControlError("interface %r has no IPv4 address (interfaces with one: %s)" % (interface, ", ".join(known) or "none"))
    usable = [(found.interface, found.text) for found in candidates if found.serves]
    if len(usable) == 1:
        return usable[0]
    if not usable:
        raise ControlError("no interface that is up has an IPv4 address; set interface or address")
    raise ControlError("several interfaces could serve (%s); set interface (or address) to the one on the "
                       "machines' network segment" % ", ".join("%s %s" % pair for pair in usable))


UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")


def choose_address6(links: list, interface: str | None = None,
                    address6: str | None = None) -> tuple[str, str, int] | None:
    """Pick ``(interface, IPv6 address, prefix length)`` from ``ip -j addr`` output, or None when there is none.

    ``address6`` must then be configured (on ``interface`` when given); without
    it, the first settled address (:attr:`~._interfaces.Address.settled_ipv6`) of
    ``interface`` (or of the only up, non-loopback interface that has one) is
    chosen: a configured one before one the router's advertisements made
    (SLAAC, "dynamic"), unique-local before global (a ULA stays the same when
    the site's provider prefix changes).
    """
    candidates = [found for found in addresses_of(links) if found.settled_ipv6]
    if address6 is not None:
        wanted = ipaddress.IPv6Address(address6)
        for found in candidates:
            if found.ip.ip == wanted and (interface is None or interface == found.interface):
                return found.interface, found.text, found.prefixlen
        raise ControlError("IPv6 address %s is not configured on %s (or is not settled, or is link-local); give a "
                           "global or unique-local address of this machine (ip -6 addr shows them)" % (address6, interface or "any interface"))
    if interface is not None:
        mine = [found for found in candidates if found.interface == interface]
    else:
        up = sorted({found.interface for found in candidates if found.serves})
        if len(up) > 1:
            raise ControlError("several interfaces have IPv6 addresses (%s); set interface" % ", ".join(up))
        mine = [found for found in candidates if up and found.interface == up[0]]
    if not mine:
        return None
    mine.sort(key=lambda found: ("dynamic" in found.flags, found.ip.ip not in UNIQUE_LOCAL))
    return mine[0].interface, mine[0].text, mine[0].prefixlen


def read_links() -> list:
    try:
        return _interfaces.read_links()
    except _interfaces.InterfacesError as exc:
        raise ControlError("%s; the serving address is found with it: install iproute2 or set both interface and "
                           "address" % exc) from None


# -- planning ----------------------------------------------------------------------

def _hosts_from(hosts_file: str | None, hosts: Sequence[Mapping[str, Any]] | None) -> list[Host]:
    if hosts_file is not None and hosts:
        raise ControlError("give hosts_file or hosts, not both")
    try:
        if hosts_file is not None:
            return load_hosts(hosts_file)
        if hosts:
            return hosts_from_option(hosts, "hosts")
    except HostsFileError as exc:
        raise ControlError(str(exc)) from None
    raise ControlError("no hosts to serve: give hosts_file (a hosts.json) or hosts (a list of name and mac)")


def _artifacts(kernel: str | None, initrd: str | None, artifacts: Mapping[str, Mapping[str, str]] | None,
               hosts: Sequence[Host]) -> dict[str, dict[str, str]]:
    merged = {}
    if kernel or initrd:
        if not (kernel and initrd):
            raise ControlError("kernel and initrd go together; give both")
        merged["x86_64-linux"] = {"kernel": kernel, "initrd": initrd}
    for arch, files in (artifacts or {}).items():
        merged[arch] = dict(files)
    for arch in sorted({host.arch for host in hosts}):
        files = merged.get(arch)
        if not files or not files.get("kernel") or not files.get("initrd"):
            names = ", ".join(host.name for host in hosts if host.arch == arch)
            raise ControlError("no kernel and initrd for %s (hosts %s); build the installer for that system "
                               "and pass it in artifacts" % (arch, names))
        for kind in ("kernel", "initrd"):
            if not os.path.isfile(files[kind]):
                raise ControlError("%s %s does not exist or is not a file" % (kind, files[kind]))
    return merged


def _ipxe_files(ipxe_dir: str) -> dict[str, str]:
    if not os.path.isdir(ipxe_dir):
        raise ControlError("iPXE directory %s does not exist; install Debian/Ubuntu's ipxe package or set ipxe_dir" % ipxe_dir)
    found = {name: os.path.join(ipxe_dir, name) for name in tftp.IPXE_FILES if os.path.isfile(os.path.join(ipxe_dir, name))}
    if not found:
        raise ControlError("no iPXE binary (%s) in %s" % (", ".join(tftp.IPXE_FILES), ipxe_dir))
    return found


def plan(params: Mapping[str, Any], links: list | None = None) -> ServerOptions:
    """Check every input of a run and return ServerOptions; binds nothing."""
    hosts = _hosts_from(params.get("hosts_file"), params.get("hosts"))
    if params.get("address") is not None:
        try:
            ipaddress.IPv4Address(params["address"])
        except ValueError:
            raise ControlError("address %r is not an IPv4 address" % params["address"]) from None
    links = links if links is not None else read_links()
    interface, server_ip, ipv6 = choose_addresses(links, params)
    refuse_static_networks_without_ipv4(hosts, interface, server_ip, params.get("hosts_file") or "hosts")
    try:
        addresses = _pxe_dhcp.plan_address_mode(params, hosts, server_ip, _prefixlen(links, interface, server_ip))
    except _pxe_dhcp.DhcpModeError as exc:
        raise ControlError(str(exc)) from None
    for name in ("max_duration", "idle_timeout"):
        if params.get(name) is not None and params[name] <= 0:
            raise ControlError("%s must be a positive number of seconds" % name)
    if params.get("linger") is not None and params["linger"] < 0:
        raise ControlError("linger must be zero or a positive number of seconds")
    if params.get("http_port") is not None and not 1 <= params["http_port"] <= 65535:
        raise ControlError("http_port must be a TCP port, 1 to 65535, got %r" % params["http_port"])
    artifacts = _artifacts(params.get("kernel"), params.get("initrd"), params.get("artifacts"), hosts)
    for where, cmdline in [("cmdline", params.get("cmdline"))] + [
            ("artifacts.%s.cmdline" % arch, files.get("cmdline")) for arch, files in sorted(artifacts.items())]:
        try:
            tokens = ipxe.split_cmdline(cmdline)
        except ValueError as exc:
            raise ControlError("%s: %s" % (where, exc)) from None
        refuse_network_arguments(where, tokens, [host for host in hosts if host.network is not None
                                                 and (where == "cmdline" or where == "artifacts.%s.cmdline" % host.arch)])
    ipxe_files = _ipxe_files(params.get("ipxe_dir") or IPXE_DIR)
    user = params.get("user") or DEFAULT_USER
    check_switch(_account(user), [files[kind] for arch, files in sorted(artifacts.items()) for kind in ("kernel", "initrd")
                                  if files.get(kind)] + [path for name, path in sorted(ipxe_files.items())])
    # What was not given keeps ServerOptions' default, the only home of the server's defaults.
    given = {name: params[name] for name in ("http_port", "max_duration", "idle_timeout", "linger", "dhcp_lease_time")
             if params.get(name) is not None}
    if params.get("dhcp") is not None:
        given["dhcp_mode"] = params["dhcp"]
    return ServerOptions(
        hosts=tuple(hosts),
        server_ip=server_ip,
        interface=interface,
        artifacts=artifacts,
        ipxe_files=ipxe_files,
        extra_cmdline=params.get("cmdline"),
        admin_token=secrets.token_urlsafe(24),
        run_id=secrets.token_hex(8),
        user=user,
        peer_check=params.get("peer_check") is not False,
        addresses=addresses,
        **given,
        **ipv6
    )


DEFAULT_USER = "nobody"


def refuse_static_networks_without_ipv4(hosts: Iterable[Host], interface: str, server_ip: str | None, source: str) -> None:
    """Refuse hosts.json ``network`` entries on an IPv6-only run.

    A run is IPv6-only when the serving interface has no IPv4 address (and ``address`` is not given): the
    server then has no IPv4 API URL for the agent to phone home to, and a static network is IPv4 only
    (the kernel's ``ip=`` has no IPv6 form), so the installer would come up where nothing answers it.
    """
    if server_ip is not None:
        return
    static = [host.name for host in hosts if host.network is not None]
    if static:
        raise ControlError("%s: host%s %s, field 'network': a static network is IPv4, but this run is IPv6-only (%s has "
                           "no IPv4 address, so the installer could not reach the server over it); give %s an IPv4 "
                           "address on the machines' segment, or remove network from %s" % (
                               source, "s" if len(static) > 1 else "", ", ".join(repr(n) for n in static), interface,
                               interface, "these hosts" if len(static) > 1 else "this host"))


def refuse_network_arguments(where: str, tokens: Sequence[str], hosts: Sequence[Host]) -> None:
    """Refuse the operator's ip=, ifname=, vlan= or nameserver= when a host it reaches has a static network."""
    clash = kernel_network.conflicting_arguments(tokens)
    if clash and hosts:
        raise ControlError("%s: %s would contradict the static network (hosts.json network) of %s; remove %s from %s"
                           % (where, " ".join(clash), ", ".join(repr(host.name) for host in hosts),
                              "it" if len(clash) == 1 else "them", where))


def check_switch(account: privileges.Account | None, paths: Iterable[str]) -> None:
    """Refuse, before anything binds, a switch to ``account`` that could not happen or could not serve ``paths``."""
    missing = privileges.missing_to_switch(account)
    if missing:
        raise ControlError("user: switching to %s after binding needs %s, which this process lacks (a container started "
                           "without them?); grant them, or set user to root to keep root's user ID (without capabilities)"
                           % (account.name, " and ".join(missing)))
    try:
        unreadable = privileges.unreadable_as(account, paths)
    except OSError as exc:
        raise ControlError("user: %s" % exc) from None
    if unreadable:
        raise ControlError("user: the server serves as %s once bound, and %s cannot read %s; put the files where every "
                           "user may read them (the Nix store is), or set user to root"
                           % (account.name, account.name, ", ".join("%s (%s)" % pair for pair in unreadable)))


def refuse_other_address_servers(interface: str) -> None:
    """Refuse to start the addresses mode where another DHCP server gives addresses (they would fight)."""
    try:
        others = _pxe_dhcp.other_address_servers(interface)
    except _pxe_dhcp.DhcpModeError as exc:
        raise ControlError(str(exc)) from None
    if others:
        raise ControlError("dhcp=addresses: another DHCP server gives addresses on %s (%s); two address servers on one "
                           "segment fight over every client. Use dhcp=proxy beside it, or stop it; set dhcp_probe to false "
                           "only if it is known to ignore the inventory's MACs" % (interface, "; ".join(others)))


def _prefixlen(links: list, interface: str, server_ip: str | None) -> int | None:
    """The prefix length of ``server_ip`` on ``interface`` (its subnet is the one served), None without IPv4."""
    for found in addresses_of(links):
        if found.interface == interface and found.text == server_ip:
            return found.prefixlen
    return None


def has_ipv4(links: list, interface: str | None = None) -> bool:
    """Whether ``interface`` (or, without it, any up non-loopback interface) has an IPv4 address."""
    return any(found.version == 4 and (found.interface == interface if interface is not None else found.serves)
               for found in addresses_of(links))


def choose_addresses(links: list, params: Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """``(interface, IPv4 address or None, IPv6 ServerOptions fields)`` for a run.

    IPv4 is served when the interface has an IPv4 address; IPv6 (DHCPv6 in
    ``params["dhcp6"]`` mode, default proxy) when it has a global or
    unique-local one, unless ``dhcp6`` is ``off``. An interface with only
    IPv6 makes an IPv6-only run.
    """
    mode = params.get("dhcp6") or "proxy"
    if mode not in ("proxy", "addresses", "off"):
        raise ControlError("dhcp6 must be proxy, addresses or off, got %r" % mode)
    address6 = params.get("address6")
    if address6 is not None:
        if mode == "off":
            raise ControlError("address6 is set but dhcp6 is off; drop one of them")
        try:
            if ipaddress.IPv6Address(address6).is_link_local:
                raise ControlError("address6 %s is link-local: machines need a global or unique-local address in "
                                   "their boot URLs" % address6)
        except ValueError:
            raise ControlError("address6 %r is not an IPv6 address" % address6) from None
    if mode == "off" or params.get("address") is not None or has_ipv4(links, params.get("interface")):
        interface, server_ip = choose_address(links, params.get("interface"), params.get("address"))
        found = None if mode == "off" else choose_address6(links, interface, address6)
    else:
        found = choose_address6(links, params.get("interface"), address6)
        if found is None:
            choose_address(links, params.get("interface"))  # raises: says there is no address at all
        interface, server_ip = found[0], None
    if found is None:
        if mode == "addresses":
            raise ControlError("dhcp6=addresses needs an IPv6 address on %s (the prefix it hands addresses from); "
                               "add one, e.g. ip -6 addr add fd00:1::1/64 dev %s" % (interface, interface))
        return interface, server_ip, {}
    ipv6 = {"server_ip6": found[1], "dhcp6_mode": mode}
    if mode == "addresses":
        ipv6["dhcp6_prefix"] = str(ipaddress.IPv6Network("%s/%s" % (found[1], found[2]), strict=False))
    return interface, server_ip, ipv6


def hosts_summary(hosts: Iterable[Host]) -> list[dict[str, str]]:
    """What the module returns of a planned run's hosts (check mode): name, MAC and arch of each."""
    return [{"name": host.name, "mac": host.mac, "arch": host.arch} for host in hosts]


# -- running and stopping --------------------------------------------------------

def claim(run_dir: str) -> str | None:
    """Refuse to start beside a live server; return a note when a stale state file was cleaned up."""
    record = runtime.read_state(run_dir)
    if record is None:
        return None
    if runtime.is_alive(record):
        raise ControlError("a nixie.metal PXE server is already running (pid %s, serving %s since %s); "
                           "stop it with nixie.metal.pxe_server state=stopped, or wait for it to finish"
                           % (record.get("pid"), record.get("api_url"), time.strftime("%H:%M:%S", time.localtime(record.get("started", 0)))))
    runtime.remove_state(run_dir)
    return "removed the state of an earlier server (pid %s) that ended without cleaning up" % record.get("pid")


def owner_of(pid: int) -> dict[str, int] | None:
    """The process a run belongs to, as ``{"pid", "start_time"}``; the server stops when it is gone."""
    if pid is None:
        return None
    start_time = runtime.process_start_time(pid)
    if start_time is None:
        raise ControlError("owner_pid %d is not a running process" % pid)
    return {"pid": pid, "start_time": start_time}


async def _stop_when_owner_ends(netboot_server: server.NetbootServer, owner: Mapping[str, Any], interval: float = 1.0) -> None:
    # An interrupted ansible-playbook cannot stop an async job (it is detached from the
    # play's process group), so the server watches the playbook itself.
    while runtime.is_alive(owner):
        await asyncio.sleep(interval)
    netboot_server.request_stop("the ansible-playbook run that started the server (pid %d) ended" % owner["pid"])


def tokens_to_keep(record: Mapping[str, Any] | None, hosts: Iterable[Host]) -> dict[str, str]:
    """The per-host tokens of a dead server's state ``record`` that this run's ``hosts`` can keep: ``{mac: token}``.

    An installer that server booted carries its token on its kernel command line and keeps
    phoning home with it; keeping the token lets it finish with the server that replaced it.
    """
    recorded = (record or {}).get("tokens")
    if not isinstance(recorded, dict):
        return {}
    macs = {host.mac for host in hosts}
    kept = {}
    for mac, token in recorded.items():
        if mac in macs and isinstance(token, str) and ipxe.is_token_value(token) and token not in kept.values():
            kept[mac] = token
    return kept


def run(options: ServerOptions, run_dir: str, on_progress: Callable[[dict[str, Any]], object] | None = None,
        owner: Mapping[str, Any] | None = None) -> Any:
    """Serve until a stop condition; the state file exists exactly while serving.

    Privilege separation (:mod:`.separation`): this process stays root and never
    touches the network; it keeps the state file (with its own PID: ``stop`` and a
    second run find it), while a child binds every socket, gives up root for the
    account ``options.user``, and serves. A run that finds the state of a server
    that died keeps that server's per-host tokens.
    """
    stale = runtime.read_state(run_dir)
    note = claim(run_dir)
    if note:
        kept = tokens_to_keep(stale, options.hosts)
        if kept:
            options = dataclasses.replace(options, tokens=kept)
            note += "; its %d host(s) keep their tokens, so installers it booted can still phone home" % len(kept)
    account = _account(options.user)

    def bound(tokens: Any, child_pid: int) -> None:
        runtime.write_state(run_dir, {"api_url": options.api_url, "admin_token": options.admin_token, "run_id": options.run_id,
                                      "started": time.time(), "server_pid": child_pid, "tokens": tokens})

    def watch(netboot_server: server.NetbootServer) -> Coroutine[Any, Any, None] | None:
        return _stop_when_owner_ends(netboot_server, owner) if owner is not None else None
    try:
        result = separation.serve(options, account, bound, on_progress=on_progress, watch=watch)
    except server.ServerError as exc:
        raise ControlError(str(exc)) from None
    finally:
        runtime.remove_state(run_dir, pid=os.getpid())
    if note:
        result["recovered"] = note
    return result


def _account(user: str | None) -> privileges.Account | None:
    """The account named ``user``, for the serving child; None (options not made by :func:`plan`) keeps this process's user."""
    if user is None:
        return None
    found = privileges.find_account(user)
    if found is None:
        raise ControlError("user: there is no account %r on this machine; create it (a system account with no "
                           "login shell, like nobody) or name another one" % user)
    return found


def stop(run_dir: str, timeout: float = 30.0) -> bool:
    """Stop the server the state file names; True if one was running."""
    record = runtime.read_state(run_dir)
    if record is None:
        return False
    if not runtime.is_alive(record):
        runtime.remove_state(run_dir)
        return False
    try:
        open_url(record["api_url"] + "/stop", data=b'{"reason": "state=stopped"}', method="POST", timeout=5,
                 headers={"Authorization": "Bearer " + record["admin_token"], "Content-Type": "application/json"}).close()
    except (urllib.error.URLError, OSError):
        # The API may be wedged; the PID is ours (start time checked), so signal it.
        os.kill(record["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while runtime.is_alive(record) and time.monotonic() < deadline:
        time.sleep(0.1)
    if runtime.is_alive(record):
        os.kill(record["pid"], signal.SIGKILL)
        runtime.remove_state(run_dir)
    return True
