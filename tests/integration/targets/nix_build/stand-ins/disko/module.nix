# TEST STAND-IN for disko's NixOS module (see ../README.md).
{ config, lib, ... }:
let
  isSize = s: builtins.isString s && builtins.match "[0-9]+[KMGT]?|[0-9]+%" s != null;
  partitionOk =
    p:
    builtins.isAttrs p
    && (p ? size -> isSize p.size)
    && (p ? content -> builtins.elem p.content.type [ "filesystem" "swap" "luks" "lvm_pv" "zfs" ])
    && (p.content.type or "" == "filesystem" -> builtins.isString p.content.format && builtins.isString (p.content.mountpoint or ""));
  diskOk =
    d:
    d.type or null == "disk"
    && builtins.isString d.device
    && lib.hasPrefix "/dev/" d.device
    && d.content.type or null == "gpt"
    && builtins.all partitionOk (builtins.attrValues d.content.partitions);
in
{
  options.disko.devices = lib.mkOption {
    type = {
      name = "disko devices (disks: type = \"disk\", device = \"/dev/...\", GPT content with sized partitions)";
      check = v: builtins.isAttrs v && builtins.all diskOk (builtins.attrValues (v.disk or { }));
    };
    default = { };
  };

  config.system.build.diskoScript = derivation {
    name = "disko-stand-in";
    system = config.nixpkgs.hostPlatform;
    builder = "/bin/sh";
    args = [
      "-c"
      "echo \"$devices\" > $out"
    ];
    devices = builtins.toJSON config.disko.devices;
  };
}
