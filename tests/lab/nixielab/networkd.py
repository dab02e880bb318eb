# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""systemd-networkd as a machine's DHCPv4 client inside a network namespace, without systemd as PID 1.

NixOS's installer and installed systems run systemd-networkd as their DHCP client
(``networking.useNetworkd``; nixos-images' netboot and kexec installers turn it on). Here the
Debian build (systemd 252, ``/lib/systemd/systemd-networkd``) runs as a plain process in a
machine namespace, in a private mount and UTS namespace of its own, so that it touches
nothing of this machine:

* a fresh tmpfs on ``/run``: its state directory ``/run/systemd/netif`` (networkd makes it and
  hands it to the ``systemd-network`` user before dropping privileges to it), and no D-Bus
  socket, so it never joins this machine's system bus (without a bus it only waits for one
  to appear; D-Bus is needed for ``networkctl``, not for DHCP);
* ``/sys`` read-only: networkd then knows no udev runs (systemd's container rule) and
  configures links at once instead of waiting for udev to initialise them;
* its ``.network`` file bound over ``/etc/systemd/network`` (this machine's own files hidden);
* its own ``/etc/machine-id``: the default DHCPv4 client identifier is RFC 4361's IAID+DUID,
  and the DUID (DUID-EN, systemd's enterprise number 43793) is a hash of the machine id.
  A NixOS installer and the system installed from it have different machine ids, so the
  same MAC asks with two client identifiers; two ids here play that;
* hostname ``nixos`` (NixOS's default), which it sends as option 12, instead of this machine's.

The client identifier is left as on NixOS: its generated ``.network`` files set no
``ClientIdentifier=``, so networkd's default (``duid``) applies; it is written out explicitly.
IPv6 is turned off in the file: these captures and tests are about DHCPv4.

On SIGTERM networkd stops its DHCP client and, holding a lease, sends a DHCPRELEASE
(``SendRelease=yes``, its default); ``KeepConfiguration=dhcp-on-stop`` or ``dhcp`` would keep
the lease instead (NixOS sets neither; the default is ``no``). systemd 252's RELEASE carries no
server identifier, which RFC 2131 table 5 requires: dnsmasq drops it without a log line.
"""

from __future__ import annotations

import shlex
from pathlib import Path

NETWORKD = "/lib/systemd/systemd-networkd"
#: NixOS's default host name, sent by networkd as option 12.
HOSTNAME = "nixos"
#: Two machine ids, fixed so that the captures are the same every time: the installer's and the installed system's.
INSTALLER_MACHINE_ID = "6e697869652d696e7374616c6c657231"
INSTALLED_MACHINE_ID = "6e697869652d696e7374616c6c656432"


def network_file(interface: str = "eth0") -> str:
    """The ``.network`` file: DHCPv4 on ``interface``, as a NixOS host with ``useDHCP`` asks."""
    return f"""[Match]
Name={interface}

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
ClientIdentifier=duid
SendRelease=yes
"""


def command(work: Path, machine_id: str, interface: str = "eth0") -> list[str]:
    """argv that runs networkd in the current network namespace (prefix it with ``ip netns exec NS``).

    ``work`` is a directory of the caller's that receives ``network/`` and ``machine-id``. The
    process is networkd itself (``unshare`` and ``sh`` exec into it), so SIGTERM to its PID stops
    it as systemd would. Its log goes to stderr (debug level): give it a file.
    """
    if not Path(NETWORKD).exists():
        raise RuntimeError("%s is missing: install the Debian package systemd (scripts/setup does)" % NETWORKD)
    if not Path("/etc/machine-id").exists():
        raise RuntimeError("/etc/machine-id is missing: networkd's private one is bound over it; "
                           "run systemd-machine-id-setup once")
    network_dir = work / "network"
    network_dir.mkdir(parents=True, exist_ok=True)
    (network_dir / ("10-%s.network" % interface)).write_text(network_file(interface), encoding="utf-8")
    id_file = work / "machine-id"
    id_file.write_text(machine_id + "\n", encoding="utf-8")
    script = " && ".join([
        "mount -t tmpfs -o mode=0755 nixielab-run /run",
        "mkdir -p /run/systemd",
        "mount --bind /sys /sys",
        "mount -o remount,bind,ro /sys",
        "mount --bind %s /etc/systemd/network" % shlex.quote(str(network_dir)),
        "mount --bind %s /etc/machine-id" % shlex.quote(str(id_file)),
        "hostname %s" % HOSTNAME,
        "exec env SYSTEMD_LOG_TARGET=console SYSTEMD_LOG_LEVEL=debug %s" % NETWORKD,
    ])
    return ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", script]
