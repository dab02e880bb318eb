#!/usr/bin/env bash
# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# The role nixie.metal.nixos_anywhere through ansible-playbook, between two private network namespaces:
#   ctl (the controller): na0 198.51.100.1/24, fd00:1::1/64; runs ansible-playbook and the stand-in nixos-anywhere
#   tgt (the machine):    na1 198.51.100.2/24, fd00:1::2/64; OpenSSH's sshd on ports 22 and 2222 with its own
#                         host key, in a private mount namespace whose /run/current-system and /etc/os-release
#                         are the test's (so it can pose as a NixOS installer, then as the installed system);
#                         for some cases an impostor's sshd with another host key in its place.
# For the last cases the site's DHCP server (dnsmasq, in ctl on na0) gives the target its addresses instead.
# files/nixos-anywhere is the stand-in for nixos-anywhere (it cannot run offline): it checks its exact
# command line and makes the SSH connections the real one makes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
python=${ANSIBLE_TEST_PYTHON_INTERPRETER:-$(command -v python3)}
collection=${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/nixie/metal
ctl=nixie-na-ctl-$$
tgt=nixie-na-tgt-$$
work=$(mktemp -d)
chmod 755 "$work"
agent_pid=

cleanup() {
    if [ -s "$work/sshd.pid" ]; then kill "$(cat "$work/sshd.pid")" 2>/dev/null || true; fi
    if [ -s "$work/master.pid" ]; then kill "$(cat "$work/master.pid")" 2>/dev/null || true; fi
    if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; fi
    for pid_file in "$work/relet.pid" "$work/dnsmasq.pid"; do
        if [ -s "$pid_file" ]; then kill "$(cat "$pid_file")" 2>/dev/null || true; fi
    done
    ip netns del "$ctl" 2>/dev/null || true
    ip netns del "$tgt" 2>/dev/null || true
    if [ -n "${NIXIE_KEEP_WORK:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

if [ ! -x /usr/sbin/sshd ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server > "$work/apt.log" 2>&1 \
        || { cat "$work/apt.log" >&2; exit 1; }
fi

ansible-doc -t role nixie.metal.nixos_anywhere > "$work/doc.txt"
grep -q "nixos_anywhere_expected_host_keys" "$work/doc.txt"

# Keys: the target's host key, another machine's host key, the controller's login key.
mkdir -p "$work/target" "$work/bin" "$work/keys" "$work/extra/etc" "$work/store/abc-nixos-system-target1" "$work/store/old-system"
ssh-keygen -q -t ed25519 -N '' -C target-host-key -f "$work/target/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C other-host-key -f "$work/target/other_ed25519"
ssh-keygen -q -t ed25519 -N '' -C controller -f "$work/id_ed25519"
cp "$work/id_ed25519.pub" "$work/authorized_keys"
head -c 64 /dev/urandom > "$work/keys/a.key"
head -c 64 /dev/urandom > "$work/keys/b.key"
echo "from the extra files" > "$work/extra/etc/nixie-extra"
printf 'NAME=NixOS\nID=nixos\nVERSION_ID="25.11"\n' > "$work/os-release"
# A stand-in site flake (NixOS cannot be built offline), in the shape the role builds and evaluates:
# target1's system (a directory holding the agent of its nixie-metal input and a marker of its nixpkgs
# input), its disko script (a shell script that leaves a mark where it runs) and its disko disks (a
# block device node in the target's private /run, see start-sshd.sh). Like a site on a new controller,
# it has no flake.lock, and its nixie-metal input is the example's GitHub URL, which cannot be reached
# from the controller's namespace (no route out): every evaluation and build must replace that input.
# Real nix 2.8 with a private store in $work/nixroot, offline.
mkdir -p "$work/flake" "$work/flake-without-disko" "$work/nixpkgs" "$work/nixpkgs-b" "$work/nixroot/conf" "$work/agent"
for pair in "nixpkgs a" "nixpkgs-b b"; do
    read -r directory marker <<< "$pair"
    printf '{ description = "nixie.metal test stand-in for nixpkgs"; outputs = _: { marker = "%s"; }; }\n' "$marker" \
        > "$work/$directory/flake.nix"
done
system=$("$python" -c 'import platform; print(platform.machine() + "-linux")')
cat > "$work/flake/flake.nix" <<NIX
{
  description = "nixie.metal test stand-in: target1's system, disko script and disks";
  inputs.nixpkgs.url = "path:$work/nixpkgs";
  inputs.nixie-metal = {
    url = "github:nixie-metal/nixie.metal";
    inputs.nixpkgs.follows = "nixpkgs";
  };
  outputs = { nixpkgs, nixie-metal, ... }: {
    nixosConfigurations.target1.config = {
      system.build.toplevel = builtins.derivation {
        name = "nixos-system-target1-test";
        system = "$system";
        builder = "/bin/sh";
        args = [ "-c" "/bin/mkdir \$out && /bin/cp \${nixie-metal}/nix/agent/nixie-agent \$out/agent && echo \${nixpkgs.marker} > \$out/nixpkgs-marker && echo $system > \$out/system" ];
      };
      system.build.diskoScript = builtins.derivation {
        name = "disko-target1-test";
        system = "$system";
        builder = "/bin/sh";
        args = [ "-c" "echo '#!/bin/sh' > \$out && echo 'echo disko ran > $work/disko-ran' >> \$out && /bin/chmod 755 \$out" ];
      };
      disko.devices.disk.main.device = "/run/nixie-test-disk";
    };
  };
}
NIX
cat > "$work/flake-without-disko/flake.nix" <<'NIX'
{
  description = "nixie.metal test stand-in: a configuration without disko";
  outputs = _: { nixosConfigurations.target1.config.networking.hostName = "target1"; };
}
NIX
export NIX_STORE_DIR=$work/nixroot/store NIX_STATE_DIR=$work/nixroot/var NIX_LOG_DIR=$work/nixroot/log \
    NIX_CONF_DIR=$work/nixroot/conf XDG_CACHE_HOME=$work/nixroot/cache
export NIX_CONFIG=$'build-users-group =\nsubstituters =\nsandbox = false\n'
unset NIX_REMOTE
nix_eval() { ip netns exec "$ctl" nix --extra-experimental-features 'nix-command flakes' eval --raw --no-write-lock-file "$@"; }
# What the role's copy of the running collection's flake holds (its flake.nix and nix/), to compute on
# our own the paths the role must build.
cp -a "$collection/flake.nix" "$collection/nix" "$work/agent/"

# Posing as the Nix package of nixos-anywhere, whose store path carries its version.
for version in 1.13.0 1.6.0; do
    install -D -m 755 /dev/null "$work/nix/store/0000000000000000000000000000000$version-nixos-anywhere-$version/bin/nixos-anywhere"
done
# The stand-in runs with the test's Python, whatever "python" is on PATH.
sed "1s|.*|#!$python|" "$here/files/nixos-anywhere" > "$work/bin/nixos-anywhere"
chmod 755 "$work/bin/nixos-anywhere"
for version in 1.13.0 1.6.0; do
    cp "$work/bin/nixos-anywhere" "$work/nix/store/0000000000000000000000000000000$version-nixos-anywhere-$version/bin/nixos-anywhere"
done

cat > "$work/sshd_config" <<CONFIG
Port 22
Port 2222
ListenAddress 0.0.0.0
ListenAddress ::
AuthorizedKeysFile $work/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
LogLevel VERBOSE
CONFIG

ip netns add "$ctl"
ip netns add "$tgt"
ip link add na0 netns "$ctl" type veth peer name na1 netns "$tgt"
ip -n "$tgt" link set na1 address 52:54:00:aa:bb:01
for pair in "$ctl na0 198.51.100.1/24 fd00:1::1/64" "$tgt na1 198.51.100.2/24 fd00:1::2/64"; do
    read -r ns link address4 address6 <<< "$pair"
    ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$link.accept_dad=0"
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$address4" dev "$link"
    ip -n "$ns" addr add "$address6" dev "$link" nodad
    ip -n "$ns" link set "$link" up
done

# start_sshd HOSTKEY [LOG]: sshd in tgt, in a private mount namespace with its own /run (holding
# /run/current-system) and the test's os-release over the machine's; it logs to LOG (default sshd.log).
cat > "$work/start-sshd.sh" <<SCRIPT
#!/usr/bin/env bash
set -euo pipefail
if [ -s "$work/sshd.pid" ]; then
    kill "\$(cat "$work/sshd.pid")" 2>/dev/null || true
    for _ in \$(seq 50); do ip netns exec "$tgt" ss -Htln 'sport = :22' | grep -q . || break; sleep 0.1; done
fi
ip netns exec "$tgt" unshare --mount --propagation private sh -c '
    mount -t tmpfs tmpfs /run && mkdir -m 755 /run/sshd && ln -s "\$1/store/old-system" /run/current-system &&
    mknod /run/nixie-test-disk b 7 200 &&
    mount --bind "\$1/os-release" "\$(readlink -f /etc/os-release)" &&
    exec /usr/sbin/sshd -D -e -f "\$1/sshd_config" -h "\$2"' sh "$work" "\$1" >> "\${2:-$work/sshd.log}" 2>&1 < /dev/null &
echo \$! > "$work/sshd.pid"
for _ in \$(seq 100); do
    ip netns exec "$tgt" ss -Htln 'sport = :22' | grep -q . && ip netns exec "$tgt" ss -Htln 'sport = :2222' | grep -q . && exit 0
    sleep 0.1
done
echo "sshd did not start:" >&2; cat "\${2:-$work/sshd.log}" >&2; exit 1
SCRIPT
chmod 755 "$work/start-sshd.sh"
"$work/start-sshd.sh" "$work/target/host_ed25519"

cat > "$work/inventory.yml" <<INVENTORY
nixie:
  hosts:
    target1:
      # Unreachable on purpose: every task of the role must run on the controller.
      ansible_connection: ssh
      ansible_host: 192.0.2.1
      ansible_ssh_common_args: -o ConnectTimeout=2
      nixie_mac: "52:54:00:aa:bb:01"
      nixie_flake_attr: target1
      nixie_arch: x86_64
INVENTORY

host_key=$(cat "$work/target/host_ed25519.pub")
other_key=$(cat "$work/target/other_ed25519.pub")
fingerprint() { ssh-keygen -l -f "$1" | awk '{print $2}'; }
host_fp=$(fingerprint "$work/target/host_ed25519.pub")
other_fp=$(fingerprint "$work/target/other_ed25519.pub")
standin_log=$work/standin.jsonl
export NIXOS_ANYWHERE_STANDIN_LOG=$standin_log NIXOS_ANYWHERE_STANDIN_MNT=$work/mnt
export ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_NOCOLOR=1
unset SSH_AUTH_SOCK

# play NAME VARS_JSON [ansible-playbook options...]: runs case.yml in ctl with the role's variables,
# under the command in play_prefix when set.
play_prefix=()
play() {
    local name=$1 vars=$2; shift 2
    rm -f "$standin_log" "$work/$name.outcome"
    "$python" -c 'import json, sys; v = json.loads(sys.argv[1]); v["case_outcome_file"] = sys.argv[2]; print(json.dumps(v))' \
        "$vars" "$work/$name.outcome" > "$work/$name.vars.json"
    echo "=== case $name"
    local started=$EPOCHREALTIME
    "${play_prefix[@]}" ip netns exec "$ctl" ansible-playbook -i "$work/inventory.yml" -e "ansible_python_interpreter=$python" \
        -e "@$work/$name.vars.json" "$@" "$here/case.yml" > "$work/$name.log" 2>&1 || { cat "$work/$name.log"; return 1; }
    # The time per case goes to CI's log: the target is the suite's longest.
    play_seconds=$("$python" -c 'import sys; print("%.1f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$started" "$EPOCHREALTIME")
    echo "=== case $name: $play_seconds s"
}
# play_batch NAME CASE VARS_JSON [CASE VARS_JSON...]: runs case.yml once for several cases that need no stand-in run
# and no environment of their own, so that ansible-playbook starts once for them all. Each case is a host of its own,
# target1-CASE: the same machine as target1, the case's variables as host variables, its own outcome file (checked on
# its own, as play's). One host at a time (forks 1): the cases' nix calls share a private store without a daemon, and
# two nix 2.8 processes adding the same source to it race on its lock.
play_batch() {
    local name=$1; shift
    local -a cases=() pairs=("$@")
    while [ $# -gt 0 ]; do cases+=("$1"); shift 2; done
    rm -f "$standin_log"
    for case_name in "${cases[@]}"; do rm -f "$work/$case_name.outcome"; ln -sfn "$name.log" "$work/$case_name.log"; done
    "$python" - "$work" "${pairs[@]}" > "$work/$name.inventory.yml" <<'PY'
import json, sys
import yaml
work, pairs = sys.argv[1], sys.argv[2:]
with open(work + "/inventory.yml", encoding="utf-8") as handle:
    machine = yaml.safe_load(handle)["nixie"]["hosts"]["target1"]
hosts = {"target1-" + case: dict(machine, **json.loads(given), case_outcome_file="%s/%s.outcome" % (work, case))
         for case, given in zip(pairs[0::2], pairs[1::2])}
json.dump({"nixie": {"hosts": hosts}}, sys.stdout)
PY
    echo "=== cases $name: ${cases[*]}"
    local started=$EPOCHREALTIME
    ANSIBLE_FORKS=1 ip netns exec "$ctl" ansible-playbook -i "$work/$name.inventory.yml" -e "ansible_python_interpreter=$python" \
        "$here/case.yml" > "$work/$name.log" 2>&1 || { cat "$work/$name.log"; return 1; }
    echo "=== cases $name: $("$python" -c 'import sys; print("%.1f s" % (float(sys.argv[2]) - float(sys.argv[1])))' "$started" "$EPOCHREALTIME")"
}
check() { "$python" "$here/check_case.py" "$@" || { cat "${1%.outcome}.log" 2>/dev/null; exit 1; }; }
# -r: the target's root too; entering a mount namespace alone resets it to the namespace's, which is not this one when
# the test runs in a chroot (a container build, the fresh-machine check).
target_file() { nsenter -t "$(cat "$work/sshd.pid")" -m -r "$@"; }

# The control: as it is, the site flake cannot be evaluated here (nix would fetch nixie-metal from GitHub).
if nix_eval "$work/flake#nixosConfigurations.target1.config.disko.devices.disk.main.device" > "$work/control.log" 2>&1; then
    echo "the stand-in site evaluated without its nixie-metal input replaced" >&2; exit 1
fi
grep -q "api.github.com/repos/nixie-metal/nixie.metal" "$work/control.log" || { cat "$work/control.log" >&2; exit 1; }
# The paths the role must build, computed here: the flake's, with the running collection's flake as nixie-metal.
system_attr="$work/flake#nixosConfigurations.target1.config.system.build"
for output in toplevel diskoScript; do
    nix_eval --override-input nixie-metal "path:$work/agent" "$system_attr.$output.outPath" > "$work/$output.path" \
        2> "$work/$output.log" || { cat "$work/$output.log" >&2; exit 1; }
done
built_system=$(cat "$work/toplevel.path")
built_disko=$(cat "$work/diskoScript.path")
case $built_system in "$NIX_STORE_DIR"/*-nixos-system-target1-test) ;; *) echo "evaluated $built_system" >&2; exit 1;; esac
[ ! -e "$built_system" ] || { echo "$built_system was built before the test" >&2; exit 1; }

# Every case builds on the controller (the role's default, nixos_anywhere_build controller) unless it says flake.
base=$("$python" -c 'import json, sys; print(json.dumps({
    "nixos_anywhere_flake": sys.argv[1] + "/flake", "nixos_anywhere_target_host": "198.51.100.2",
    "nixos_anywhere_ssh_key": sys.argv[1] + "/id_ed25519", "nixos_anywhere_executable": sys.argv[1] + "/bin/nixos-anywhere",
    "nixos_anywhere_expected_host_keys": ["ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDnot+this+one other", sys.argv[2]],
    "nixos_anywhere_verify": False, "nixos_anywhere_reboot_timeout": 20, "nixos_anywhere_connect_timeout": 20}))' \
    "$work" "$host_key")
with() { "$python" -c 'import json, sys; v = json.loads(sys.argv[1]); v.update(json.loads(sys.argv[2])); print(json.dumps(v))' "$base" "$1"; }

# --- check mode: nothing is built, run or contacted; the command line is reported, with the store paths
# the build would produce (nix build --dry-run).
full_vars=$(with '{"nixos_anywhere_extra_files": "'"$work"'/extra",
    "nixos_anywhere_disk_encryption_keys": {"'"$work"'/remote/z.key": "'"$work"'/keys/b.key", "'"$work"'/remote/a.key": "'"$work"'/keys/a.key"},
    "nixos_anywhere_copy_host_keys": true, "nixos_anywhere_ssh_options": ["ServerAliveInterval=5"],
    "nixos_anywhere_extra_args": ["--no-substitute-on-destination"]}')
full_argv=$("$python" -c 'import json, sys; w, disko, system = sys.argv[1:]; print(json.dumps([w + "/bin/nixos-anywhere",
    "--store-paths", disko, system, "--target-host", "root@198.51.100.2", "-i", w + "/id_ed25519",
    "--phases", "disko,install,reboot", "--build-on", "local", "--extra-files", w + "/extra",
    "--disk-encryption-keys", w + "/remote/a.key", w + "/keys/a.key", "--disk-encryption-keys", w + "/remote/z.key", w + "/keys/b.key",
    "--copy-host-keys", "--ssh-option", "ServerAliveInterval=5", "--no-substitute-on-destination"]))' "$work" "$built_disko" "$built_system")
connections_before=$(grep -c "Connection from" "$work/sshd.log" || true)
echo "=== set-up: ${SECONDS} s"
play check_mode "$full_vars" --check
check "$work/check_mode.outcome" ok --argv "$full_argv" --standin-runs 0
grep -q "Would run, for target1: timeout --kill-after=30 3600 $work/bin/nixos-anywhere --store-paths $built_disko $built_system" "$work/check_mode.log"
[ "$(grep -c "Connection from" "$work/sshd.log" || true)" = "$connections_before" ] || { echo "check mode contacted the target" >&2; exit 1; }
[ ! -e "$built_system" ] || { echo "check mode built the system" >&2; exit 1; }
[ ! -e "$work/flake/flake.lock" ] || { echo "a flake.lock was written into the site" >&2; exit 1; }

# --- success over IPv4 with every option: the system and disko script built on the controller without the
# network, nixos-anywhere given them as --store-paths; the stand-in saw exactly this command line and its SSH
# steps landed: the built disko script ran on the target, and the machine runs the built system, whose agent is
# the running collection's, byte for byte.
export NIXOS_ANYWHERE_STANDIN_EXPECT
NIXOS_ANYWHERE_STANDIN_EXPECT=$("$python" -c 'import json, sys; print(json.dumps(json.loads(sys.argv[1])[1:]))' "$full_argv")
play ipv4_full "$full_vars"
check "$work/ipv4_full.outcome" ok --argv "$full_argv" --standin-runs 1
"$python" - "$work" "$built_disko" "$built_system" "$collection" <<'PY'
import json, os, stat, sys
w, disko, system, collection = sys.argv[1:]
marker = json.loads(open(w + "/mnt/nixos-anywhere-installed").read())
assert marker == {"store_paths": [disko, system], "copy_host_keys": True}, marker
assert open(w + "/disko-ran").read() == "disko ran\n"
assert open(system + "/agent", "rb").read() == open(collection + "/nix/agent/nixie-agent", "rb").read()
assert open(system + "/nixpkgs-marker").read() == "a\n"
assert open(w + "/mnt/etc/nixie-extra").read() == "from the extra files\n"
for name, local in (("a.key", "a.key"), ("z.key", "b.key")):
    assert open(w + "/remote/" + name, "rb").read() == open(w + "/keys/" + local, "rb").read(), name
    assert stat.S_IMODE(os.stat(w + "/remote/" + name).st_mode) == 0o600, name
result = json.load(open(w + "/ipv4_full.outcome"))["result"]
assert result["build"] == "controller" and result["system"] == system and result["disko_script"] == disko, result
assert result["pinned"] is True and int(result["pinned_ssh_calls"]) >= 5, result
assert result["host_key"] == open(w + "/target/host_ed25519.pub").read().split()[0] + " " + open(w + "/target/host_ed25519.pub").read().split()[1], result
PY
[ "$(target_file readlink -f /run/current-system)" = "$built_system" ]
[ ! -e "$work/flake/flake.lock" ]
grep -A1 "TASK \[nixie.metal.nixos_anywhere : Build the machine's system and disko script\]" "$work/ipv4_full.log" | grep -q "^changed:"
grep -A1 "TASK \[nixie.metal.nixos_anywhere : Run nixos-anywhere\]" "$work/ipv4_full.log" | grep -q "^changed:"
grep -q "changed=3 " "$work/ipv4_full.log"   # the build, the install and the outcome file, no scratch files

# --- nixos-anywhere --flake (nixos_anywhere_build flake): IPv6 in brackets, another port, the SSH agent instead of
# a key file, no reboot phase.
eval "$(ssh-agent -s -a "$work/agent.sock")" > /dev/null
agent_pid=$SSH_AGENT_PID
ssh-add -q "$work/id_ed25519"
v6_vars=$(with '{"nixos_anywhere_target_host": "[FD00:1::2]", "nixos_anywhere_port": 2222, "nixos_anywhere_ssh_key": "",
    "nixos_anywhere_phases": "disko,install", "nixos_anywhere_build": "flake"}')
v6_argv=$("$python" -c 'import json, sys; w = sys.argv[1]; print(json.dumps([w + "/bin/nixos-anywhere",
    "--flake", w + "/flake#target1", "--target-host", "root@fd00:1::2", "--ssh-port", "2222", "--phases", "disko,install"]))' "$work")
NIXOS_ANYWHERE_STANDIN_EXPECT=$("$python" -c 'import json, sys; print(json.dumps(json.loads(sys.argv[1])[1:]))' "$v6_argv")
rm -rf "${work:?}/mnt"
SSH_AUTH_SOCK=$work/agent.sock play ipv6_agent "$v6_vars"
check "$work/ipv6_agent.outcome" ok --argv "$v6_argv" --standin-runs 1
[ -e "$work/mnt/nixos-anywhere-installed" ]
grep -q "Accepted publickey for root from fd00:1::1" "$work/sshd.log"
kill "$agent_pid"; agent_pid=
unset NIXOS_ANYWHERE_STANDIN_EXPECT

# --- the key changes between the role's check and nixos-anywhere's connections: the pinned ssh refuses.
rm -rf "${work:?}/mnt"
NIXOS_ANYWHERE_STANDIN_BEFORE="$work/start-sshd.sh $work/target/other_ed25519" play key_swapped "$base"
check "$work/key_swapped.outcome" failed "nixos-anywhere failed (exit 1)" "Host key verification failed" --standin-runs 1
[ ! -e "$work/mnt/nixos-anywhere-installed" ]
"$work/start-sshd.sh" "$work/target/host_ed25519"

# --- the operator's own ssh configuration shares connections (ControlMaster auto, ControlPersist) and trusts a
# KnownHostsCommand that vouches for the impostor's key, and a master connection is already open to an impostor
# (another host key) at the target's address. The configuration is the one every ssh of the play reads,
# /etc/ssh/ssh_config, replaced in a private mount namespace (root's ~/.ssh is the machine's own). Every pinned
# login must make a connection of its own and refuse the impostor's key: nixos-anywhere's through the role's
# wrapper, and host_status's; the master stays open, and no session ever runs through it.
real_ssh=$(command -v ssh)
cat > "$work/operator_ssh_config" <<CONFIG
Host *
    ControlMaster auto
    ControlPath $work/cm-%r@%h:%p
    ControlPersist yes
    KnownHostsCommand $work/vouch.sh %H
CONFIG
printf '* %s\n' "$other_key" > "$work/vouched_known_hosts"
cat > "$work/vouch.sh" <<SCRIPT
#!/bin/sh
echo "\$*" >> "$work/vouch.log"
cat "$work/vouched_known_hosts"
SCRIPT
chmod 755 "$work/vouch.sh"
: > "$work/vouch.log"
cat > "$work/as-operator.sh" <<SCRIPT
#!/bin/sh
mount --bind "$work/operator_ssh_config" /etc/ssh/ssh_config && exec "\$@"
SCRIPT
chmod 755 "$work/as-operator.sh"
as_operator() { unshare --mount --propagation private "$work/as-operator.sh" "$@"; }
# Run by the stand-in before its first connection, after the role's checks of the real target: the impostor
# takes the address, and the operator's ssh (as the operator once used it, accepting any key) opens the master.
cat > "$work/open-impostor-master.sh" <<SCRIPT
#!/usr/bin/env bash
set -euo pipefail
: > "$work/impostor.log"
"$work/start-sshd.sh" "$work/target/other_ed25519" "$work/impostor.log"
"$real_ssh" -i "$work/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -f -N root@198.51.100.2 < /dev/null >> "$work/master.log" 2>&1
"$real_ssh" -O check root@198.51.100.2 2>&1 | tee -a "$work/master.log" | sed -n 's/^Master running (pid=\([0-9]*\)).*/\1/p' > "$work/master.pid"
[ -s "$work/master.pid" ] || { echo "no master connection to the impostor" >&2; cat "$work/master.log" >&2; exit 1; }
wc -l < "$work/vouch.log" > "$work/vouch.before"
SCRIPT
chmod 755 "$work/open-impostor-master.sh"
impostor_count() { grep -c "$1" "$work/impostor.log" || true; }
master_still_open() {
    if ! as_operator ip netns exec "$ctl" "$real_ssh" -O check root@198.51.100.2 > "$work/master-check.log" 2>&1 \
        || ! grep -q "Master running (pid=$(cat "$work/master.pid"))" "$work/master-check.log"; then
        echo "the master connection to the impostor is gone:" >&2; cat "$work/master-check.log" >&2; exit 1
    fi
}
rm -rf "${work:?}/mnt"
play_prefix=(as_operator)
NIXOS_ANYWHERE_STANDIN_BEFORE=$work/open-impostor-master.sh play control_master "$base"
play_prefix=()
check "$work/control_master.outcome" failed "nixos-anywhere failed (exit 1)" "Host key verification failed" --standin-runs 1
[ ! -e "$work/mnt/nixos-anywhere-installed" ]
# The impostor saw the master's connection and the refused one; only the master logged in, and no session ran.
connections=$(impostor_count "Connection from 198.51.100.1")
[ "$connections" -ge 2 ] || { echo "no new connection reached the impostor ($connections)" >&2; cat "$work/impostor.log" >&2; exit 1; }
[ "$(impostor_count "Accepted publickey")" = 1 ] || { echo "more than the master logged in to the impostor" >&2; exit 1; }
[ "$(impostor_count "Starting session")" = 0 ] || { echo "a session ran on the impostor" >&2; cat "$work/impostor.log" >&2; exit 1; }
[ "$(wc -l < "$work/vouch.log")" = "$(cat "$work/vouch.before")" ] || { echo "the KnownHostsCommand ran" >&2; exit 1; }
master_still_open
# host_status with the installer's key pinned: refused, over a new connection, the master untouched.
host_status_as_operator() {
    as_operator ip netns exec "$ctl" ansible localhost -i localhost, -c local -e "ansible_python_interpreter=$python" \
        -m nixie.metal.host_status -a '{"mac": "52:54:00:aa:bb:01", "address": "198.51.100.2", "ssh_key": "'"$work"'/id_ed25519",
        "expected_system": "'"$built_system"'"'"$1"'}' > "$work/$2.log" 2>&1
}
if host_status_as_operator ', "known_host_keys": ["'"$host_key"'"]' host_status_pinned; then
    echo "host_status accepted the impostor's host key" >&2; cat "$work/host_status_pinned.log" >&2; exit 1
fi
grep -q "is none of known_host_keys" "$work/host_status_pinned.log" || { cat "$work/host_status_pinned.log" >&2; exit 1; }
[ "$(impostor_count "Connection from 198.51.100.1")" = $((connections + 1)) ] || { echo "host_status made no connection of its own" >&2; exit 1; }
if [ "$(impostor_count "Accepted publickey")" != 1 ] || [ "$(impostor_count "Starting session")" != 0 ]; then
    echo "host_status logged in to the impostor" >&2; cat "$work/impostor.log" >&2; exit 1
fi
# Its accept-new login (no known keys) logs in to whoever holds the address, but over a connection of its own.
host_status_as_operator "" host_status_accept_new || { cat "$work/host_status_accept_new.log" >&2; exit 1; }
grep -q '"state": "other_system"' "$work/host_status_accept_new.log" || { cat "$work/host_status_accept_new.log" >&2; exit 1; }
[ "$(impostor_count "Connection from 198.51.100.1")" = $((connections + 2)) ] \
    || { echo "host_status's accept-new login rode on the master" >&2; cat "$work/impostor.log" >&2; exit 1; }
[ "$(wc -l < "$work/vouch.log")" = "$(cat "$work/vouch.before")" ] || { echo "the KnownHostsCommand ran" >&2; exit 1; }
master_still_open
as_operator ip netns exec "$ctl" "$real_ssh" -O exit root@198.51.100.2 2> /dev/null || true
kill "$(cat "$work/master.pid")" 2>/dev/null || true
rm -f "$work/master.pid"
"$work/start-sshd.sh" "$work/target/host_ed25519"

# --- nixos-anywhere fails (and no host keys to check: the role says so): the host fails with its output.
NIXOS_ANYWHERE_STANDIN_MODE=fail play failing "$(with '{"nixos_anywhere_expected_host_keys": []}')" -v
check "$work/failing.outcome" failed "nixos-anywhere failed (exit 1)" "disko failed: /dev/vda: no such device" --standin-runs 1
grep -q "host key NOT checked\|is not checked" "$work/failing.log"
# The disk guard's login without expected keys accepts any key, but is still a connection of its own.
grep -A1 "TASK \[nixie.metal.nixos_anywhere : Look for the disks on the machine\]" "$work/failing.log" \
    | grep -qF '"'"$real_ssh"'", "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "VerifyHostKeyDNS=no", "-o", "KnownHostsCommand=none"' \
    || { echo "the unpinned disk check lacks the options" >&2; cat "$work/failing.log" >&2; exit 1; }

# --- nixos-anywhere hangs: stopped after the timeout, well before the 30 s grace for SIGKILL.
# (The run's own duration, as the role measured it: the play around it is slow on a loaded machine.)
NIXOS_ANYWHERE_STANDIN_MODE=hang play timeout "$(with '{"nixos_anywhere_timeout": 4}')"
check "$work/timeout.outcome" failed "nixos-anywhere did not finish within 4 s" "Uploading install SSH keys" --standin-runs 1
elapsed=$("$python" -c 'import json, sys; h, m, s = json.load(open(sys.argv[1]))["result"]["elapsed"].split(":")
print(int(h) * 3600 + int(m) * 60 + float(s))' "$work/timeout.outcome")
"$python" -c 'import sys; sys.exit(not 4 <= float(sys.argv[1]) < 30)' "$elapsed" || { echo "the timed-out run took $elapsed s" >&2; exit 1; }
if pgrep -f "$work/bin/nixos-anywhere" > /dev/null; then echo "the hung stand-in survived" >&2; exit 1; fi

# --- Refusals before anything is contacted: no SSH connection reaches the target, the stand-in never runs. One
# run of the play (play_batch), each case a host of its own with its own variables and its own checks.
# The executable is missing; wrong arguments; the disks of a flake without disko; a flake that cannot build the
# system (nix's error), an override of an input the flake does not have; arguments that do not fit the build on
# the controller, an override nixos-anywhere --flake cannot apply; nixos-anywhere 1.6.0, whose version is read from
# the store path of its package and which has no --build-on (the build on the controller passes it as local);
# options the phases would ignore, a disk key path the target's shell would split, an SSH option NIX_SSHOPTS would
# split (refused together); an encrypted -i key; hosts.json's "system" naming another system than the flake builds.
ssh-keygen -q -t ed25519 -N 'secret' -C encrypted -f "$work/encrypted_ed25519"
connections_before=$(grep -c "Connection from" "$work/sshd.log" || true)
play_batch refusals \
    missing "$(with '{"nixos_anywhere_executable": "/nonexistent/nixos-anywhere"}')" \
    bad_phase "$(with '{"nixos_anywhere_phases": "disko,instal"}')" \
    disk_eval_fails "$(with '{"nixos_anywhere_flake": "'"$work"'/flake-without-disko", "nixos_anywhere_build": "flake"}')" \
    build_fails "$(with '{"nixos_anywhere_flake": "'"$work"'/flake-without-disko"}')" \
    override_typo "$(with '{"nixos_anywhere_override_inputs": {"nixpgks": "path:'"$work"'/nixpkgs-b"}}')" \
    build_refusals "$(with '{"nixos_anywhere_build_on": "remote", "nixos_anywhere_extra_args": ["--disko-mode", "mount"]}')" \
    flake_override "$(with '{"nixos_anywhere_build": "flake", "nixos_anywhere_override_inputs": {"nixpkgs": "path:/x"}}')" \
    too_old "$(with '{"nixos_anywhere_executable": "'"$(ls -d "$work"/nix/store/*-nixos-anywhere-1.6.0)"'/bin/nixos-anywhere"}')" \
    ignored_options "$(with '{"nixos_anywhere_phases": "install,reboot",
        "nixos_anywhere_disk_encryption_keys": {"/tmp/my key": "'"$work"'/keys/a.key"},
        "nixos_anywhere_ssh_options": ["ProxyCommand=ssh -W %h:%p bastion"]}')" \
    extra_files_ignored "$(with '{"nixos_anywhere_phases": "disko", "nixos_anywhere_extra_files": "'"$work"'/extra",
        "nixos_anywhere_copy_host_keys": true}')" \
    encrypted_key "$(with '{"nixos_anywhere_ssh_key": "'"$work"'/encrypted_ed25519"}')" \
    expected_mismatch "$(with '{"nixos_anywhere_expected_system": "'"$work"'/store/abc-nixos-system-target1"}')"
check "$work/missing.outcome" failed "/nonexistent/nixos-anywhere not found on the controller" "Install nixos-anywhere" --standin-runs 0
check "$work/bad_phase.outcome" failed \
    "Invalid arguments for target1-bad_phase: nixos_anywhere_phases must name some of kexec, disko, install, reboot: disko,instal." \
    --standin-runs 0
check "$work/disk_eval_fails.outcome" failed "Could not evaluate the disks of $work/flake-without-disko#target1" \
    "nix eval of $work/flake-without-disko#nixosConfigurations.target1.config.disko.devices.disk failed" \
    "nixie_disks" --standin-runs 0
check "$work/build_fails.outcome" failed "Could not build the system and the disko script of $work/flake-without-disko#target1 on the controller" \
    "does not provide attribute" "Nothing was contacted" --standin-runs 0
check "$work/override_typo.outcome" failed "override_inputs names nixpgks, which the flake has no input of" --standin-runs 0
check "$work/build_refusals.outcome" failed "nixos_anywhere_build_on is only for nixos_anywhere_build flake" \
    "holds --disko-mode, which does not fit nixos_anywhere_build controller" --standin-runs 0
check "$work/flake_override.outcome" failed "nixos_anywhere_override_inputs cannot be applied with nixos_anywhere_build flake" \
    --standin-runs 0
check "$work/too_old.outcome" failed "is nixos-anywhere 1.6.0, too old for this command line (--target-host needs 1.6.0, --build-on needs 1.7.0)" \
    --standin-runs 0
check "$work/ignored_options.outcome" failed "Invalid arguments for target1-ignored_options" \
    "nixos_anywhere_disk_encryption_keys are only used by the disko phase" "'/tmp/my key' on the target may hold only" \
    "holds whitespace: nixos-anywhere joins the SSH options with spaces into NIX_SSHOPTS" --standin-runs 0
check "$work/extra_files_ignored.outcome" failed "nixos_anywhere_extra_files is only used by the install phase" \
    "nixos_anywhere_copy_host_keys is only used by the install phase" --standin-runs 0
check "$work/encrypted_key.outcome" failed "cannot be read without a passphrase" "load the key into ssh-agent" --standin-runs 0
check "$work/expected_mismatch.outcome" failed "builds $built_system, but nixos_anywhere_expected_system" \
    "is $work/store/abc-nixos-system-target1" "Nothing was contacted" --standin-runs 0
[ "$(grep -c "Connection from" "$work/sshd.log" || true)" = "$connections_before" ] \
    || { echo "a refusal contacted the target" >&2; cat "$work/refusals.log" >&2; exit 1; }
grep -q "WARNING: Could not tell which version $work/bin/nixos-anywhere is" "$work/ipv4_full.log"

# --- Refusals after the target is contacted, before anything is sent (one run of the play, as above).
# The target offers another host key than the installer reported: nothing is sent, the stand-in never runs.
# The disk guard: the disks the flake's disko configuration names (evaluated by nix, as in every case above) are
# looked for on the machine over the pinned SSH; a missing one stops the host before nixos-anywhere runs, naming
# the path and what /dev/disk/by-id holds there.
play_batch contacted \
    mismatch "$(with '{"nixos_anywhere_expected_host_keys": ["'"$other_key"'"]}')" \
    disk_missing "$(with '{"nixos_anywhere_disks": ["/run/nixie-test-disk", "/dev/disk/by-id/nvme-nixie-absent"]}')"
check "$work/mismatch.outcome" failed "Host key mismatch" "$host_fp" "$other_fp" "Nothing was sent" --standin-runs 0
check "$work/disk_missing.outcome" failed "target1-disk_missing (198.51.100.2) has no block device /dev/disk/by-id/nvme-nixie-absent" \
    "/dev/disk/by-id there holds:" "nothing was partitioned" --standin-runs 0

# --- kexec with the SSH port off 22: nixos-anywhere reconnects on the post-kexec port (22, the stock kexec
# image's), and the pinned known_hosts names the host there too. The stand-in retries as the real one.
kexec_argv=$("$python" -c 'import json, sys; w, na = sys.argv[1:]; print(json.dumps([na,
    "--flake", w + "/flake#target1", "--target-host", "root@198.51.100.2", "-i", w + "/id_ed25519",
    "--ssh-port", "2222", "--post-kexec-ssh-port", "22", "--phases", "kexec,disko,install"]))' "$work" \
    "$(ls -d "$work"/nix/store/*-nixos-anywhere-1.13.0)/bin/nixos-anywhere")
rm -rf "${work:?}/mnt"
on_22_before=$(grep -c "on 198.51.100.2 port 22 " "$work/sshd.log" || true)
play kexec_port "$(with '{"nixos_anywhere_port": 2222, "nixos_anywhere_phases": "kexec,disko,install", "nixos_anywhere_timeout": 20,
    "nixos_anywhere_build": "flake",
    "nixos_anywhere_executable": "'"$(ls -d "$work"/nix/store/*-nixos-anywhere-1.13.0)"'/bin/nixos-anywhere"}')"
check "$work/kexec_port.outcome" ok --argv "$kexec_argv" --standin-runs 1
[ -e "$work/mnt/nixos-anywhere-installed" ]
# Everything before the kexec went to port 2222; the stand-in's reconnection after it, to port 22.
[ "$(grep -c "on 198.51.100.2 port 22 " "$work/sshd.log" || true)" -gt "$on_22_before" ] \
    || { echo "nothing connected to port 22 after the kexec" >&2; exit 1; }
if grep -q "WARNING: Could not tell which version" "$work/kexec_port.log"; then echo "the 1.13.0 package was not recognised" >&2; exit 1; fi

# --- without kexec nixos-anywhere logs in as root whatever the user: so do the role's checks (nobody cannot log in).
play other_user "$(with '{"nixos_anywhere_target_user": "nobody"}')"
check "$work/other_user.outcome" ok --standin-runs 1
grep -q '"--target-host", "nobody@198.51.100.2"' "$work/other_user.outcome"

# --- nixos-anywhere's own exit 127 (the disko script missing on the target) is a failure with its output,
# not "could not be started".
NIXOS_ANYWHERE_STANDIN_MODE=no-disko play exit127 "$base"
check "$work/exit127.outcome" failed "nixos-anywhere failed (exit 127)" "was not found" "Formatting hard drive with disko" --standin-runs 1

# --- after the reboot, host_status must find the installed system: with the build on the controller, the system
# built (and the user's own override of nixpkgs in it); with nixos-anywhere --flake, the toplevel host_status
# evaluates itself, without the network and without a flake.lock (the running collection's agent as nixie-metal).
verify_vars=$(with '{"nixos_anywhere_verify": true, "nixos_anywhere_copy_host_keys": true,
    "nixos_anywhere_override_inputs": {"nixpkgs": "path:'"$work"'/nixpkgs-b"}}')
play verify "$verify_vars"
check "$work/verify.outcome" ok --standin-runs 1
system_b=$(target_file readlink -f /run/current-system)
"$python" - "$work/verify.outcome" "$system_b" "$built_system" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))["result"]
assert result["state"] == "installed" and result["current_system"] == sys.argv[2] == result["system"], result
assert sys.argv[2] != sys.argv[3] and open(sys.argv[2] + "/nixpkgs-marker").read() == "b\n", sys.argv[2:]
PY
NIXOS_ANYWHERE_STANDIN_SYSTEM=$built_system play verify_flake "$(with '{"nixos_anywhere_verify": true,
    "nixos_anywhere_copy_host_keys": true, "nixos_anywhere_build": "flake"}')"
check "$work/verify_flake.outcome" ok --standin-runs 1
grep -q '"state": "installed"' "$work/verify_flake.outcome"
# host_status on its own (as the provision playbook asks before anything is woken): the machine runs NixOS;
# the system its flake builds is evaluated without the network and without a flake.lock.
ip netns exec "$ctl" ansible localhost -i localhost, -c local -e "ansible_python_interpreter=$python" -m nixie.metal.host_status \
    -a '{"mac": "52:54:00:aa:bb:01", "address": "198.51.100.2", "flake": "'"$work"'/flake", "attribute": "target1",
         "ssh_key": "'"$work"'/id_ed25519"}' > "$work/host_status.log" 2>&1 || { cat "$work/host_status.log"; exit 1; }
grep -q '"expected_system": "'"$built_system"'"' "$work/host_status.log" || { cat "$work/host_status.log"; exit 1; }
grep -q '"state": "installed"' "$work/host_status.log" || { cat "$work/host_status.log"; exit 1; }
[ ! -e "$work/flake/flake.lock" ] || { echo "a flake.lock was written into the site" >&2; exit 1; }
NIXOS_ANYWHERE_STANDIN_SYSTEM=$work/store/old-system play verify_other "$(with '{"nixos_anywhere_verify": true,
    "nixos_anywhere_copy_host_keys": true, "nixos_anywhere_build": "flake",
    "nixos_anywhere_expected_system": "'"$work"'/store/abc-nixos-system-target1"}')"
check "$work/verify_other.outcome" failed "is other_system, not installed" "$work/store/old-system" --standin-runs 1

# --- after the reboot the installed system comes back at another address, and is found again by its MAC. The site's
# DHCP server, real dnsmasq in ctl on na0, leases by client-id (dnsmasq's default). The target holds only what it leases
# (its static addresses go, and ctl forgets its neighbours), so only its lease can answer the ARP sweep. The installer
# (busybox udhcpc) asks with one client-id; the stand-in's reboot takes that address off the target without a RELEASE
# (a rebooting machine sends none) and, 6 s later, the installed system asks with another client-id (RFC 4361, as
# NixOS does from its new machine-id) and gets another address, where sshd answers. The role must end installed, with
# the new address in its result, well before its reboot timeout of 120 s.
ip -n "$tgt" addr flush dev na1
ip -n "$ctl" neigh flush dev na0
ip netns exec "$ctl" dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 --bind-interfaces --interface=na0 \
    --except-interface=lo --dhcp-authoritative --no-ping --dhcp-range=198.51.100.100,198.51.100.199,255.255.255.0,10m \
    --dhcp-leasefile="$work/dnsmasq.leases" --pid-file="$work/dnsmasq.pid" --log-dhcp --log-facility="$work/dnsmasq.log" &
for _ in $(seq 50); do [ -s "$work/dnsmasq.pid" ] && break; sleep 0.1; done
[ -s "$work/dnsmasq.pid" ] || { echo "dnsmasq did not start" >&2; cat "$work/dnsmasq.log" >&2; exit 1; }
cat > "$work/udhcpc.sh" <<SCRIPT
#!/bin/sh
case "\$1" in bound|renew) ip addr add "\$ip/\${mask:-24}" dev "\$interface" && echo "\$ip" > "$work/leased";; esac
exit 0
SCRIPT
chmod 755 "$work/udhcpc.sh"
# lease CLIENT_ID: one DHCP lease for the target with that client-id (option 61), configured on na1; prints the address.
lease() {
    rm -f "$work/leased"
    ip netns exec "$tgt" busybox udhcpc -f -q -n -t 3 -T 1 -i na1 -s "$work/udhcpc.sh" -x "0x3d:$1" >> "$work/udhcpc.log" 2>&1 \
        || { cat "$work/udhcpc.log" "$work/dnsmasq.log" >&2; return 1; }
    cat "$work/leased"
}
installer_id=ff00000001000100000001
installed_id=ff00000002000100000002
cat > "$work/reboot.sh" <<SCRIPT
#!/usr/bin/env bash
# The stand-in's reboot: the installer's address leaves the target; with come-back, the installed system leases anew.
set -euo pipefail
ip -n "$tgt" -4 addr flush dev na1
if [ "\$1" = come-back ]; then
    ( sleep 6; ip netns exec "$tgt" busybox udhcpc -f -q -n -t 5 -T 1 -i na1 -s "$work/udhcpc.sh" -x "0x3d:$installed_id" ) \
        > "$work/relet.log" 2>&1 < /dev/null &
    echo \$! > "$work/relet.pid"
fi
SCRIPT
chmod 755 "$work/reboot.sh"
installer_ip=$(lease "$installer_id")
standin_system=$work/store/abc-nixos-system-target1
refind_vars() {
    with '{"nixos_anywhere_target_host": "'"$installer_ip"'", "nixos_anywhere_phases": "install,reboot", "nixos_anywhere_build": "flake",
        "nixos_anywhere_copy_host_keys": true, "nixos_anywhere_verify": true, "nixos_anywhere_expected_system": "'"$standin_system"'",
        "nixos_anywhere_reboot_timeout": '"$1"'}'
}
NIXOS_ANYWHERE_STANDIN_SYSTEM=$standin_system NIXOS_ANYWHERE_STANDIN_REBOOT="$work/reboot.sh come-back" \
    play refind "$(refind_vars 120)"
check "$work/refind.outcome" ok --standin-runs 1
installed_ip=$(cat "$work/leased")
# Found in seconds after the reboot (6 s of "booting", partly spent by the role's own tasks), the play well within the timeout.
"$python" - "$work/refind.outcome" "$installer_ip" "$installed_ip" "$play_seconds" <<'PY'
import json, sys
path, installer_ip, installed_ip, seconds = sys.argv[1:]
result = json.load(open(path))["result"]
assert installer_ip != installed_ip, (installer_ip, installed_ip)
assert result["state"] == "installed" and result["ip"] == installed_ip and result["address_source"] in ("arp", "neighbour"), result
assert float(result["waited"]) < 30, "host_status looked for %s s" % result["waited"]
assert float(seconds) < 60, "the case took %s s, the reboot timeout is 120 s" % seconds
PY
# Both leases are dnsmasq's, one per client-id, for the one MAC; host_status's login reached the new address.
grep -q " 52:54:00:aa:bb:01 $installer_ip .* ff:00:00:00:01:00:01:00:00:00:01$" "$work/dnsmasq.leases" || { cat "$work/dnsmasq.leases" >&2; exit 1; }
grep -q " 52:54:00:aa:bb:01 $installed_ip .* ff:00:00:00:02:00:01:00:00:00:02$" "$work/dnsmasq.leases" || { cat "$work/dnsmasq.leases" >&2; exit 1; }
grep -q "Connection from 198.51.100.1 port [0-9]* on $installed_ip port 22" "$work/sshd.log" || { echo "nothing logged in at $installed_ip" >&2; exit 1; }

# --- the MAC never comes back after the reboot: the host fails within its reboot timeout, naming itself and its MAC.
rm -f "$work/relet.pid"
ip -n "$tgt" -4 addr flush dev na1
[ "$(lease "$installer_id")" = "$installer_ip" ] || { echo "the installer's client-id got another lease" >&2; exit 1; }
ip -n "$ctl" neigh flush dev na0   # the installed system's address of the case before is not this machine's past
NIXOS_ANYWHERE_STANDIN_SYSTEM=$standin_system NIXOS_ANYWHERE_STANDIN_REBOOT="$work/reboot.sh stay-down" \
    play refind_lost "$(refind_vars 8)"
check "$work/refind_lost.outcome" failed \
    "The installed system of target1 (MAC 52:54:00:aa:bb:01) was not found by its MAC and at its installer's address $installer_ip within 8 s" \
    "$installer_ip: no answer" "52:54:00:aa:bb:01: no address found for it (neighbour table, ARP sweep)" --standin-runs 1
# Given up once the reboot timeout is over: after the round that ends past it (a look at the old address, a sweep: 4 s).
"$python" - "$work/refind_lost.outcome" "$play_seconds" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))["result"]
assert result["state"] == "absent" and result["ip"] is None, result
assert 8 <= float(result["waited"]) < 8 + 6, "host_status looked for %s s with a reboot timeout of 8 s" % result["waited"]
assert float(sys.argv[2]) < 60, "the case took %s s with a reboot timeout of 8 s" % sys.argv[2]
PY
echo "=== total: ${SECONDS} s"
echo "ok role_nixos_anywhere"
