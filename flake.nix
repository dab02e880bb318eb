# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# The Nix side of nixie.metal: the agent that network-booted installers run,
# as a package and as a NixOS module. The installer itself and the machines'
# systems live in the user's flake; see examples/flake.nix and docs/installer.md.
# nixie.metal.nix_build copies only this file and nix/ into the store when it puts the
# running collection's agent into an installer (--override-input nixie-metal): keep
# everything the outputs read in there.
{
  description = "nixie.metal: the installer agent (package and NixOS module)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      # imports = [ nixie-metal.nixosModules.nixie-agent ]; services.nixie-agent.enable = true;
      # An attribute set, not the path itself: `nix flake check` of Nix before 2.9 (Debian's
      # nix-bin 2.8) refuses a path here ("module must be a function or an attribute set").
      nixosModules.nixie-agent = {
        imports = [ ./nix/module.nix ];
      };
      nixosModules.default = self.nixosModules.nixie-agent;

      packages = forAllSystems (pkgs: rec {
        nixie-agent = pkgs.callPackage ./nix/package.nix { };
        default = nixie-agent;
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-rfc-style);
    };
}
