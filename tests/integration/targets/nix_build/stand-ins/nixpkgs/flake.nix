# TEST STAND-IN for nixpkgs (see ../README.md): lib, lib.nixosSystem and
# legacyPackages, only as far as this collection's flakes use them. No inputs.
{
  description = "nixie.metal test stand-in for nixpkgs (not nixpkgs)";

  outputs =
    { self }:
    let
      lib = import ./lib.nix;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      legacyPackages = lib.genAttrs systems (system: import ./pkgs.nix { inherit lib system; });
    in
    {
      lib = lib // {
        nixosSystem = import ./nixos/eval.nix {
          inherit lib;
          pkgsFor = system: legacyPackages.${system};
        };
      };
      inherit legacyPackages;
    };
}
