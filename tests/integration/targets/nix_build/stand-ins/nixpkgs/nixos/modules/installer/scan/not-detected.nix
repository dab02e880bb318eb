# TEST STAND-IN for NixOS's installer/scan/not-detected.nix (see ../../../../../README.md),
# which only turns on redistributable firmware.
{ ... }:
{
  hardware.enableRedistributableFirmware = true;
}
