# A nixie.metal site: the network installer, and one NixOS system per machine
# of hosts.json. Copy this directory, put your SSH public key in authorized_keys, and adjust
# nixos/*.nix (and hosts/<name>.nix for one machine). docs/installer.md explains it.
#
#   nix build --no-link --json \
#     '.#nixosConfigurations.installer.config.system.build.kernel' \
#     '.#nixosConfigurations.installer.config.system.build.netbootRamdisk' \
#     '.#nixosConfigurations.installer.config.system.build.toplevel'
#
# is what nixie.metal.nix_build runs for `installer: ./examples#installer`.
{
  description = "nixie.metal example site: installer and machines";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
    disko = {
      url = "github:nix-community/disko";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    # The agent that tells the PXE server the installer is up. Every build and evaluation of a
    # run (the installer, the machines' systems, host_status, the disk guard) replaces this
    # input with the collection that runs the playbook (--override-input nixie-metal
    # path:<that collection>), so the installer's agent matches the server that serves it and
    # this URL is never fetched by a run, with or without a flake.lock. By hand, from a checkout
    # of the collection: --override-input nixie-metal "path:$PWD" (run at its root). docs/nix.md.
    nixie-metal = {
      url = "github:nixie-metal/nixie.metal";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      nixpkgs,
      disko,
      nixie-metal,
      ...
    }:
    let
      inherit (nixpkgs) lib;

      # Who may log in as root: on the installer (nixos-anywhere connects with these
      # keys) and on the installed machines. One public key per line in ./authorized_keys;
      # blank lines and lines starting with # are ignored.
      sshKeys = lib.filter (line: line != "" && !lib.hasPrefix "#" line) (
        lib.splitString "\n" (builtins.readFile ./authorized_keys)
      );

      # The machines, keyed by flake attribute, in upstream Nixie's format.
      hosts = builtins.fromJSON (builtins.readFile ./hosts.json);

      installer =
        system:
        lib.nixosSystem {
          specialArgs = { inherit sshKeys; };
          modules = [
            nixie-metal.nixosModules.nixie-agent
            ./nixos/installer.nix
            { nixpkgs.hostPlatform = system; }
          ];
        };

      machine =
        name: host:
        let
          own = ./hosts + "/${name}.nix";
        in
        lib.nixosSystem {
          specialArgs = { inherit sshKeys; };
          modules = [
            disko.nixosModules.disko
            ./nixos/disk.nix
            ./nixos/machine.nix
            {
              networking.hostName = name;
              nixpkgs.hostPlatform = host.arch or "x86_64-linux";
            }
          ] ++ lib.optional (builtins.pathExists own) own;
        };
    in
    {
      nixosConfigurations = lib.mapAttrs machine hosts // {
        # `installer` and `installer-aarch64` are reserved: no machine in hosts.json may use them.
        installer = installer "x86_64-linux";
        installer-aarch64 = installer "aarch64-linux";
      };
    };
}
