# Settings for one machine: hosts/<name>.nix is added to <name>'s system when it exists.
{
  # The disk that is ERASED and installed on (nixos/disk.nix: why by id, how to find it).
  # This id is the example lab's QEMU disk (serial "node1"). On a real machine it does
  # not exist: put the machine's own id here, from `ls -l /dev/disk/by-id/` on it.
  site.disk = "/dev/disk/by-id/virtio-node1";
}
