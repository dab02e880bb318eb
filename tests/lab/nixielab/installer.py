# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the *lab installer*: a Debian kernel plus a busybox initramfs.

It stands in for the NixOS netboot image, which cannot be built offline
here (no nixpkgs).  It does what matters to the netboot server under test:
it boots from the kernel/initrd the server hands out, takes an address by
DHCP (or, given a static ``ip=...:none`` as a NixOS initrd would be, runs no
DHCP client and leaves the address to the agent), and runs the phone-home
agent (``nix/agent/nixie-agent``) with the kernel command line the server chose.  Every step prints a
``NIXIE-LAB: ...`` marker on the serial console (``console=ttyS0``) so
tests can follow the boot by reading the serial log.

Everything is cached under :func:`cache_dir`, keyed by content, so only the
first build downloads (≈70 MB) and unpacks; later builds are a hash check.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

#: Modules the NICs need, in load order.  The Debian kernel has every NIC
#: driver as a module; af_packet (udhcpc) is built in.
NIC_MODULES = (
    "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
    "virtio_pci", "failover", "net_failover", "virtio_net", "e1000",
)

#: The disk driver, so that the lab machines' virtio disk is /dev/vda in the installer as on a
#: real one: the nixos_anywhere role looks for the disks before disko runs.
DISK_MODULES = ("virtio_blk",)
BOOT_MODULES = NIC_MODULES + DISK_MODULES

BUSYBOX = "/bin/busybox"
MARKER = "NIXIE-LAB:"
#: Bumped when the layout of a build changes, so old cache entries are ignored.
BUILD_FORMAT = 3


def default_agent() -> Path:
    """The real agent (nix/agent/nixie-agent) if present, else the lab's stand-in."""
    repo = Path(__file__).resolve().parents[3]
    real = repo / "nix" / "agent" / "nixie-agent"
    return real if real.is_file() else Path(__file__).resolve().parent / "data" / "lab-agent.sh"


def cache_dir() -> Path:
    """Where downloads and builds live: $NIXIE_LAB_CACHE, else XDG cache."""
    env = os.environ.get("NIXIE_LAB_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(xdg) / "nixie-lab"


@dataclasses.dataclass(frozen=True)
class Installer:
    """A built lab installer: the two files a netboot server hands out."""

    kernel: Path
    initrd: Path
    kernel_version: str
    key: str
    #: OpenSSH public host keys ("type base64 comment") when built with_sshd, else ().
    ssh_host_keys: tuple[str, ...] = ()
    with_sshd: bool = False
    #: The serial console device: ttyS0 on x86 PCs, ttyAMA0 on arm64 (QEMU virt's PL011).
    console: str = "ttyS0"

    def cmdline(self, api: str = "", token: str = "", mac: str = "", extra: str = "") -> str:
        """Kernel command line as the product would write it (console on serial)."""
        parts = [f"console={self.console}", "panic=-1"]
        if api:
            parts.append(f"nixie.api={api}")
        if token:
            parts.append(f"nixie.token={token}")
        if mac:
            parts.append(f"nixie.mac={mac}")
        if extra:
            parts.append(extra)
        return " ".join(parts)


# --------------------------------------------------------------------------
# kernel .deb: find, download, unpack (all cached)
# --------------------------------------------------------------------------

def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cached_kernel_deb(debs: Path) -> Path | None:
    """Newest linux-image-*-amd64 .deb already downloaded (no apt call when warm)."""
    found = sorted(debs.glob("linux-image-6.*-amd64_*_amd64.deb"))
    return found[-1] if found else None


def _kernel_package_name() -> str:
    """The package the linux-image-amd64 metapackage points at (override: NIXIE_LAB_KERNEL_PACKAGE)."""
    override = os.environ.get("NIXIE_LAB_KERNEL_PACKAGE")
    if override:
        return override
    out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"],
                         check=True, capture_output=True, text=True).stdout
    match = re.search(r"Depends:\s*(linux-image-6\.\S+-amd64)\b", out)
    if not match:
        raise RuntimeError(f"cannot find the kernel package behind linux-image-amd64:\n{out}")
    return match.group(1)


def kernel_deb(cache: Path | None = None) -> Path:
    """Path of the kernel .deb, downloading it with apt-get once."""
    debs = (cache or cache_dir()) / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("NIXIE_LAB_KERNEL_PACKAGE"):
        cached = _cached_kernel_deb(debs)
        if cached:
            return cached
    name = _kernel_package_name()
    existing = sorted(debs.glob(f"{name}_*_amd64.deb"))
    if existing:
        return existing[-1]
    # apt's _apt user cannot write root's cache; download into a temp dir it can.
    with tempfile.TemporaryDirectory(dir=debs) as tmp:
        os.chmod(tmp, 0o777)
        subprocess.run(["apt-get", "download", "-q", name], cwd=tmp, check=True,
                       capture_output=True)
        got = list(Path(tmp).glob("*.deb"))
        if len(got) != 1:
            raise RuntimeError(f"apt-get download {name} gave {got}")
        final = debs / got[0].name
        shutil.move(str(got[0]), final)
    return final


def unpack_kernel(deb: Path, cache: Path | None = None, modules=BOOT_MODULES) -> Path:
    """Unpack vmlinuz and the NIC ``modules`` from the .deb (once per .deb).

    Returns a directory holding ``vmlinuz``, ``version`` and ``modules/<name>.ko``.
    """
    # A directory unpacked without the disk driver (by an older build) is never changed in place.
    suffix = "-disk" if set(DISK_MODULES) <= set(modules) else ""
    target = (cache or cache_dir()) / "kernels" / (deb.stem + suffix)
    if (target / "done").exists():
        return target
    # Unpacked beside the target and renamed into place: two test runs at once (the lanes of scripts/test) may both
    # unpack; the first rename wins and the other's copy is dropped.
    unpacked = Path(tempfile.mkdtemp(dir=_mkdir(target.parent), prefix=".unpack-"))
    with tempfile.TemporaryDirectory() as tmp:
        wanted = ["./boot/vmlinuz-*"] + [f"*/{m}.ko" for m in modules]
        tar = subprocess.Popen(["tar", "-x", "-C", tmp, "--wildcards", *wanted],
                               stdin=subprocess.PIPE)
        subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=tar.stdin, check=True)
        tar.stdin.close()
        if tar.wait() != 0:
            raise RuntimeError(f"unpacking {deb} failed")
        (unpacked / "modules").mkdir()
        vmlinuz = glob.glob(f"{tmp}/boot/vmlinuz-*")[0]
        shutil.copy(vmlinuz, unpacked / "vmlinuz")
        (unpacked / "version").write_text(os.path.basename(vmlinuz)[len("vmlinuz-"):])
        for ko in glob.glob(f"{tmp}/lib/modules/*/kernel/**/*.ko", recursive=True):
            shutil.copy(ko, unpacked / "modules" / os.path.basename(ko))
    (unpacked / "done").touch()
    os.chmod(unpacked, 0o755)
    if not (target / "done").exists() and target.exists():
        # Left unfinished by an older version of this function, which unpacked in place: moved out of the way whole,
        # never emptied, so that nothing another run is reading changes under it.
        os.rename(target, Path(tempfile.mkdtemp(dir=target.parent, prefix=".stale-")) / "kernel")
    try:
        os.rename(unpacked, target)
    except OSError:
        # Another run's rename came first: its copy is the same.
        shutil.rmtree(unpacked, ignore_errors=True)
        if not (target / "done").exists():
            raise
    return target


def module_depends(ko: Path) -> list[str]:
    """Dependencies recorded in a module's .modinfo (what modprobe would read)."""
    match = re.search(rb"(?:^|\x00)depends=([^\x00]*)", ko.read_bytes())
    if not match or not match.group(1):
        return []
    return [d.replace("-", "_") for d in match.group(1).decode().split(",")]


def load_order(moddir: Path, wanted=BOOT_MODULES) -> list[str]:
    """Modules in an order where each comes after its dependencies.

    insmod cannot resolve dependencies itself (no modprobe/depmod data in
    the initramfs), so the order is computed here, from the .ko files.
    """
    order: list[str] = []

    def visit(name: str, stack: tuple[str, ...] = ()) -> None:
        if name in order:
            return
        if name in stack:
            raise RuntimeError(f"module dependency cycle: {stack + (name,)}")
        ko = moddir / f"{name}.ko"
        if not ko.exists():
            raise RuntimeError(f"module {name} missing from {moddir}")
        for dep in module_depends(ko):
            visit(dep, stack + (name,))
        order.append(name)

    for name in wanted:
        visit(name)
    return order


# --------------------------------------------------------------------------
# initramfs
# --------------------------------------------------------------------------

INIT_SCRIPT = r"""#!/bin/sh
# /init of the nixie.metal lab installer (generated by tests/lab/nixielab/installer.py).
export PATH=/bin:/sbin
mark() { read -r up _ < /proc/uptime; echo "NIXIE-LAB: $* (t=${up}s)" > /dev/console; }
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /run /tmp /dev/pts && mount -t devpts devpts /dev/pts
mark "init start"
echo "NIXIE-LAB: cmdline $(cat /proc/cmdline)" > /dev/console
for m in $(cat /etc/modules.order); do insmod "/lib/modules/$m.ko" 2>/dev/console; done
mark "modules loaded"

# The NIC to use: the one whose MAC the server saw (nixie.mac=), else the first one.
want_mac=""
for w in $(cat /proc/cmdline); do case "$w" in nixie.mac=*) want_mac="${w#nixie.mac=}";; esac; done
ip link set lo up
iface=""
i=0
while [ -z "$iface" ] && [ $i -lt 50 ]; do
  for d in /sys/class/net/*; do
    n="${d##*/}"; [ "$n" = lo ] && continue
    if [ -z "$want_mac" ] || [ "$(cat "$d/address")" = "$want_mac" ]; then iface="$n"; break; fi
  done
  [ -z "$iface" ] && { sleep 0.1; i=$((i+1)); }
done
api=""
for w in $(cat /proc/cmdline); do case "$w" in nixie.api=*) api="${w#nixie.api=}";; esac; done
netmode="$(nixie-lab-network-mode)"
if [ -z "$iface" ]; then mark "no network interface"
elif [ "${netmode%% *}" = static ]; then
  # As a NixOS initrd given ip=...:none: no DHCP client at all; the NIC stays down under its kernel name, so
  # that nixie-agent (run below) renames it by ifname= and brings up the address before it phones home.
  mark "network static ${netmode#static } dev $iface mac $(cat /sys/class/net/$iface/address): no DHCP client, left to nixie-agent"
else
  ip link set "$iface" up
  case "$api" in
  http://\[*|https://\[*)
    # The server is an IPv6 literal: take the address the router advertisement gives (SLAAC,
    # kernel defaults), once duplicate address detection is over. DHCPv4, if any, runs beside.
    udhcpc -i "$iface" -s /etc/udhcpc.script -S -x hostname:nixie-lab >/dev/null 2>&1 &
    addr=""
    i=0
    while [ -z "$addr" ] && [ $i -lt 600 ]; do
      addr="$(ip -6 -o addr show dev "$iface" scope global | grep -v -e tentative -e dadfailed | awk '{print $4}' | head -n1)"
      [ -z "$addr" ] && { sleep 0.1; i=$((i+1)); }
    done
    if [ -n "$addr" ]; then
      mark "network up ${addr%/*} dev $iface mac $(cat /sys/class/net/$iface/address)"
    else
      mark "network failed dev $iface"
    fi
    ;;
  *)
    # udhcpc forks to the background once it has a lease, and keeps renewing it.
    if udhcpc -i "$iface" -s /etc/udhcpc.script -t 30 -T 1 -A 2 -n -S -x hostname:nixie-lab >/dev/console 2>&1; then
      addr="$(ip -4 -o addr show dev "$iface" | awk '{print $4}' | head -n1)"
      mark "network up ${addr%/*} dev $iface mac $(cat /sys/class/net/$iface/address)"
    else
      mark "network failed dev $iface"
    fi
    ;;
  esac
fi

# Stand-in pose (tests only): nixie.lab.system=/nix/store/<hash>-nixos-system-<name> makes this
# installer look like an installed NixOS running that system; without it, it says it is not NixOS.
pose=""
for w in $(cat /proc/cmdline); do case "$w" in nixie.lab.system=*) pose="${w#nixie.lab.system=}";; esac; done
if [ -n "$pose" ]; then nixie-lab-pose "$pose"; else nixie-lab-pose --off; fi
mark "os $(. /etc/os-release; echo "$ID") system ${pose:-none}"

if [ -x /sbin/dropbear ]; then
  set -- /etc/dropbear/dropbear_*_host_key
  keys=""; for k in "$@"; do keys="$keys -r $k"; done
  # -F foreground (backgrounded here, logs on the console), -E log to stderr, -s no passwords.
  /sbin/dropbear -F -E -s -p 22 -P /run/dropbear.pid $keys > /dev/console 2>&1 &
  mark "sshd started port 22 pid $!"
  # dropbear listens only once the kernel's RNG is ready (~1-2 s under TCG); wait for it, so
  # that a phone-home means "SSH is up" to whoever connects next.
  i=0
  until grep -qE ':0016 0+:0000 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null || [ $i -ge 150 ]; do
    sleep 0.1; i=$((i+1))
  done
  mark "sshd listening"
fi

if [ -x /bin/nixie-agent ]; then
  mark "agent start"
  /bin/nixie-agent > /dev/console 2>&1
  mark "agent exit $?"
else
  mark "no agent"
fi
mark "ready"
if grep -q 'nixie.lab.shell' /proc/cmdline; then
  exec setsid cttyhack sh
fi
while :; do sleep 3600; done
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
# udhcpc hook: apply the lease (busybox ships no default script).
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    echo "NIXIE-LAB: dhcp $1 $ip/${mask} router=${router} server=${serverid} lease=${lease}" > /dev/console
    ;;
esac
exit 0
"""


NETWORK_MODE_SCRIPT = r"""#!/bin/sh
# nixie-lab-network-mode [CMDLINE_FILE]: how the lab installer's /init brings up the network, read from the
# kernel command line (default /proc/cmdline) as a NixOS initrd reads it. Prints "static <ip= value>" when
# the last ip= is a static configuration (its seventh field, autoconf, is none, off or static): the init
# then starts no DHCP client. Prints "dhcp" otherwise: no ip=, ip=dhcp, ip=<...>:dhcp and the like.
set -f
value=""
for w in $(cat "${1:-/proc/cmdline}"); do case "$w" in ip=*) value="${w#ip=}";; esac; done
case "$(printf '%s\n' "$value" | cut -s -d: -f7)" in
  none|off|static) echo "static $value" ;;
  *) echo dhcp ;;
esac
"""


POSE_SCRIPT = r"""#!/bin/sh
# nixie-lab-pose: LAB STAND-IN, not part of nixie.metal. Makes the lab installer pose as an
# installed NixOS running SYSTEM (/etc/os-release ID=nixos, /run/current-system -> SYSTEM),
# or, with --off, as what it is: the lab installer (ID=nixie-lab-installer, no current system).
#   nixie-lab-pose /nix/store/<hash>-nixos-system-<name>  |  nixie-lab-pose --off
set -e
case "${1:-}" in
  --off)
    rm -f /run/current-system
    cat > /etc/os-release <<'EOR'
NAME="nixie lab installer"
ID=nixie-lab-installer
PRETTY_NAME="nixie.metal lab installer (busybox stand-in, not NixOS)"
EOR
    ;;
  /*)
    mkdir -p "$1"
    echo "nixie lab stand-in: posing as this NixOS system" > "$1/nixie-lab-pose"
    ln -sfn "$1" /run/current-system
    cat > /etc/os-release <<'EOR'
NAME=NixOS
ID=nixos
VARIANT_ID=nixie-lab-pose
PRETTY_NAME="NixOS (nixie lab stand-in: the lab installer posing as an installed system)"
EOR
    ;;
  *) echo "usage: nixie-lab-pose /nix/store/<hash>-nixos-system-<name> | --off" >&2; exit 2 ;;
esac
echo "NIXIE-LAB: pose ${1}" > /dev/console
"""

#: What the installer runs as its SSH server (Debian package dropbear-bin), plus OpenSSH's
#: sftp-server and scp so both scp protocols work against it.
DROPBEAR = "/usr/sbin/dropbear"
DROPBEARKEY = "/usr/bin/dropbearkey"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
SCP = "/usr/bin/scp"
HOST_KEY_TYPES = ("ed25519", "ecdsa")


def ensure_dropbear() -> None:
    """Install dropbear-bin (and OpenSSH's sftp-server) with apt-get when missing."""
    missing = [pkg for pkg, path in (("dropbear-bin", DROPBEAR), ("openssh-sftp-server", SFTP_SERVER),
                                     ("openssh-client", SCP)) if not os.path.exists(path)]
    if missing:
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, capture_output=True)


def shared_libraries(binary: str) -> list[str]:
    """Shared objects a dynamic binary loads (ldd), the loader included; [] if static."""
    out = subprocess.run(["ldd", binary], check=False, capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if match:
            libs.append(match.group(1))
    return libs


def _copy_with_libs(root: Path, binary: str, dest: str) -> None:
    """Copy a dynamic binary to ``dest`` in the tree, its libraries under the same paths."""
    shutil.copy(binary, root / dest.lstrip("/"))
    for lib in shared_libraries(binary):
        target = root / lib.lstrip("/")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(os.path.realpath(lib), target)  # the real file under the soname


def _host_keys(root: Path) -> list[str]:
    """Generate dropbear host keys; write their OpenSSH public form to /etc/ssh (what the agent reads)."""
    (root / "etc/dropbear").mkdir(parents=True, exist_ok=True)
    (root / "etc/ssh").mkdir(parents=True, exist_ok=True)
    public = []
    for kind in HOST_KEY_TYPES:
        key = root / f"etc/dropbear/dropbear_{kind}_host_key"
        subprocess.run([DROPBEARKEY, "-t", kind, "-f", str(key)], check=True, capture_output=True)
        out = subprocess.run([DROPBEARKEY, "-y", "-f", str(key)], check=True, capture_output=True,
                             text=True).stdout
        line = next(x for x in out.splitlines() if x.startswith(("ssh-", "ecdsa-")))
        line = " ".join(line.split()[:2]) + " root@nixie-lab"
        (root / f"etc/ssh/ssh_host_{kind}_key.pub").write_text(line + "\n")
        public.append(line)
    return public


def _sshd_tree(root: Path, authorized_keys: tuple[str, ...]) -> list[str]:
    """dropbear, its libraries, host keys, root's authorized_keys, sftp-server and scp."""
    ensure_dropbear()
    _copy_with_libs(root, DROPBEAR, "/sbin/dropbear")
    (root / "usr/lib").mkdir(parents=True, exist_ok=True)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    _copy_with_libs(root, SFTP_SERVER, "/usr/lib/sftp-server")  # dropbear's compiled-in path
    _copy_with_libs(root, SCP, "/usr/bin/scp")
    (root / "etc/shells").write_text("/bin/sh\n")
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(root / "root", 0o700)
    os.chmod(ssh_dir, 0o700)
    (ssh_dir / "authorized_keys").write_text("".join(k.strip() + "\n" for k in authorized_keys))
    os.chmod(ssh_dir / "authorized_keys", 0o600)
    return _host_keys(root)


def lab_client_key(cache: Path | None = None, name: str = "lab_ed25519") -> tuple[Path, str]:
    """A lab-only SSH client key pair, made once under the cache (``keys/NAME``).

    Returns (private key path, public key line). Stable between runs, so an installer
    built with it as an authorized key stays cached. Never use it outside the lab.
    """
    keys = _mkdir((cache or cache_dir()) / "keys")
    os.chmod(keys, 0o700)
    private = keys / name
    public = keys / f"{name}.pub"
    if not (private.exists() and public.exists()):
        with tempfile.TemporaryDirectory(dir=keys) as tmp:
            tmp_key = Path(tmp) / name
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"nixie-lab-{name}",
                            "-f", str(tmp_key)], check=True, capture_output=True)
            os.replace(Path(f"{tmp_key}.pub"), public)
            os.replace(tmp_key, private)
    return private, public.read_text().strip()


def _initramfs_tree(root: Path, kdir: Path, agent: Path | None, busybox: str = BUSYBOX,
                    modules=BOOT_MODULES) -> None:
    """Lay out the initramfs: busybox + applet links, /init, modules, agent.

    ``busybox`` may be another architecture's static build of the same
    version (the arm64 lab): the applet list comes from this machine's one.
    """
    for sub in ("bin", "sbin", "etc", "proc", "sys", "dev", "run", "tmp", "lib/modules", "root"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(busybox, root / "bin/busybox")
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", root / "bin" / applet)
    (root / "init").write_text(INIT_SCRIPT)
    (root / "bin/nixie-lab-pose").write_text(POSE_SCRIPT)
    os.chmod(root / "bin/nixie-lab-pose", 0o755)
    (root / "etc/udhcpc.script").write_text(UDHCPC_SCRIPT)
    (root / "bin/nixie-lab-network-mode").write_text(NETWORK_MODE_SCRIPT)
    order = load_order(kdir / "modules", modules)
    (root / "etc/modules.order").write_text("\n".join(order) + "\n")
    for name in order:
        shutil.copy(kdir / "modules" / f"{name}.ko", root / "lib/modules" / f"{name}.ko")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    if agent is not None:
        shutil.copy(agent, root / "bin/nixie-agent")
        os.chmod(root / "bin/nixie-agent", 0o755)
    for script in ("init", "etc/udhcpc.script", "bin/nixie-lab-network-mode"):
        os.chmod(root / script, 0o755)


def _pack_cpio(root: Path, out: Path) -> None:
    """newc cpio, gzip-compressed: the format the kernel unpacks (no cpio binary here)."""
    names = subprocess.run(["find", "."], cwd=root, check=True, capture_output=True).stdout
    cpio = subprocess.run([BUSYBOX, "cpio", "-o", "-H", "newc"], cwd=root, input=names,
                          check=True, capture_output=True).stdout
    gz = subprocess.run(["gzip", "-9", "-n"], input=cpio, check=True, capture_output=True).stdout
    out.write_bytes(gz)


def _build_key(deb: Path, agent: Path | None, with_sshd: bool,
               authorized_keys: tuple[str, ...] = ()) -> str:
    """Content key of a build: any input change gives a new cache entry."""
    digest = hashlib.sha256()
    for part in (str(BUILD_FORMAT), deb.name, str(deb.stat().st_size), INIT_SCRIPT,
                 UDHCPC_SCRIPT, NETWORK_MODE_SCRIPT, POSE_SCRIPT, ",".join(BOOT_MODULES), str(with_sshd)):
        digest.update(part.encode() + b"\0")
    digest.update(_sha256_file(Path(BUSYBOX)).encode())
    digest.update(_sha256_file(agent).encode() if agent else b"no-agent")
    if with_sshd:
        for binary in (DROPBEAR, SFTP_SERVER, SCP):
            digest.update(_sha256_file(Path(binary)).encode())
        for key in authorized_keys:
            digest.update(key.strip().encode() + b"\n")
        digest.update(",".join(HOST_KEY_TYPES).encode())
    return digest.hexdigest()[:16]


def build(agent: str | os.PathLike | None = None, *, cache: Path | None = None,
          with_sshd: bool = False, authorized_keys: list[str] | tuple[str, ...] = ()) -> Installer:
    """Build (or fetch from cache) the lab installer.

    ``agent``: path of a POSIX sh script copied to ``/bin/nixie-agent`` and run
    once the network is up (normally ``nix/agent/nixie-agent``); None for no agent.
    ``with_sshd``: add an SSH server (dropbear, from Debian's dropbear-bin, with
    its shared libraries), started before the agent runs: root may log in with
    ``authorized_keys`` (OpenSSH public key lines) only, no passwords; commands,
    ``scp`` (SFTP and legacy protocol) work.  Host keys (ed25519, ecdsa) are made
    at build time, so they are stable per cache entry; their public form is in
    ``/etc/ssh/ssh_host_*_key.pub`` (what the agent reports) and in
    ``Installer.ssh_host_keys``.
    """
    cache = cache or cache_dir()
    agent_path = Path(agent).resolve() if agent else None
    if agent_path and not agent_path.is_file():
        raise FileNotFoundError(f"agent script {agent_path} does not exist")
    authorized_keys = tuple(k.strip() for k in authorized_keys if k.strip())
    if authorized_keys and not with_sshd:
        raise ValueError("authorized_keys needs with_sshd=True")
    if with_sshd:
        ensure_dropbear()
    deb = kernel_deb(cache)
    key = _build_key(deb, agent_path, with_sshd, authorized_keys)
    out = cache / "builds" / key
    manifest = out / "manifest.json"
    if not manifest.exists():
        kdir = unpack_kernel(deb, cache)
        tmp_out = Path(tempfile.mkdtemp(dir=_mkdir(cache / "builds")))
        os.chmod(tmp_out, 0o755)
        host_keys: list[str] = []
        with tempfile.TemporaryDirectory() as tree:
            os.chmod(tree, 0o755)  # becomes the mode of / in the installer
            _initramfs_tree(Path(tree), kdir, agent_path)
            if with_sshd:
                host_keys = _sshd_tree(Path(tree), authorized_keys)
            _pack_cpio(Path(tree), tmp_out / "initrd")
        shutil.copy(kdir / "vmlinuz", tmp_out / "kernel")
        (tmp_out / "manifest.json").write_text(json.dumps({
            "deb": deb.name, "kernel_version": (kdir / "version").read_text(),
            "agent": str(agent_path) if agent_path else None,
            "modules": load_order(kdir / "modules"),
            "with_sshd": with_sshd, "authorized_keys": list(authorized_keys),
            "ssh_host_keys": host_keys,
        }, indent=2))
        _publish(tmp_out, out)
    meta = json.loads(manifest.read_text())
    return Installer(kernel=readable_by_everyone(out / "kernel"), initrd=readable_by_everyone(out / "initrd"),
                     kernel_version=meta["kernel_version"], key=key,
                     ssh_host_keys=tuple(meta.get("ssh_host_keys", ())),
                     with_sshd=bool(meta.get("with_sshd", False)))


#: Where :func:`readable_by_everyone` puts links to cached files.
SERVED = Path("/var/tmp/nixie-lab-served")


def _others_may_read(path: Path) -> bool:
    path = path.resolve()
    if not os.stat(path).st_mode & stat.S_IROTH:
        return False
    return all(os.stat(parent).st_mode & stat.S_IXOTH for parent in path.parents)


def readable_by_everyone(path: Path) -> Path:
    """``path`` (a file, or a directory of files) where every user may read it.

    The netboot server reads what it serves as ``nobody`` once its ports are
    bound (pxe_server's ``user``), and the lab's cache may sit in root's home
    (0700). The files of the cache are made once and never change (their
    directory is named by their content), so a hard link in a world-readable
    directory (a copy across file systems) serves them as they are.
    """
    path = Path(path)
    if path.is_dir():
        if all(_others_may_read(entry) for entry in path.iterdir() if entry.is_file()) and _others_may_read(path):
            return path
        entries = [entry for entry in sorted(path.iterdir()) if entry.is_file()]
    else:
        if _others_may_read(path):
            return path
        entries = [path]
    target = SERVED / hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    for directory in (SERVED, target):
        directory.mkdir(exist_ok=True)
        directory.chmod(0o755)
    for entry in entries:
        final = target / entry.name
        if final.exists():
            continue
        staging = target / (".%s.%d" % (entry.name, os.getpid()))
        try:
            os.link(entry, staging)
        except OSError:
            shutil.copyfile(entry, staging)
        staging.chmod(0o644)
        os.replace(staging, final)
    return target if path.is_dir() else target / path.name


def _publish(tmp_out: Path, out: Path) -> None:
    """Move a finished build into place atomically; a concurrent twin may win."""
    try:
        os.rename(tmp_out, out)
    except OSError:
        if not (out / "manifest.json").exists():
            raise
        shutil.rmtree(tmp_out, ignore_errors=True)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def main() -> None:
    """``python3 -m nixielab.installer [AGENT]``: build and print the paths."""
    import argparse
    import time
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("agent", nargs="?", help="agent script to include")
    parser.add_argument("--sshd", action="store_true", help="include the dropbear SSH server")
    parser.add_argument("--authorized-key", action="append", default=[], metavar="FILE",
                        help="public key file allowed to log in as root (implies --sshd; repeatable)")
    args = parser.parse_args()
    start = time.monotonic()
    keys = [Path(f).read_text() for f in args.authorized_key]
    inst = build(args.agent, with_sshd=args.sshd or bool(keys), authorized_keys=keys)
    print(json.dumps({"kernel": str(inst.kernel), "initrd": str(inst.initrd),
                      "kernel_version": inst.kernel_version, "key": inst.key,
                      "ssh_host_keys": list(inst.ssh_host_keys),
                      "seconds": round(time.monotonic() - start, 3)}))


if __name__ == "__main__":
    main()
