# Settings for one machine: hosts/<name>.nix is added to <name>'s system when it exists.
{
  # The disk that is ERASED and installed on (nixos/disk.nix: why by id, how to find it).
  # This id is a QEMU disk with the serial "arm1". On a real machine it does not exist:
  # put the machine's own id here, from `ls -l /dev/disk/by-id/` on it.
  site.disk = "/dev/disk/by-id/virtio-arm1";
  # The PL011 serial port of arm64 servers and QEMU's virt machine.
  boot.kernelParams = [ "console=ttyAMA0,115200" ];
}
