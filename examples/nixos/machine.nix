# What every installed machine has in common. Per machine: hosts/<name>.nix.
{
  lib,
  pkgs,
  modulesPath,
  sshKeys,
  ...
}:
let
  x86 = pkgs.stdenv.hostPlatform.isx86;
in
{
  imports = [ (modulesPath + "/installer/scan/not-detected.nix") ];

  # Disk, USB and virtio drivers in the initrd, so one system boots on common
  # servers and in QEMU alike.
  boot.initrd.availableKernelModules = [
    "ahci"
    "nvme"
    "sd_mod"
    "usb_storage"
    "usbhid"
    "xhci_pci"
    "virtio_pci"
    "virtio_blk"
    "virtio_scsi"
  ];

  # x86_64: GRUB for BIOS and UEFI (disko points it at the BIOS boot partition),
  # installed at the removable-media path so no firmware variable is needed.
  # aarch64: UEFI only, systemd-boot.
  boot.loader.grub = lib.mkIf x86 {
    enable = true;
    efiSupport = true;
    efiInstallAsRemovable = true;
  };
  boot.loader.systemd-boot.enable = !x86;

  networking.useDHCP = lib.mkDefault true;

  services.openssh.enable = true;
  services.openssh.settings.PasswordAuthentication = false;
  users.users.root.openssh.authorizedKeys.keys = sshKeys;

  system.stateVersion = "25.05";
}
