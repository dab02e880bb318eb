# One disk, GPT: a BIOS boot partition (x86_64 only), an EFI system partition,
# and ext4 for the rest. disko partitions and formats it when nixos-anywhere
# installs the machine. Set `site.disk` per machine in hosts/<name>.nix.
{
  config,
  lib,
  pkgs,
  ...
}:
{
  options.site.disk = lib.mkOption {
    type = lib.types.str;
    default = "/dev/vda";
    example = "/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T000000X";
    description = "The disk to install on. Everything on it is erased.";
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
