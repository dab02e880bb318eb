#!/usr/bin/python
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: site
short_description: Make a new site directory from the collection's example
version_added: 0.1.0
description:
  - Makes the directory O(path) holding everything a run of the C(nixie.metal.provision) playbook needs. From the
    collection's example O(src) it copies C(hosts.json), C(hosts.nixie.yml), C(flake.nix), C(nixos/), C(hosts/),
    C(ansible.cfg), C(provision.yml) and C(collections/requirements.yml). It writes C(authorized_keys) from the
    user's own public keys (O(public_keys)).
  - The C(nixie.metal.site) playbook runs this module as the user, no root needed
    (C(ansible-playbook nixie.metal.site -e nixie_site=~/rack1)), and prints RV(next_steps).
  - O(path) must not exist yet, or be an empty directory. An existing site is never changed, so that no C(hosts.json),
    disk or key is overwritten. Missing parent directories are made.
  - Every input is read and checked before anything is written, and the site is made under a temporary name and then
    renamed into place, so a failure leaves nothing behind.
  - Without any public key the site is still made, with an C(authorized_keys) that says loudly that it has no key, and
    the module warns. Nobody can log in to the installer until a key is added, so no machine can be installed yet.
author:
  - nixie.metal contributors (@nixie-metal)
extends_documentation_fragment:
  - nixie.metal._attributes
attributes:
  check_mode:
    details:
      - Checks O(path) and reads the keys and the example like a normal run, and returns RV(files) it would make,
        without writing anything.
options:
  path:
    description:
      - The site directory to make, for example V(~/rack1). It must not exist, or be an empty directory.
    type: path
    required: true
  src:
    description:
      - The example site to copy, the C(examples/) directory of the installed collection. The C(nixie.metal.site)
        playbook passes it.
    type: path
    required: true
  public_keys:
    description:
      - Public key files (OpenSSH format, C(.pub)) whose keys go into C(authorized_keys).
      - By default every C(*.pub) file of the user's C(~/.ssh). A file that cannot be read or holds something else
        than public keys makes the module fail, naming the file; nothing is made then.
      - An empty list, or a C(~/.ssh) without any C(.pub) file, makes a site without a key (see above).
    type: list
    elements: path
seealso:
  - module: nixie.metal.nix_build
  - plugin: nixie.metal.hosts
    plugin_type: inventory
notes:
  - The example's C(hosts/<name>.nix) files name lab disks (V(/dev/disk/by-id/virtio-node1)). On real machines each
    must name the machine's own disk by id; the disk named there is erased. C(nixos/disk.nix) in the site says how to
    find the id.
"""

EXAMPLES = r"""
- name: Make the site ~/rack1 with the keys of ~/.ssh
  nixie.metal.site:
    path: ~/rack1
    src: "{{ playbook_dir }}/../examples"
  register: site

- name: Make a site for a team, with two people's keys
  nixie.metal.site:
    path: /srv/sites/rack2
    src: ~/.ansible/collections/ansible_collections/nixie/metal/examples
    public_keys:
      - keys/alice.pub
      - keys/bob.pub
"""

RETURN = r"""
directory:
  description: The site directory, absolute.
  returned: always
  type: str
  sample: /home/alice/rack1
files:
  description: The files of the site, relative to RV(directory) (in check mode, those it would have).
  returned: success
  type: list
  elements: str
  sample: [ansible.cfg, authorized_keys, collections/requirements.yml, flake.nix, hosts.json, hosts.nixie.yml,
           hosts/node1.nix, nixos/disk.nix, nixos/installer.nix, nixos/machine.nix, provision.yml]
key_files:
  description: The public key files whose keys went into C(authorized_keys); empty when it has no key.
  returned: success
  type: list
  elements: str
  sample: [/home/alice/.ssh/id_ed25519.pub]
keys:
  description: How many distinct keys C(authorized_keys) holds.
  returned: success
  type: int
  sample: 1
next_steps:
  description: What to edit next and how to check and run, one line each, for a person to read.
  returned: success
  type: list
  elements: str
  sample:
    - "The site is /home/alice/rack1. Edit, in this order:"
    - "1. hosts.json        your machines: name (the flake attribute) -> MAC address of the NIC that netboots."
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nixie.metal.plugins.module_utils import _site


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            src=dict(type="path", required=True),
            public_keys=dict(type="list", elements="path"),
        ),
        supports_check_mode=True,
    )
    path = os.path.abspath(module.params["path"])
    key_files = module.params["public_keys"]
    ssh_dir = _site.user_ssh_dir()
    if key_files is None:
        key_files = _site.default_key_files(ssh_dir)
        where = "no *.pub file in %s" % ssh_dir
    else:
        where = "public_keys is empty"
    try:
        _site.target_state(path)
        keys = _site.public_keys(key_files)
        files = _site.plan(module.params["src"], keys)
        if not module.check_mode:
            _site.write(path, files)
    except _site.SiteError as exc:
        module.fail_json(msg=str(exc), directory=path)
    if not keys:
        module.warn("%s/authorized_keys has no key (%s). Add yours before the first run (ssh-add -L, or "
                    "ssh-keygen -t ed25519), or nobody can log in to the installer." % (path, where))
    module.exit_json(
        changed=True,
        directory=path,
        files=[item.path for item in files],
        key_files=list(dict.fromkeys(key.source for key in keys)),
        keys=len(keys),
        next_steps=_site.next_steps(path, keys, _site.private_key_for(keys)),
    )


if __name__ == "__main__":
    main()
