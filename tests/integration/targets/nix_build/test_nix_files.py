# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's Nix files, offline: every one parses, and the nixie-agent NixOS
module evaluates against a stand-in of nixpkgs' lib and pkgs.

What the stand-in checks: nix/module.nix and nix/package.nix are functions of the
arguments NixOS passes, use only the lib functions named below, and produce the systemd
unit described in docs/installer.md (ordering, restart policy, journal, ExecStart into
the package, PATH of the wrapper). What it cannot check without nixpkgs: that NixOS's
option types accept these values, that stdenvNoCC/makeWrapper build the package, and
that the example flake's systems evaluate (netboot-minimal, disko).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

COLLECTION = os.environ.get("NIXIE_COLLECTION") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
SKIP_DIRS = {".git", ".venv", "collections", "output", ".ansible", "node_modules", ".cache"}


@pytest.fixture(scope="module")
def nix_env(tmp_path_factory):
    """A private store and state for nix-instantiate, which otherwise creates /nix/store."""
    root = tmp_path_factory.mktemp("nix-files")
    env = dict(os.environ)
    env.update({
        "NIX_STORE_DIR": str(root / "store"), "NIX_STATE_DIR": str(root / "state"), "NIX_LOG_DIR": str(root / "log"),
        "NIX_CONF_DIR": str(root), "XDG_CACHE_HOME": str(root / "cache"), "XDG_CONFIG_HOME": str(root / "config"),
        "NIX_CONFIG": "build-users-group =\n",
    })
    return env


def nix_files():
    found = []
    for root, dirs, files in os.walk(COLLECTION):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        found += [os.path.relpath(os.path.join(root, f), COLLECTION) for f in files if f.endswith(".nix")]
    return sorted(found)


def test_the_expected_nix_files_exist():
    files = nix_files()
    for expected in ("flake.nix", "nix/module.nix", "nix/package.nix", "examples/flake.nix"):
        assert expected in files


@pytest.mark.parametrize("path", nix_files())
def test_parses(path, nix_env):
    proc = subprocess.run(["nix-instantiate", "--parse", os.path.join(COLLECTION, path)],
                          env=nix_env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


# A stand-in for the parts of nixpkgs' lib and pkgs that the module and the package use.
# Options and mkIf are returned as plain data so the test can look at them.
STAND_IN = r"""
let
  lib = {
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = name: { _type = "option"; default = false; description = "Whether to enable ${name}."; };
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    types = { package = "package"; str = "str"; attrsOf = t: "attrsOf ${t}"; };
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    makeBinPath = paths: builtins.concatStringsSep ":" (map (p: "${p}/bin") paths);
    getExe = p: "${p.outPath}/bin/${p.meta.mainProgram}";
    licenses.gpl3Plus = "GPL-3.0-or-later";
    platforms.linux = [ "x86_64-linux" "aarch64-linux" ];
  };
  tool = name: "/stand-in/${name}";
  pkgs = {
    callPackage = fn: overrides: let f = import fn; in f (builtins.intersectAttrs (builtins.functionArgs f) args // overrides);
  };
  args = {
    inherit lib;
    stdenvNoCC.mkDerivation = attrs: attrs // { outPath = "/stand-in/nixie-agent"; name = "${attrs.pname}-${attrs.version}"; };
    makeWrapper = tool "makeWrapper";
    coreutils = tool "coreutils"; curl = tool "curl"; gawk = tool "gawk";
    gnugrep = tool "gnugrep"; gnused = tool "gnused"; iproute2 = tool "iproute2";
  };
  module = import %(module)s;
  evaluated = enable: let
    opts = m.options.services.nixie-agent;
    m = module {
      inherit lib pkgs;
      config.services.nixie-agent = { inherit enable; package = opts.package.default; environment = { NIXIE_MAX_DELAY = "10"; }; };
    };
  in m;
  on = evaluated true;
  package = on.options.services.nixie-agent.package.default;
in {
  options = builtins.attrNames on.options.services.nixie-agent;
  enableDefault = on.options.services.nixie-agent.enable.default;
  condition = on.config.condition;
  offCondition = (evaluated false).config.condition;
  service = on.config.content.systemd.services.nixie-agent;
  network = {
    service = on.config.content.systemd.services.nixie-network;
    dhcpcdDeny = on.config.content.networking.dhcpcd.denyInterfaces;
    networkManagerUnmanaged = on.config.content.networking.networkmanager.unmanaged;
    networkd = on.config.content.systemd.network.networks."10-nixie-static";
  };
  package = {
    inherit (package) pname version installPhase;
    src = toString package.src;
    nativeBuildInputs = map toString package.nativeBuildInputs;
    mainProgram = package.meta.mainProgram;
  };
}
"""


@pytest.fixture(scope="module")
def agent_module(nix_env):
    expr = STAND_IN % {"module": os.path.join(COLLECTION, "nix", "module.nix")}
    proc = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                          env=nix_env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_module_options(agent_module):
    assert agent_module["options"] == ["enable", "environment", "package"]
    assert agent_module["enableDefault"] is False
    assert agent_module["condition"] is True and agent_module["offCondition"] is False


def test_module_service(agent_module):
    service = agent_module["service"]
    assert service["wantedBy"] == ["multi-user.target"]
    assert service["wants"] == ["network-online.target"]
    assert "network-online.target" in service["after"] and "sshd.service" in service["after"]
    assert service["environment"] == {"NIXIE_MAX_DELAY": "10"}
    config = service["serviceConfig"]
    assert config["ExecStart"] == "/stand-in/nixie-agent/bin/nixie-agent"
    assert config["Restart"] == "on-failure" and config["RestartSec"] == 5
    assert config["RestartPreventExitStatus"] == 2
    assert config["StandardOutput"] == "journal" and config["StandardError"] == "journal"
    assert config["RemainAfterExit"] is True
    assert service["startLimitIntervalSec"] == 0


def test_module_brings_the_static_network_up_before_any_dhcp_client(agent_module):
    network = agent_module["network"]
    service = network["service"]
    assert service["serviceConfig"]["ExecStart"] == "/stand-in/nixie-agent/bin/nixie-agent network"
    assert service["serviceConfig"]["Type"] == "oneshot" and service["serviceConfig"]["RemainAfterExit"] is True
    assert {"dhcpcd.service", "systemd-networkd.service", "NetworkManager.service", "network-pre.target"} <= set(service["before"])
    assert service["environment"] == {"NIXIE_MAX_DELAY": "10"}
    # the names the kernel command line's ifname=/vlan= give (decide/kernel_network.py): no DHCP client on them
    assert network["dhcpcdDeny"] == ["nixie*"]
    assert network["networkManagerUnmanaged"] == ["interface-name:nixie*"]
    assert network["networkd"] == {"matchConfig": {"Name": "nixie*"}, "linkConfig": {"Unmanaged": True}}


def test_package_wraps_the_unchanged_script(agent_module):
    package = agent_module["package"]
    assert package["pname"] == "nixie-agent" and package["mainProgram"] == "nixie-agent"
    assert package["src"].endswith("/nix/agent") or "-agent" in package["src"]
    assert "install -Dm755 nixie-agent $out/libexec/nixie-agent" in package["installPhase"]
    path = "/stand-in/coreutils/bin:/stand-in/curl/bin:/stand-in/gawk/bin:/stand-in/gnugrep/bin:/stand-in/gnused/bin:/stand-in/iproute2/bin"
    assert "makeWrapper $out/libexec/nixie-agent $out/bin/nixie-agent" in package["installPhase"]
    assert "--prefix PATH : " + path in package["installPhase"]
    assert package["nativeBuildInputs"] == ["/stand-in/makeWrapper"]


# The wrapper's PATH, as Debian packages (alternatives where Debian has a stand-in:
# mawk for gawk): the agent must run with only these commands.
WRAPPER_PACKAGES = (("coreutils",), ("curl",), ("gawk", "mawk"), ("grep",), ("sed",), ("iproute2",))


def test_agent_runs_with_only_the_wrapped_tools(tmp_path):
    """The script, run by bash as sh (what patchShebangs gives it on NixOS), with a PATH
    holding only the commands of the packages the wrapper names, reports a failed
    phone-home to a closed port rather than a missing command."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for alternatives in WRAPPER_PACKAGES:
        for package in alternatives:
            listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False)
            if listing.returncode == 0:
                break
        else:
            pytest.skip("none of the Debian packages %s is installed" % ", ".join(alternatives))
        for line in listing.stdout.splitlines():
            if "/bin/" in line and os.path.isfile(line) and os.access(line, os.X_OK):
                target = bin_dir / os.path.basename(line)
                if not target.exists():
                    target.symlink_to(os.path.realpath(line))
                if os.path.basename(line) == "mawk" and not (bin_dir / "awk").exists():
                    (bin_dir / "awk").symlink_to(os.path.realpath(line))
    (bin_dir / "sh").symlink_to("/bin/bash")
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("quiet nixie.api=http://127.0.0.1:9/api/v1 nixie.token=t0k nixie.mac=52:54:00:12:34:01\n", encoding="utf-8")
    env = {"PATH": str(bin_dir), "NIXIE_CMDLINE": str(cmdline), "NIXIE_MAX_TRIES": "1", "NIXIE_NET_WAIT": "0",
           "NIXIE_SSH_DIR": str(tmp_path), "NIXIE_HTTP_TIMEOUT": "3"}
    agent = os.path.join(COLLECTION, "nix", "agent", "nixie-agent")
    proc = subprocess.run([str(bin_dir / "sh"), agent], env=env, capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "giving up after 1 attempts" in proc.stderr
    assert "not found" not in proc.stderr, proc.stderr


# The example site's flake and NixOS modules, evaluated with stand-ins for nixpkgs,
# disko and this collection's flake: this checks how the flake wires hosts.json,
# the installers and the per-host files together, and what each module sets. It does
# not check the result against NixOS (option names, types, netboot-minimal).
EXAMPLE_STAND_IN = r"""
let
  examples = %(examples)s;
  flake = import (examples + "/flake.nix");
  lib = {
    mapAttrs = builtins.mapAttrs;
    optional = c: x: if c then [ x ] else [ ];
    optionalAttrs = c: x: if c then x else { };
    nixosSystem = args: args;
    mkForce = v: { _type = "override"; priority = 50; content = v; };
    mkOverride = priority: v: { _type = "override"; inherit priority; content = v; };
    mkDefault = v: { _type = "override"; priority = 1000; content = v; };
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkOption = attrs: attrs // { _type = "option"; };
    types.str = "str";
  };
  outputs = flake.outputs {
    self = outputs;
    nixpkgs = { inherit lib; };
    disko.nixosModules.disko = "disko-module";
    nixie-metal.nixosModules.nixie-agent = "nixie-agent-module";
  };
  describe = m:
    if builtins.isPath m then "file:" + baseNameOf (toString m)
    else if builtins.isString m then m
    else { platform = m.nixpkgs.hostPlatform; hostName = m.networking.hostName or null; };
  pkgsFor = isx86: { stdenv.hostPlatform = { inherit isx86; }; };
  call = file: args: import (examples + file) ({ inherit lib; modulesPath = "/modules"; sshKeys = [ "KEY" ]; } // args);
  disk = isx86: (call "/nixos/disk.nix" { pkgs = pkgsFor isx86; config.site.disk = "/dev/sdz"; }).config.disko.devices.disk.main;
  machine = isx86: call "/nixos/machine.nix" { pkgs = pkgsFor isx86; };
  installer = call "/nixos/installer.nix" { };
in {
  configurations = builtins.mapAttrs (name: c: map describe c.modules) outputs.nixosConfigurations;
  hostDisks = builtins.mapAttrs (name: _: (import (examples + "/hosts/${name}.nix")).site.disk)
    (builtins.fromJSON (builtins.readFile (examples + "/hosts.json")));
  sshKeysPassed = builtins.all (c: c.specialArgs ? sshKeys) (builtins.attrValues outputs.nixosConfigurations);
  x86Disk = { device = (disk true).device; partitions = builtins.attrNames (disk true).content.partitions; };
  armDisk = builtins.attrNames (disk false).content.partitions;
  x86Grub = (machine true).boot.loader.grub.condition;
  armSystemdBoot = (machine false).boot.loader.systemd-boot.enable;
  machineKeys = (machine true).users.users.root.openssh.authorizedKeys.keys;
  installer = {
    imports = installer.imports;
    agent = installer.services.nixie-agent.enable;
    keys = installer.users.users.root.openssh.authorizedKeys.keys;
    squashfs = installer.netboot.squashfsCompression;
    docs = installer.documentation.enable;
    extraDependencies = installer.system.extraDependencies;
    sshd = installer.systemd.services.sshd.wantedBy;
    kernelParams = installer.boot.kernelParams;
  };
}
"""


@pytest.fixture(scope="module")
def example(nix_env):
    expr = EXAMPLE_STAND_IN % {"examples": os.path.join(COLLECTION, "examples")}
    proc = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                          env=nix_env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_example_has_one_system_per_host_and_two_installers(example):
    with open(os.path.join(COLLECTION, "examples", "hosts.json"), encoding="utf-8") as handle:
        hosts = json.load(handle)
    configurations = example["configurations"]
    assert sorted(configurations) == sorted(list(hosts) + ["installer", "installer-aarch64"])
    for name, host in hosts.items():
        modules = configurations[name]
        assert modules[:3] == ["disko-module", "file:disk.nix", "file:machine.nix"]
        assert modules[3] == {"platform": host.get("arch", "x86_64-linux"), "hostName": name}
    assert all("file:%s.nix" % name in configurations[name] for name in hosts)
    assert configurations["installer"] == ["nixie-agent-module", "file:installer.nix", {"platform": "x86_64-linux", "hostName": None}]
    assert configurations["installer-aarch64"][2]["platform"] == "aarch64-linux"
    assert example["sshKeysPassed"] is True


def test_example_disk_and_boot_loader(example):
    assert example["x86Disk"] == {"device": "/dev/sdz", "partitions": ["ESP", "bios", "root"]}
    assert example["armDisk"] == ["ESP", "root"]
    assert example["x86Grub"] is True and example["armSystemdBoot"] is True
    assert example["machineKeys"] == ["KEY"]


def test_example_disks_are_named_by_id_and_never_guessed(example, nix_env):
    # The example's own machines name their lab disks by id (the QEMU serial is the name).
    assert example["hostDisks"] == {name: "/dev/disk/by-id/virtio-" + name for name in example["hostDisks"]}
    # A machine without site.disk stops at evaluation, naming itself and the file to write.
    expr = r"""
      let
        lib = { mkOption = attrs: attrs; types.str = "str"; optionalAttrs = c: x: if c then x else { }; };
        module = import %s/nixos/disk.nix {
          inherit lib;
          pkgs.stdenv.hostPlatform.isx86 = true;
          config = { networking.hostName = "web1"; site.disk = module.options.site.disk.default; };
        };
      in module.config.disko.devices.disk.main.device
    """ % os.path.join(COLLECTION, "examples")
    proc = subprocess.run(["nix-instantiate", "--eval", "--strict", "--expr", expr],
                          env=nix_env, capture_output=True, text=True, check=False)
    assert proc.returncode == 1, proc.stdout
    assert "nixos/disk.nix: machine web1 has no site.disk" in proc.stderr, proc.stderr
    assert "Set it in hosts/web1.nix, by id" in proc.stderr and "ls -l /dev/disk/by-id/" in proc.stderr


def test_example_installer_is_small_and_reachable(example):
    installer = example["installer"]
    assert installer["imports"] == ["/modules/installer/netboot/netboot-minimal.nix"]
    assert installer["agent"] is True and installer["keys"] == ["KEY"]
    assert installer["squashfs"].startswith("zstd")
    assert installer["docs"] == {"_type": "override", "priority": 50, "content": False}
    assert installer["extraDependencies"]["content"] == []
    assert installer["sshd"] == {"_type": "override", "priority": 40, "content": ["multi-user.target"]}
    assert "console=ttyS0,115200" in installer["kernelParams"]
