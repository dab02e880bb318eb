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
import ipaddress
import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error

from ansible.module_utils.urls import open_url

from ansible_collections.nixie.metal.plugins.module_utils._hosts import HostsFileError, load_hosts, normalize_hosts
from ansible_collections.nixie.metal.plugins.module_utils._netboot import ipxe, runtime, server, tftp


class ControlError(Exception):
    """A run cannot be planned, started or stopped; the message says why and what to do."""


# -- the serving address ---------------------------------------------------------

def choose_address(links, interface=None, address=None):
    """Pick ``(interface, IPv4 address)`` to serve on from ``ip -j -4 addr`` output.

    With neither given, the one up, non-loopback interface with an IPv4
    address is chosen; more than one is ambiguous and the error lists them.
    """
    candidates = []
    for link in links:
        flags = link.get("flags", [])
        for info in link.get("addr_info", []):
            if info.get("family") != "inet":
                continue
            candidates.append((link.get("ifname"), info.get("local"), "LOOPBACK" in flags, "UP" in flags))
    if address is not None:
        for name, local, dummy, dummy2 in candidates:
            if local == address and (interface is None or interface == name):
                return name, local
        raise ControlError("address %s is not configured on %s; give an address of this machine "
                           "(ip -4 addr shows them)" % (address, interface or "any interface"))
    if interface is not None:
        for name, local, dummy, dummy2 in candidates:
            if name == interface:
                return name, local
        known = sorted({name for name, dummy, dummy2, dummy3 in candidates})
        raise ControlError("interface %r has no IPv4 address (interfaces with one: %s)" % (interface, ", ".join(known) or "none"))
    usable = [(name, local) for name, local, loopback, up in candidates if up and not loopback]
    if len(usable) == 1:
        return usable[0]
    if not usable:
        raise ControlError("no interface that is up has an IPv4 address; set interface or address")
    raise ControlError("several interfaces could serve (%s); set interface (or address) to the one on the "
                       "machines' network segment" % ", ".join("%s %s" % pair for pair in usable))


def read_links():
    try:
        output = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, check=True, text=True).stdout
    except FileNotFoundError:
        raise ControlError("the ip command (iproute2) is needed to find the serving address; "
                           "install iproute2 or set both interface and address") from None
    except subprocess.CalledProcessError as exc:
        raise ControlError("ip -j -4 addr show failed: %s" % exc.stderr.strip()) from None
    return json.loads(output or "[]")


# -- planning ----------------------------------------------------------------------

def _hosts_from(hosts_file, hosts):
    if hosts_file is not None and hosts:
        raise ControlError("give hosts_file or hosts, not both")
    try:
        if hosts_file is not None:
            return load_hosts(hosts_file)
        if hosts:
            document = {}
            for index, entry in enumerate(hosts):
                fields = dict(entry)
                name = fields.pop("name", None)
                if not isinstance(name, str):
                    raise ControlError("hosts[%d]: every entry needs a name (its flake attribute)" % index)
                fields["mac_address"] = fields.pop("mac", fields.get("mac_address"))
                document[name] = {k: v for k, v in fields.items() if v is not None}
            return normalize_hosts(document, "hosts")
    except HostsFileError as exc:
        raise ControlError(str(exc)) from None
    raise ControlError("no hosts to serve: give hosts_file (a hosts.json) or hosts (a list of name and mac)")


def _artifacts(kernel, initrd, artifacts, hosts):
    merged = {}
    if kernel or initrd:
        if not (kernel and initrd):
            raise ControlError("kernel and initrd go together; give both")
        merged["x86_64-linux"] = {"kernel": kernel, "initrd": initrd}
    for arch, files in (artifacts or {}).items():
        merged[arch] = dict(files)
    for arch in sorted({host["arch"] for host in hosts}):
        files = merged.get(arch)
        if not files or not files.get("kernel") or not files.get("initrd"):
            names = ", ".join(host["name"] for host in hosts if host["arch"] == arch)
            raise ControlError("no kernel and initrd for %s (hosts %s); build the installer for that system "
                               "and pass it in artifacts" % (arch, names))
        for kind in ("kernel", "initrd"):
            if not os.path.isfile(files[kind]):
                raise ControlError("%s %s does not exist or is not a file" % (kind, files[kind]))
    return merged


def _ipxe_files(ipxe_dir):
    if not os.path.isdir(ipxe_dir):
        raise ControlError("iPXE directory %s does not exist; install Debian/Ubuntu's ipxe package or set ipxe_dir" % ipxe_dir)
    found = {name: os.path.join(ipxe_dir, name) for name in tftp.IPXE_FILES if os.path.isfile(os.path.join(ipxe_dir, name))}
    if not found:
        raise ControlError("no iPXE binary (%s) in %s" % (", ".join(tftp.IPXE_FILES), ipxe_dir))
    return found


def plan(params, links=None):
    """Check every input of a run and return ServerOptions; binds nothing."""
    hosts = _hosts_from(params.get("hosts_file"), params.get("hosts"))
    if params.get("address") is not None:
        try:
            ipaddress.IPv4Address(params["address"])
        except ValueError:
            raise ControlError("address %r is not an IPv4 address" % params["address"]) from None
    interface, server_ip = choose_address(links if links is not None else read_links(),
                                          params.get("interface"), params.get("address"))
    for name in ("max_duration", "idle_timeout"):
        if params.get(name) is not None and params[name] <= 0:
            raise ControlError("%s must be a positive number of seconds" % name)
    if params.get("linger") is not None and params["linger"] < 0:
        raise ControlError("linger must be zero or a positive number of seconds")
    artifacts = _artifacts(params.get("kernel"), params.get("initrd"), params.get("artifacts"), hosts)
    for where, cmdline in [("cmdline", params.get("cmdline"))] + [
            ("artifacts.%s.cmdline" % arch, files.get("cmdline")) for arch, files in sorted(artifacts.items())]:
        try:
            ipxe.split_cmdline(cmdline)
        except ValueError as exc:
            raise ControlError("%s: %s" % (where, exc)) from None
    return server.ServerOptions(
        hosts=[{"name": h["name"], "mac": h["mac"], "arch": h["arch"]} for h in hosts],
        server_ip=server_ip,
        interface=interface,
        artifacts=artifacts,
        ipxe_files=_ipxe_files(params.get("ipxe_dir") or tftp.DEFAULT_DIRECTORY),
        http_port=params.get("http_port") or 8080,
        extra_cmdline=params.get("cmdline"),
        max_duration=params.get("max_duration") or 3600,
        idle_timeout=params.get("idle_timeout") or 900,
        linger=params["linger"] if params.get("linger") is not None else 30,
        admin_token=secrets.token_urlsafe(24),
        run_id=secrets.token_hex(8),
    )


# -- running and stopping --------------------------------------------------------

def claim(run_dir):
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


def owner_of(pid):
    """The process a run belongs to, as ``{"pid", "start_time"}``; the server stops when it is gone."""
    if pid is None:
        return None
    start_time = runtime.process_start_time(pid)
    if start_time is None:
        raise ControlError("owner_pid %d is not a running process" % pid)
    return {"pid": pid, "start_time": start_time}


async def _stop_when_owner_ends(netboot_server, owner, interval=1.0):
    # An interrupted ansible-playbook cannot stop an async job (it is detached from the
    # play's process group), so the server watches the playbook itself.
    while runtime.is_alive(owner):
        await asyncio.sleep(interval)
    netboot_server.request_stop("the ansible-playbook run that started the server (pid %d) ended" % owner["pid"])


def run(options, run_dir, on_progress=None, owner=None):
    """Serve until a stop condition; the state file exists exactly while serving."""
    note = claim(run_dir)
    watchers = []

    def ready(netboot_server):
        runtime.write_state(run_dir, {"api_url": options.api_url, "admin_token": options.admin_token,
                                      "run_id": options.run_id, "started": time.time()})
        if owner is not None:
            watchers.append(asyncio.get_running_loop().create_task(_stop_when_owner_ends(netboot_server, owner)))

    try:
        result = asyncio.run(server.serve(options, on_progress=on_progress, ready=ready))
    except server.ServerError as exc:
        raise ControlError(str(exc)) from None
    finally:
        runtime.remove_state(run_dir, pid=os.getpid())
    if note:
        result["recovered"] = note
    return result


def stop(run_dir, timeout=30.0):
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
