# One disk, GPT: a BIOS boot partition (x86_64 only), an EFI system partition,
# and ext4 for the rest. disko partitions and formats it when nixos-anywhere
# installs the machine: EVERYTHING ON THE DISK NAMED BY site.disk IS ERASED.
#
# ┌────────────────────────────────────────────────────────────────────────────┐
# │ site.disk has no default. Set it per machine in hosts/<name>.nix, by id:   │
# │   site.disk = "/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T000000X";  │
# │ Guessing is wrong and destructive. /dev/sda, /dev/nvme0n1 and /dev/vda     │
# │ are handed out in the order the kernel finds the disks, which changes with │
# │ firmware, kernel, a USB stick or a second disk: the wrong disk is wiped    │
# │ without a question. A /dev/disk/by-id/ name (model and serial number)      │
# │ always means the same disk.                                                │
# └────────────────────────────────────────────────────────────────────────────┘
#
# To find the id, on the machine booted into its installer (ssh root@<address>,
# the address the run prints when the installer phones home) or into any live
# Linux:
#   ls -l /dev/disk/by-id/ | grep -v -- -part
# lists every disk under each of its ids (ata-, nvme-, scsi-, wwn-, usb-,
# virtio- for a QEMU disk with a serial) with the /dev/sdX it points to today;
# `lsblk -o NAME,SIZE,MODEL,SERIAL` tells the disks apart by size and model.
{
  config,
  lib,
  pkgs,
  ...
}:
{
  options.site.disk = lib.mkOption {
    type = lib.types.str;
    # No fallback disk: a machine without site.disk stops at evaluation, before anything
    # is erased, with a message that says what to do.
    default = throw ''
      nixos/disk.nix: machine ${config.networking.hostName} has no site.disk, the disk that is erased
      and installed on. Set it in hosts/${config.networking.hostName}.nix, by id, for example
        { site.disk = "/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T000000X"; }
      and find the id with `ls -l /dev/disk/by-id/` on the machine (nixos/disk.nix explains).
    '';
    example = "/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T000000X";
    description = "The disk to install on, by /dev/disk/by-id/ name. Everything on it is erased.";
  };

  config.disko.devices.disk.main = {
    type = "disk";
    device = config.site.disk;
    content = {
      type = "gpt";
      partitions =
        lib.optionalAttrs pkgs.stdenv.hostPlatform.isx86 {
          bios = {
            size = "1M";
            type = "EF02";
            priority = 1;
          };
        }
        // {
          ESP = {
            size = "512M";
            type = "EF00";
            priority = 2;
            content = {
              type = "filesystem";
              format = "vfat";
              mountpoint = "/boot";
              mountOptions = [ "umask=0077" ];
            };
          };
          root = {
            size = "100%";
            content = {
              type = "filesystem";
              format = "ext4";
              mountpoint = "/";
            };
          };
        };
    };
  };
}
