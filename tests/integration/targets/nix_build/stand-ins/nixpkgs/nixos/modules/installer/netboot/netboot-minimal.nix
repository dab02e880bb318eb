# TEST STAND-IN for NixOS's installer/netboot/netboot-minimal.nix (see
# ../../../../../README.md): the squashfs option the example sets, and a netboot
# initrd that names the system it carries.
{ config, lib, ... }:
{
  options.netboot.squashfsCompression = lib.mkOption {
    type = lib.types.str;
    default = "zstd -Xcompression-level 19";
  };

  config.system.build.netbootRamdisk = derivation {
    name = "initrd-stand-in";
    system = config.nixpkgs.hostPlatform;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [
      "-c"
      "mkdir $out && echo '${config.system.build.toplevel} (${config.netboot.squashfsCompression})' > $out/initrd"
    ];
  };
}
