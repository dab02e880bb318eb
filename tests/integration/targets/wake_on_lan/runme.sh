#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# nixie.metal.wake_on_lan through ansible-playbook, between two private network namespaces:
#   tx (the controller): wol0 198.51.100.1/24 to the machines' link, and other0 203.0.113.1/24 holding the
#                        default route, so that an unpinned 255.255.255.255 leaves through the wrong NIC;
#   rx (a sleeping machine's link): wol1 198.51.100.2/24 and a UDP listener on ports 9 and 7 (IPv4 and IPv6).
# Each phase's packets are compared with what it should have sent, payload by payload.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
python=${ANSIBLE_TEST_PYTHON_INTERPRETER:-$(command -v python3)}
tx=nixie-wol-tx-$$
rx=nixie-wol-rx-$$
work=$(mktemp -d)
listener_pid=

cleanup() {
    if [ -n "$listener_pid" ]; then kill "$listener_pid" 2>/dev/null || true; wait "$listener_pid" 2>/dev/null || true; fi
    ip netns del "$tx" 2>/dev/null || true
    ip netns del "$rx" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ansible-doc nixie.metal.wake_on_lan > "$work/doc.txt"
grep -q "Sends Wake-on-LAN magic packets" "$work/doc.txt"

ip netns add "$tx"
ip netns add "$rx"
ip link add wol0 netns "$tx" type veth peer name wol1 netns "$rx"
for pair in "$tx wol0 198.51.100.1/24" "$rx wol1 198.51.100.2/24"; do
    read -r ns link address <<< "$pair"
    # No duplicate address detection: the IPv6 link-local addresses are usable at once.
    ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$link.accept_dad=0"
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$address" dev "$link"
    ip -n "$ns" link set "$link" up
done
# The other network of a multi-homed controller: a veth pair whose both ends stay in tx, nobody listening.
ip -n "$tx" link add other0 type veth peer name other1
ip -n "$tx" addr add 203.0.113.1/24 dev other0
ip -n "$tx" link set other0 up
ip -n "$tx" link set other1 up
ip -n "$tx" route add default via 203.0.113.254 dev other0

ip netns exec "$rx" "$python" "$here/listener.py" "$work/received.jsonl" "$work/ready" 9 7 &
listener_pid=$!
for _ in $(seq 50); do [ -e "$work/ready" ] && break; sleep 0.1; done
[ -e "$work/ready" ] || { echo "the listener did not start" >&2; exit 1; }
touch "$work/received.jsonl"

phase() {
    local name=$1; shift
    local start
    start=$(wc -l < "$work/received.jsonl")
    ip netns exec "$tx" ansible-playbook -i localhost, -c local -e "ansible_python_interpreter=$python" "$here/$name.yml"
    sleep 0.5   # let the last datagrams reach the log
    "$python" "$here/check_received.py" "$work/received.jsonl" "$start" "$name" "$@"
}

A=52:54:00:12:34:01 B=52:54:00:12:34:02 C=52:54:00:12:34:03 D=52:54:00:12:34:04 E=52:54:00:12:34:05
phase check_mode
phase default_route
phase send "$A,3,9,ipv4,0a0b0c0d0e0f,0.15" "$B,3,9,ipv4,0a0b0c0d0e0f,0.15"
phase directed "$C,2,7,ipv4,0a141e28"
phase ipv6 "$D,2,9,ipv6" "$E,1,9,ipv6"
phase errors
echo "ok wake_on_lan"
