# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Privilege separation of a run: a root parent that never touches the network, a child that serves.

The parent forks; the child binds every socket as root, gives up root
(:func:`.privileges.drop_privileges`: no capability, another account),
serves, and sends its result back over a pipe, one JSON message per line
(``ready`` with the hosts' tokens once bound, then ``result`` or
``error``). The parent passes SIGTERM and SIGINT on and reaps the child;
the child dies with the parent (a SIGKILL from Ansible's async timeout
leaves nothing behind). See docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import mimetypes
import os
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import privileges, server
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.options import ServerOptions

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def serve(options: ServerOptions, account: privileges.Account | None, bound: Callable[[Any, int], object],
          on_progress: Callable[[dict[str, Any]], object] | None = None,
          watch: Callable[[server.NetbootServer], Awaitable[object] | None] | None = None) -> Any:
    """Serve ``options`` from a child that gives up root once bound; return its result (:func:`.server.serve`'s).

    ``account``: the :class:`~.privileges.Account` the child switches to (None keeps
    this process's user). ``bound(tokens, child_pid)`` runs here, in the parent,
    once the child has bound every socket and given up root (the caller writes its
    state file then). ``on_progress(event)`` runs in the child for every registry
    event. ``watch(netboot_server)``: a coroutine (or None) run beside the server
    in the child. SIGTERM and SIGINT sent to this process are passed on to the
    child. Raises :class:`.server.ServerError` with the child's reason when it
    cannot serve.
    """
    parent = os.getpid()
    read_end, write_end = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # what is buffered now would otherwise be written twice
    # Blocked across fork: a signal then reaches the child only once this process passes it on.
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
    try:
        child = os.fork()
        if child == 0:
            os.close(read_end)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
            _serve_in_child(options, write_end, account, parent, on_progress, watch)
        os.close(write_end)
        previous = {signum: signal.signal(signum, lambda signum, frame: _pass_on(child, signum)) for signum in FORWARDED_SIGNALS}
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    outcome = {}
    try:
        with os.fdopen(read_end, "rb") as channel:
            for line in channel:
                message = json.loads(line)
                if "ready" in message:
                    bound(message["ready"]["tokens"], child)
                outcome.update(message)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        status = _reap(child, wait="result" in outcome or "error" in outcome)
    if "error" in outcome:
        raise server.ServerError(outcome["error"])
    if "result" not in outcome:
        raise server.ServerError("the serving process ended without a result (%s)" % _describe_exit(status))
    return outcome["result"]


def _pass_on(child: int, signum: int) -> None:
    try:
        os.kill(child, signum)
    except ProcessLookupError:
        pass


def _reap(child: int, wait: bool, grace: float = 2.0) -> int:
    """Wait for the child; without a result, one still running ``grace`` seconds after its pipe closed is killed."""
    deadline = time.monotonic() + grace
    while not wait and time.monotonic() < deadline:
        reaped, status = os.waitpid(child, os.WNOHANG)
        if reaped:
            return status
        time.sleep(0.05)
    if not wait:
        _pass_on(child, signal.SIGKILL)
    dummy, status = os.waitpid(child, 0)
    return status


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        return "killed by %s" % signal.Signals(os.WTERMSIG(status)).name
    return "exit code %d" % os.waitstatus_to_exitcode(status)


def _serve_in_child(options: ServerOptions, channel_fd: int, account: privileges.Account | None, parent: int,
                    on_progress: Callable[[dict[str, Any]], object] | None,
                    watch: Callable[[server.NetbootServer], Awaitable[object] | None] | None) -> NoReturn:
    """The serving child: bind, give up root, serve, send the result; never returns."""
    code = 1
    try:
        channel = os.fdopen(channel_fd, "w", encoding="utf-8")

        def send(message: dict[str, Any]) -> None:
            channel.write(json.dumps(message) + "\n")
            channel.flush()

        watchers = []
        late_imports = _LateImports()

        def ready(netboot_server: server.NetbootServer) -> None:
            _load_what_serving_imports_later()
            switching = privileges.switches_to(account)  # asked before the switch: it depends on being root
            try:
                privileges.drop_privileges(account)
                privileges.die_with_parent(parent, signal.SIGKILL)
            except OSError as exc:
                raise server.ServerError("cannot give up root after binding: %s" % exc) from None
            holding = privileges.threads_still_privileged(account if switching else None)
            if holding:
                raise server.ServerError("threads %s of the server still hold root's privileges after binding; "
                                         "this is a bug of nixie.metal, please report it" % holding)
            if switching:
                sys.meta_path.insert(0, late_imports)
            registry = netboot_server.registry
            send({"ready": {"tokens": {mac: registry.token_for(mac) for mac in registry.macs()}}})
            watching = watch(netboot_server) if watch is not None else None
            if watching is not None:
                watchers.append(asyncio.get_running_loop().create_task(watching))

        try:
            result = asyncio.run(server.serve(options, on_progress=on_progress, ready=ready))
            if late_imports.names:
                result["late_imports"] = sorted(set(late_imports.names))
            send({"result": result})
        except server.ServerError as exc:
            send({"error": str(exc)})
        except BaseException:
            send({"error": "the server failed: %s" % traceback.format_exc()})
        channel.close()
        code = 0
    finally:
        os._exit(code)  # never back into the caller's stack: this is a copy of the module's process


# Modules that serving imports on first use (found by recording every import after the switch while
# every path of the server ran: DHCP, TFTP, HTTP files with Range and HEAD, the API; see docs/reliability.md).
IMPORTED_ON_FIRST_USE = ("concurrent.futures.thread",)


class _LateImports:
    """Names of the modules imported after the switch (a finder that finds nothing, first in ``sys.meta_path``).

    Each is a module missing from IMPORTED_ON_FIRST_USE: it worked only because
    the account could read it; the module warns about it (tests fail on it).
    """

    def __init__(self) -> None:
        self.names = []

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:  # pylint: disable=unused-argument
        self.names.append(fullname)


def _load_what_serving_imports_later() -> None:
    """Import now, as root, what serving imports on first use: the account switched to may not read it later.

    Python reads a module's file when it is first imported, and root's files may be
    root's only: the module's own code runs from Ansible's root-only temporary
    directory, and Python itself may live in root's home (pyenv).
    """
    for name in IMPORTED_ON_FIRST_USE:
        importlib.import_module(name)
    mimetypes.init()
