# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: hosts
short_description: Machines from a Nixie hosts.json file
version_added: 0.1.0
description:
  - Reads a C(hosts.json) file in upstream Nixie's format, a JSON object keyed by flake
    attribute whose values hold at least C(mac_address), and makes one host per entry.
  - Every host joins the group named by O(group) and the groups listed in its C(groups) field.
  - Each host gets the variables V(nixie_flake_attr), V(nixie_mac) (lower-case, colon-separated),
    V(nixie_arch), V(nixie_description) when the entry has one, V(ansible_host) and V(nixie_ip) when the entry has an C(ip)
    (V(nixie_ip) stays the entry's address when V(ansible_host) is overridden; pxe_server's O(nixie.metal.pxe_server#module:dhcp=addresses)
    leases it),
    V(nixie_system) when the entry has a C(system) (a prebuilt system's store path),
    V(nixie_network) when the entry has a C(network) (its installer's static network, as a dictionary with C(address),
    C(interface) and, when given, C(gateway), C(nameservers) and C(vlan); pxe_server's O(nixie.metal.pxe_server#module:hosts[].network)),
    and the entry's C(vars) as they are.
  - From the entry's C(power) field (see M(nixie.metal.power)), V(nixie_power_driver) (V(wol) when there is none) and,
    for a BMC, V(nixie_power_address), V(nixie_power_user) and, when given, V(nixie_power_port),
    V(nixie_power_system), V(nixie_power_validate_certs) and V(nixie_power_boot_mode).
  - V(nixie_power_password) is not the password but a template that reads it when a task uses it, from the
    environment variable named by C(power.password_env) or the Ansible variable (for example an Ansible Vault
    encrypted one in C(group_vars)) named by C(power.password_var); unset, it fails naming the variable and the host.
    C(hosts.json) never holds a password, and C(ansible-inventory --list) shows only the template.
  - The configuration file must be YAML, end in C(.nixie.yml) or C(.nixie.yaml), and say
    O(plugin=nixie.metal.hosts). It works as an AWX or AAP inventory source sourced from a project.
  - A malformed C(hosts.json) fails with one message per problem, naming the file, the host and the field.
author:
  - nixie.metal contributors (@nixie-metal)
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
requirements:
  - jsonschema
options:
  plugin:
    description: The name of this plugin; marks the file as this plugin's configuration.
    type: str
    required: true
    choices: [nixie.metal.hosts]
  path:
    description:
      - The C(hosts.json) file to read.
      - A relative path is resolved against the directory of this configuration file, not the
        working directory, so the inventory works the same from a shell, AWX or Semaphore.
      - C(~) and environment variables are expanded.
    type: str
    default: hosts.json
  group:
    description: The group every host from the file joins.
    type: str
    default: nixie
"""

EXAMPLES = r"""
# hosts.nixie.yml, beside hosts.json
plugin: nixie.metal.hosts

---
# hosts.nixie.yml: another file, groups by architecture, cached for an hour
plugin: nixie.metal.hosts
path: ../site/hosts.json
keyed_groups:
  - key: nixie_arch
    prefix: arch
compose:
  ansible_user: "'root'"
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/nixie-inventory
cache_timeout: 3600
"""

import os

from ansible.errors import AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.template import trust_as_template

from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host, HostsFileError, load_hosts

CONFIG_SUFFIXES = (".nixie.yml", ".nixie.yaml")


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "nixie.metal.hosts"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(CONFIG_SUFFIXES)

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)
        hosts_path = self._hosts_path(path)
        hosts = self._cached_or_loaded_hosts(hosts_path, cache)
        self._populate(hosts)

    def _hosts_path(self, config_path):
        configured = os.path.expandvars(os.path.expanduser(self.get_option("path")))
        return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(config_path)), configured))

    def _cached_or_loaded_hosts(self, hosts_path, cache):
        """Hosts from the inventory cache when it is enabled, current and fresh; else from the file.

        The cache entry records the file's size and modification time, so an
        edited hosts.json is never shadowed by a stale cache.
        """
        use_cache = self.get_option("cache")
        cache_key = self.get_cache_key(hosts_path)
        stamp = _file_stamp(hosts_path)
        if use_cache and cache:
            try:
                cached = self._cache[cache_key]
            except KeyError:
                cached = None
            if cached and cached.get("stamp") == stamp:
                try:
                    return [Host.from_dict(entry) for entry in cached["hosts"]]
                except (KeyError, TypeError, ValueError):
                    pass  # written by another version of the collection: read the file again
        try:
            hosts = load_hosts(hosts_path)
        except HostsFileError as exc:
            raise AnsibleParserError(to_native(exc)) from None
        if use_cache:
            self._cache[cache_key] = {"stamp": stamp, "hosts": [host.to_dict() for host in hosts]}
        return hosts

    def _populate(self, hosts):
        group = self.inventory.add_group(self.get_option("group"))
        strict = self.get_option("strict")
        for host in hosts:
            name = host.name
            self.inventory.add_host(name, group=group)
            for extra_group in host.groups:
                self.inventory.add_child(self.inventory.add_group(extra_group), name)
            for key, value in host_variables(host).items():
                self.inventory.set_variable(name, key, value)
            hostvars = self.inventory.get_host(name).get_vars()
            self._set_composite_vars(self.get_option("compose"), hostvars, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), hostvars, name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, name, strict=strict)


def host_variables(host):
    """The Ansible variables of one :class:`Host`: the one place a record becomes ``nixie_*`` host vars."""
    variables = {
        "nixie_flake_attr": host.name,
        "nixie_mac": host.mac,
        "nixie_arch": host.arch,
    }
    if host.description is not None:
        variables["nixie_description"] = host.description
    if host.ip is not None:
        variables["ansible_host"] = host.ip
        variables["nixie_ip"] = host.ip
    if host.network is not None:
        variables["nixie_network"] = host.network.to_dict()
    if host.system is not None:
        variables["nixie_system"] = host.system
    variables.update(power_variables(host.name, host.power))
    variables.update(host.vars)
    return variables


def power_variables(name, power):
    """The nixie_power_* variables of a host's ``power`` entry.

    The password is never in hosts.json: ``nixie_power_password`` is a template
    that reads it, when a task uses it, from the environment variable or the
    Ansible variable the entry names, and fails naming both when it is not set.
    The names are checked by the schema (letters, digits and _), so the template
    holds nothing from the file but them; it is marked trusted so that Ansible
    renders it.
    """
    variables = {"nixie_power_driver": power["driver"]}
    for field in ("address", "port", "user", "system", "validate_certs", "boot_mode"):
        if field in power:
            variables["nixie_power_" + field] = power[field]
    if "password_env" in power:
        template = ("{{ lookup('ansible.builtin.env', '%s') or undef(hint='the environment variable %s, which hosts.json "
                    "names for the BMC password of %s (power.password_env), is not set or empty') }}" % (
                        power["password_env"], power["password_env"], name))
    elif "password_var" in power:
        template = ("{{ %s | default(undef(hint='the variable %s, which hosts.json names for the BMC password of %s "
                    "(power.password_var), is not defined; define it, for example in an Ansible Vault encrypted "
                    "group_vars file')) }}" % (power["password_var"], power["password_var"], name))
    else:
        return variables
    variables["nixie_power_password"] = trust_as_template(template)
    return variables


def _file_stamp(path):
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]
