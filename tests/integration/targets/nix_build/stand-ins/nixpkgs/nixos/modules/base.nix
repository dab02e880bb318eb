# TEST STAND-IN for what NixOS's own modules define (see ../../../README.md): the
# options the example sets that other modules read, and a system.build.toplevel
# laid out as nixos/modules/system/activation/top-level.nix lays it out: kernel,
# kernel-params, init, system, and the systemd units under etc/systemd/system.
{ config, lib, ... }:
let
  inherit (config.nixpkgs) hostPlatform;
  build = name: script:
    derivation {
      inherit name;
      system = hostPlatform;
      builder = "/bin/sh";
      args = [ "-c" script ];
      PATH = "/usr/bin:/bin";
    };
  unit =
    name: svc:
    let
      line = key: value: "${key}=${if builtins.isList value then builtins.concatStringsSep " " value else toString value}";
      section = title: attrs: [ "[${title}]" ] ++ map (k: line k attrs.${k}) (builtins.attrNames attrs);
      env = svc.environment or { };
    in
    builtins.concatStringsSep "\n" (
      section "Unit" (
        { Description = svc.description or name; }
        // (if svc ? after then { After = svc.after; } else { })
        // (if svc ? wants then { Wants = svc.wants; } else { })
      )
      ++ section "Service" (svc.serviceConfig or { })
      ++ map (k: "Environment=${k}=${env.${k}}") (builtins.attrNames env)
      ++ section "Install" { WantedBy = svc.wantedBy or [ ]; }
    );
  units = builtins.concatStringsSep "\n" (
    map (name: ''
      cat > $out/etc/systemd/system/${name}.service <<'UNIT'
      ${unit name config.systemd.services.${name}}
      UNIT
    '') (builtins.attrNames config.systemd.services)
  );
in
{
  options = {
    nixpkgs.hostPlatform = lib.mkOption { type = lib.types.str; };
    networking.hostName = lib.mkOption {
      type = lib.types.str;
      default = "nixos";
    };
    boot.kernelParams = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
    };
    system.boot.loader.kernelFile = lib.mkOption {
      type = lib.types.str;
      default = if hostPlatform == "aarch64-linux" then "Image" else "bzImage";
    };
    system.stateVersion = lib.mkOption { type = lib.types.str; };
  };

  config = {
    systemd.services = { };
    system.build.kernel = build "linux-stand-in" "mkdir $out && echo 'stand-in kernel' > $out/${config.system.boot.loader.kernelFile}";
    system.build.toplevel = build "nixos-system-${config.networking.hostName}-stand-in" ''
      mkdir -p $out/etc/systemd/system
      ln -s ${config.system.build.kernel}/${config.system.boot.loader.kernelFile} $out/kernel
      printf '%s' '${builtins.concatStringsSep " " config.boot.kernelParams}' > $out/kernel-params
      printf '%s' '${hostPlatform}' > $out/system
      printf '#!/bin/sh\n# stand-in: stage 2 of ${config.networking.hostName}, state version ${config.system.stateVersion}\n' > $out/init
      ${units}
    '';
  };
}
