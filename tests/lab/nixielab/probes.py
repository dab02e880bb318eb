"""What the tests check of a running netboot server from outside it: its ports, and waiting for a condition."""

from __future__ import annotations

import time

# The ports the netboot server binds with its default options.
SERVER_PORTS = frozenset({("udp", 67), ("udp", 4011), ("udp", 69), ("tcp", 8080)})


def bound_ports(lab, ports=SERVER_PORTS):
    """Which of ``ports`` (protocol, port) something listens on in the namespace ``lab.run`` runs in."""
    listing = lab.run(["ss", "-H", "-lnu", "-lnt"], check=False).stdout
    found = set()
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 5 and ":" in fields[4]:
            protocol = "udp" if fields[0].startswith("udp") or fields[0] == "UNCONN" else "tcp"
            found.add((protocol, int(fields[4].rsplit(":", 1)[1])))
    return found & ports


def wait_until(condition, message, timeout=20.0, interval=0.1):
    """``condition()``'s first true value within ``timeout`` seconds; AssertionError with ``message`` otherwise.

    ``message`` may be a callable, called at the time-out: what it shows (a console, a log) is then
    what happened during the wait, not what was there before it.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message() if callable(message) else message)
