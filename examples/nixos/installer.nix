# The network installer: NixOS's netboot-minimal plus nixie-agent and the
# operator's SSH key. It only has to come up, get an address, phone home and
# let nixos-anywhere in; so it is kept small and quick to boot.
{
  lib,
  modulesPath,
  sshKeys,
  ...
}:
{
  imports = [ (modulesPath + "/installer/netboot/netboot-minimal.nix") ];

  # Phone home to the PXE server named on the kernel command line (nixie.api=...).
  services.nixie-agent.enable = true;

  # nixos-anywhere logs in as root with the operator's key; no passwords.
  users.users.root.openssh.authorizedKeys.keys = sshKeys;
  services.openssh = {
    enable = true;
    settings.PasswordAuthentication = false;
  };
  # The installation-device profile leaves sshd stopped until someone types
  # "systemctl start sshd" (mkOverride 50); nobody will, so start it at boot.
  systemd.services.sshd.wantedBy = lib.mkOverride 40 [ "multi-user.target" ];

  # The whole system travels inside the initrd as a squashfs that iPXE downloads
  # and the kernel unpacks into RAM. zstd unpacks several times faster than xz,
  # which older releases used; level 6 instead of the default 19 builds the image
  # in a fraction of the time for a file only a few per cent larger.
  netboot.squashfsCompression = "zstd -Xcompression-level 6";

  # No manuals, man pages or info pages: tens of megabytes nobody reads on an
  # installer that lives for a few minutes. mkForce because the installation-device
  # profile turns the NixOS manual on.
  documentation.enable = lib.mkForce false;
  documentation.nixos.enable = lib.mkForce false;
  documentation.man.enable = lib.mkForce false;
  documentation.info.enable = lib.mkForce false;
  documentation.doc.enable = lib.mkForce false;

  # installation-device adds build tools to the image so that nixos-install can
  # work offline; nixos-anywhere copies the finished system from the controller,
  # so they would only make the download bigger.
  system.extraDependencies = lib.mkForce [ ];

  # Serial console first for VMs and servers with a BMC; the last console= is /dev/console.
  boot.kernelParams = [
    "console=ttyS0,115200"
    "console=tty0"
  ];

  networking.hostName = "nixie-installer";
  system.stateVersion = "25.05";
}
