# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NixOS module: runs nixie-agent once the network is up. The agent reads
# nixie.api=, nixie.token= and nixie.mac= from the kernel command line, which
# nixie.metal's PXE server puts there, and reports the installer's addresses and
# SSH host keys; booted any other way, it finds no nixie.api= and exits 0.
# A host with a static network (hosts.json "network") also finds ip=, vlan=,
# ifname= and nameserver= there: nixie-network brings that link up before the
# OS's own DHCP client starts, and the DHCP clients leave it alone.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.nixie-agent;
in
{
  options.services.nixie-agent = {
    enable = lib.mkEnableOption "nixie-agent, which tells the nixie.metal server that this installer is up";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage (nixie-metal + \"/nix/package.nix\") { }";
      description = "The nixie-agent package.";
    };

    environment = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { };
      example = {
        NIXIE_MAX_DELAY = "10";
        NIXIE_NET_WAIT = "120";
      };
      description = ''
        Environment of the agent: NIXIE_MAX_DELAY (backoff cap, seconds),
        NIXIE_MAX_TRIES (0 = never give up), NIXIE_NET_WAIT, NIXIE_HTTP_TIMEOUT.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    # The static network's link is named nixie0 (or nixie0.<vlan>) by the kernel command line's
    # ifname=/vlan=. A DHCP client on it would send DISCOVERs on a segment that may have no DHCP
    # server (and, where one answers, add a second address and default route beside the static
    # ones), so every DHCP client the installer may run is told to leave nixie* alone. Nothing else
    # is named nixie*, so a DHCP boot is untouched.
    networking.dhcpcd.denyInterfaces = [ "nixie*" ];
    networking.networkmanager.unmanaged = [ "interface-name:nixie*" ];
    systemd.network.networks."10-nixie-static" = {
      matchConfig.Name = "nixie*";
      linkConfig.Unmanaged = true;
    };

    # Renaming the NIC to nixie0 must happen before a DHCP client has started on its old name,
    # hence a unit of its own, early, rather than the agent (which waits for network-online).
    systemd.services.nixie-network = {
      description = "nixie.metal: bring up the static network of the kernel command line (ip=, vlan=, ifname=)";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-pre.target" ];
      # After udev's coldplug, so that a NIC's own rename by udev is over before this one.
      after = [ "systemd-udev-trigger.service" ];
      before = [
        "network-pre.target"
        "dhcpcd.service"
        "systemd-networkd.service"
        "NetworkManager.service"
      ];
      inherit (cfg) environment;
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        # Without ip=...:none on the kernel command line it does nothing and exits 0.
        ExecStart = "${lib.getExe cfg.package} network";
        StandardOutput = "journal";
        StandardError = "journal";
        SyslogIdentifier = "nixie-agent";
      };
    };

    systemd.services.nixie-agent = {
      description = "nixie.metal agent: report this installer to the provisioning server";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      # After sshd so the host keys it reports exist (NixOS generates them before sshd starts).
      after = [
        "network-online.target"
        "sshd.service"
        "sshd-keygen.service"
      ];
      inherit (cfg) environment;
      serviceConfig = {
        # The agent retries by itself until the server answers, then exits 0.
        # "exec" rather than "oneshot": a oneshot would hold multi-user.target (and
        # the end of boot) until the server answers. RemainAfterExit keeps it
        # "active (exited)" after it has phoned home, so it runs once per boot.
        Type = "exec";
        RemainAfterExit = true;
        ExecStart = lib.getExe cfg.package;
        Restart = "on-failure";
        RestartSec = 5;
        # Exit 2 is a configuration error (malformed nixie.* arguments); retrying cannot help.
        RestartPreventExitStatus = 2;
        StandardOutput = "journal";
        StandardError = "journal";
        SyslogIdentifier = "nixie-agent";
      };
      # Never stop restarting after a burst of failures (e.g. the server is not up yet).
      startLimitIntervalSec = 0;
    };
  };
}
