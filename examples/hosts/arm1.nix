# Settings for one machine: hosts/<name>.nix is added to <name>'s system when it exists.
{
  site.disk = "/dev/vda";
  # The PL011 serial port of arm64 servers and QEMU's virt machine.
  boot.kernelParams = [ "console=ttyAMA0,115200" ];
}
