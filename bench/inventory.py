# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventory of N hosts: nixie.metal.hosts against ansible-core's own yaml plugin.

Both sources describe the same hosts with the same variables and groups. The
yaml plugin is the anchor: it is what an inventory of this size would use
without this collection. Each round parses both, in alternating order, in
fresh InventoryManager objects; the figure is the median over rounds, and the
ratio is ours / anchor (lower is better; the bar is 1.5).

    ANSIBLE_COLLECTIONS_PATH=<dir holding ansible_collections> python bench/inventory.py [--hosts 5000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

BAR = 1.5


def make_hosts(count):
    """hosts.json content for ``count`` hosts, with the optional fields real sites use."""
    hosts = {}
    for index in range(count):
        mac = "52:54:%02x:%02x:%02x:%02x" % (index >> 24 & 255, index >> 16 & 255, index >> 8 & 255, index & 255)
        hosts["node%05d" % index] = {
            "mac_address": mac.upper().replace(":", "-") if index % 2 else mac,
            "groups": ["rack%02d" % (index // 40)],
            "vars": {"ansible_user": "root", "disk": "/dev/nvme0n1"},
        }
    return hosts


def equivalent_yaml_inventory(hosts_path):
    """The same hosts as ansible-core's yaml plugin reads them: what our plugin produces, written as YAML."""
    from ansible_collections.nixie.metal.plugins.module_utils._hosts import load_hosts
    from ansible_collections.nixie.metal.plugins.inventory.hosts import host_variables

    groups = {"nixie": {"hosts": {}}}
    for host in load_hosts(hosts_path):
        groups["nixie"]["hosts"][host.name] = host_variables(host)
        for group in host.groups:
            groups.setdefault(group, {"hosts": {}})["hosts"][host.name] = None
    return {"all": {"children": groups}}


def parse_seconds(source):
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    started = time.perf_counter()
    inventory = InventoryManager(loader=DataLoader(), sources=[source], parse=False)
    inventory.parse_sources(cache=False)
    elapsed = time.perf_counter() - started
    return elapsed, len(inventory.hosts)


def command_seconds(source):
    started = time.perf_counter()
    subprocess.run(["ansible-inventory", "-i", source, "--list", "--output", os.devnull], check=True,
                   stdout=subprocess.DEVNULL, env=dict(os.environ, ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="true"))
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--commands", type=int, default=3, help="whole ansible-inventory runs per source")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()

    from ansible.plugins.loader import init_plugin_loader
    init_plugin_loader()

    with tempfile.TemporaryDirectory() as work:
        hosts_path = os.path.join(work, "hosts.json")
        with open(hosts_path, "w", encoding="utf-8") as handle:
            json.dump(make_hosts(args.hosts), handle)
        ours = os.path.join(work, "hosts.nixie.yml")
        with open(ours, "w", encoding="utf-8") as handle:
            handle.write("plugin: nixie.metal.hosts\n")
        anchor = os.path.join(work, "anchor.yml")
        with open(anchor, "w", encoding="utf-8") as handle:
            yaml.safe_dump(equivalent_yaml_inventory(hosts_path), handle, sort_keys=False)

        timings = {"nixie.metal.hosts": [], "ansible.builtin.yaml": []}
        for round_number in range(args.rounds):
            order = [("nixie.metal.hosts", ours), ("ansible.builtin.yaml", anchor)]
            for name, source in order if round_number % 2 == 0 else reversed(order):
                elapsed, count = parse_seconds(source)
                if count != args.hosts:
                    raise SystemExit("%s parsed %d hosts, expected %d" % (name, count, args.hosts))
                timings[name].append(elapsed)
        commands = {name: [command_seconds(source) for dummy in range(args.commands)]
                    for name, source in (("nixie.metal.hosts", ours), ("ansible.builtin.yaml", anchor))}

    parse_median = {name: statistics.median(values) for name, values in timings.items()}
    command_median = {name: statistics.median(values) for name, values in commands.items()}
    ratio = parse_median["nixie.metal.hosts"] / parse_median["ansible.builtin.yaml"]
    command_ratio = command_median["nixie.metal.hosts"] / command_median["ansible.builtin.yaml"]
    print("inventory of %d hosts, median of %d rounds (parse) and %d runs (ansible-inventory --list)"
          % (args.hosts, args.rounds, args.commands))
    print("%-22s %12s %16s" % ("source", "parse s", "whole command s"))
    for name in timings:
        print("%-22s %12.3f %16.3f" % (name, parse_median[name], command_median[name]))
    print("ratio ours/yaml: parse %.2fx, whole command %.2fx (bar: parse <= %.1fx)" % (ratio, command_ratio, BAR))
    if args.json:
        _common.save_json(args.json, {"hosts": args.hosts, "parse_seconds": timings, "command_seconds": commands,
                                      "parse_ratio": ratio, "command_ratio": command_ratio, "bar": BAR})
    return 0 if ratio <= BAR else 1


if __name__ == "__main__":
    sys.exit(main())
