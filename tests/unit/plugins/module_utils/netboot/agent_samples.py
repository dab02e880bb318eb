# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an agent sends, shared by the tests of the report's judgement, the registry and both HTTP readers.

``report`` is a phone-home body as a dict (for the decision and the registry); ``phone_home`` is
the same request as bytes on the wire, as curl in the installer sends it (for the readers).
"""

from __future__ import annotations

import json

MAC1 = "52:54:00:12:34:01"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAwq+EfnD2DZmIrGP9ja8hP2GBrvXDwB95xkcbYRkgxX"
REPORT = json.dumps({"mac": MAC1, "addresses": [{"ifname": "eth0", "mac": MAC1, "address": "127.0.0.1", "prefix": 8}],
                     "ssh_host_keys": [], "hostname": "nixos", "uptime": 1.0}).encode()


def report(mac=MAC1, **extra):
    body = {
        "mac": mac,
        "addresses": [{"ifname": "eth0", "mac": mac, "address": "192.0.2.10", "prefix": 24}],
        "ssh_host_keys": [KEY + " root@nixos"],
        "hostname": "nixos",
        "uptime": 12.5,
    }
    body.update(extra)
    return body


def phone_home(token, body=REPORT, extra=""):
    return ("POST /api/v1/phone-home HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nUser-Agent: curl/8.7.1\r\nAccept: */*\r\n"
            "Authorization: Bearer %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n"
            % (token, extra, len(body))).encode() + body
