# TEST STAND-IN for disko (see ../README.md): nixosModules.disko declares disko.devices,
# checks the shape of each disk, and system.build.diskoScript writes them as JSON.
# Its nixpkgs input is what the site's flake makes it follow; it is never fetched.
{
  description = "nixie.metal test stand-in for disko (not disko)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs =
    { self, nixpkgs }:
    {
      nixosModules.disko = import ./module.nix;
    };
}
