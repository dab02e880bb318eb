# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flakes' structure, checked by the real nix, offline.

CI cannot fetch nixpkgs or disko, and their code is not copied here, so the flakes'
inputs are pointed with --override-input at hand-written stand-ins (stand-ins/,
labelled there): they check the shape of what the flakes hand them (modules, options,
packages), not NixOS. The collection itself is the real input nixie-metal.

What is checked: `nix flake check --no-build` of the root flake and of the example
site; every host of examples/hosts.json evaluated to its disko script and disk layout;
both installers evaluated to a system; the agent package built from nix/package.nix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTION = os.environ.get("NIXIE_COLLECTION") or os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
NIX = ["nix", "--extra-experimental-features", "nix-command flakes"]


@pytest.fixture(scope="module")
def nix_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("nix-flakes")
    (root / "conf").mkdir()
    env = dict(os.environ)
    env.update({
        "NIX_STORE_DIR": str(root / "nix" / "store"), "NIX_STATE_DIR": str(root / "nix" / "var" / "nix"),
        "NIX_LOG_DIR": str(root / "nix" / "var" / "log"), "NIX_CONF_DIR": str(root / "conf"),
        "XDG_CACHE_HOME": str(root / "cache"), "XDG_CONFIG_HOME": str(root / "config"),
        "NIX_CONFIG": "build-users-group =\nsubstituters =\nsandbox = false\n",
    })
    env.pop("NIX_REMOTE", None)
    return env


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Copies of the stand-ins, the collection's flake (flake.nix, nix/) and examples/ in a
    plain temporary directory: nix 2.8 takes no path: URL with characters beyond ASCII, which
    ansible-test puts into the collection's path on purpose."""
    root = tmp_path_factory.mktemp("flakes")
    shutil.copytree(os.path.join(HERE, "stand-ins"), root / "stand-ins")
    (root / "collection").mkdir()
    shutil.copy(os.path.join(COLLECTION, "flake.nix"), root / "collection" / "flake.nix")
    shutil.copytree(os.path.join(COLLECTION, "nix"), root / "collection" / "nix")
    shutil.copytree(os.path.join(COLLECTION, "examples"), root / "examples")
    return root


@pytest.fixture(scope="module")
def refs(tree):
    return {
        "nixpkgs": "path:%s/stand-ins/nixpkgs" % tree,
        "disko": "path:%s/stand-ins/disko" % tree,
        "collection": "path:%s/collection" % tree,
        "examples": "path:%s/examples" % tree,
    }


def nix(env, *args, check=True):
    proc = subprocess.run(NIX + ["--offline"] + list(args), env=env, capture_output=True, text=True, check=False, timeout=300)
    if check:
        assert proc.returncode == 0, "nix %s failed:\n%s" % (" ".join(args), proc.stderr)
    return proc


def example_overrides(refs):
    return ["--override-input", "nixpkgs", refs["nixpkgs"], "--override-input", "disko", refs["disko"],
            "--override-input", "nixie-metal", refs["collection"]]


def test_root_flake_check(nix_env, refs):
    nix(nix_env, "flake", "check", "--no-build", refs["collection"], "--override-input", "nixpkgs", refs["nixpkgs"])


def test_root_flake_check_refuses_a_path_as_module(nix_env, tree, refs, tmp_path):
    """The check fails on the export that nix 2.8 refuses (`nixosModules.x = ./file.nix`)."""
    def as_path(text):
        start = text.index("nixosModules.nixie-agent = {")
        end = text.index("};", start) + 2
        return text[:start] + "nixosModules.nixie-agent = ./nix/module.nix;" + text[end:]

    broken = tmp_path / "collection"
    shutil.copytree(tree / "collection", broken)
    (broken / "flake.nix").write_text(as_path((broken / "flake.nix").read_text(encoding="utf-8")), encoding="utf-8")
    proc = nix(nix_env, "flake", "check", "--no-build", "path:%s" % broken, "--override-input", "nixpkgs", refs["nixpkgs"],
               check=False)
    version = nix(nix_env, "--version").stdout
    if " 2.8." in version:
        assert proc.returncode != 0
        assert "module must be a function or an attribute set" in proc.stderr
    else:
        # Newer Nix accepts a path there; the export stays an attribute set for 2.8's sake.
        assert proc.returncode == 0, proc.stderr


def test_root_flake_outputs_and_agent_package(nix_env, refs):
    def evaluate(attr, apply):
        flake = "%s#%s" % (refs["collection"], attr)
        return json.loads(nix(nix_env, "eval", "--json", flake, "--apply", apply, "--override-input", "nixpkgs", refs["nixpkgs"]).stdout)

    outputs = {
        "modules": evaluate("nixosModules", "builtins.attrNames"),
        "imports": evaluate("nixosModules", "m: map toString m.nixie-agent.imports"),
        "packages": evaluate("packages", "builtins.mapAttrs (s: p: builtins.attrNames p)"),
        "formatter": evaluate("formatter", "builtins.attrNames"),
    }
    assert outputs["modules"] == ["default", "nixie-agent"]
    assert len(outputs["imports"]) == 1 and outputs["imports"][0].endswith("/nix/module.nix")
    assert outputs["packages"] == {s: ["default", "nixie-agent"] for s in ("aarch64-linux", "x86_64-linux")}
    assert outputs["formatter"] == ["aarch64-linux", "x86_64-linux"]

    system = nix(nix_env, "eval", "--impure", "--raw", "--expr", "builtins.currentSystem").stdout
    built = json.loads(nix(nix_env, "build", "--no-link", "--json", "%s#packages.%s.nixie-agent" % (refs["collection"], system),
                           "--override-input", "nixpkgs", refs["nixpkgs"]).stdout)
    out = built[0]["outputs"]["out"]
    with open(os.path.join(out, "libexec", "nixie-agent"), "rb") as handle:
        installed = handle.read()
    with open(os.path.join(COLLECTION, "nix", "agent", "nixie-agent"), "rb") as handle:
        assert installed == handle.read()
    with open(os.path.join(out, "bin", "nixie-agent"), encoding="utf-8") as handle:
        wrapper = handle.read()
    assert "exec %s/libexec/nixie-agent" % out in wrapper
    for tool in ("coreutils", "curl", "gawk", "gnugrep", "gnused", "iproute2"):
        assert "-%s/bin" % tool in wrapper


def test_example_flake_check(nix_env, refs):
    nix(nix_env, "flake", "check", "--no-build", refs["examples"], *example_overrides(refs))


HOSTS_APPLY = """cs: builtins.mapAttrs (name: c: {
  diskoScript = c.config.system.build.diskoScript.drvPath;
  devices = c.config.disko.devices;
  platform = c.config.nixpkgs.hostPlatform;
  hostName = c.config.networking.hostName;
  toplevel = c.config.system.build.toplevel.drvPath;
}) (removeAttrs cs [ "installer" "installer-aarch64" ])"""

INSTALLERS_APPLY = """cs: builtins.mapAttrs (name: c: {
  toplevel = c.config.system.build.toplevel.drvPath;
  netbootRamdisk = c.config.system.build.netbootRamdisk.drvPath;
  platform = c.config.nixpkgs.hostPlatform;
  agent = c.config.services.nixie-agent.enable;
  execStart = c.config.systemd.services.nixie-agent.serviceConfig.ExecStart;
}) { inherit (cs) installer installer-aarch64; }"""


def test_example_hosts_evaluate_to_disko_scripts(nix_env, refs):
    with open(os.path.join(COLLECTION, "examples", "hosts.json"), encoding="utf-8") as handle:
        hosts = json.load(handle)
    proc = nix(nix_env, "eval", "--json", refs["examples"] + "#nixosConfigurations", "--apply", HOSTS_APPLY,
               *example_overrides(refs))
    evaluated = json.loads(proc.stdout)
    assert sorted(evaluated) == sorted(hosts)
    for name, host in hosts.items():
        system = evaluated[name]
        arch = host.get("arch", "x86_64-linux")
        assert system["platform"] == arch and system["hostName"] == name
        assert system["diskoScript"].endswith("-disko-stand-in.drv")
        assert system["toplevel"].endswith("-nixos-system-%s-stand-in.drv" % name)
        disk = system["devices"]["disk"]["main"]
        assert disk["device"].startswith("/dev/")
        partitions = set(disk["content"]["partitions"])
        assert partitions == ({"bios", "ESP", "root"} if arch == "x86_64-linux" else {"ESP", "root"})


def test_example_installers_evaluate(nix_env, refs):
    proc = nix(nix_env, "eval", "--json", refs["examples"] + "#nixosConfigurations", "--apply", INSTALLERS_APPLY,
               *example_overrides(refs))
    installers = json.loads(proc.stdout)
    assert installers["installer"]["platform"] == "x86_64-linux"
    assert installers["installer-aarch64"]["platform"] == "aarch64-linux"
    for installer in installers.values():
        assert installer["agent"] is True
        assert installer["toplevel"].endswith("-nixos-system-nixie-installer-stand-in.drv")
        assert installer["netbootRamdisk"].endswith("-initrd-stand-in.drv")
        assert installer["execStart"].endswith("-nixie-agent-0.1.0/bin/nixie-agent")


# The stand-in's checks can fail: each flake below is wrong in one way a real NixOS
# evaluation would refuse too, and each must be refused with that reason.
BAD_SITE = """{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
  outputs = { nixpkgs, ... }: {
    nixosConfigurations.bad = nixpkgs.lib.nixosSystem {
      modules = [ { nixpkgs.hostPlatform = "x86_64-linux"; system.stateVersion = "25.05"; } (%s) ];
    };
  };
}
"""


@pytest.mark.parametrize("module, reason", [
    ("{ options = { }; services.x.enable = true; }", "has an unsupported attribute `services'"),
    ("[ ]", "must be a function or an attribute set, not a list"),
    ("{ networking.hostName = 42; }", "`networking.hostName' is not of type str"),
    ("{ networking.hostName = \"a\"; } // { imports = [ { networking.hostName = \"b\"; } ]; }",
     "conflicting definitions of `networking.hostName'"),
    ("{ nosuchArgument, ... }: { }", "asks for nosuchArgument"),
])
def test_stand_in_refuses_bad_modules(nix_env, refs, tmp_path, module, reason):
    site = tmp_path / "site"
    site.mkdir()
    (site / "flake.nix").write_text(BAD_SITE % module, encoding="utf-8")
    proc = nix(nix_env, "eval", "--raw", "path:%s#nixosConfigurations.bad.config.system.build.toplevel.drvPath" % site,
               "--override-input", "nixpkgs", refs["nixpkgs"], check=False)
    assert proc.returncode != 0
    assert reason in proc.stderr, proc.stderr


def test_stand_in_disko_refuses_a_disk_without_device_path(nix_env, tree, refs, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(tree / "examples", site)
    (site / "hosts" / "node1.nix").write_text('{ site.disk = "sda"; }\n', encoding="utf-8")
    proc = nix(nix_env, "eval", "--raw", "path:%s#nixosConfigurations.node1.config.system.build.diskoScript.drvPath" % site,
               *example_overrides(refs), check=False)
    assert proc.returncode != 0
    assert "`disko.devices' is not of type disko devices" in proc.stderr, proc.stderr
