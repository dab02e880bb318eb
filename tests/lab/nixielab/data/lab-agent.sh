#!/bin/sh
# Minimal phone-home agent for the lab (stand-in until nix/agent/nixie-agent exists).
# Reads nixie.api= nixie.token= nixie.mac= from /proc/cmdline, POSTs JSON with busybox wget.
read -r cmdline < /proc/cmdline
for w in $cmdline; do
  case "$w" in
    nixie.api=*) api="${w#nixie.api=}" ;;
    nixie.token=*) token="${w#nixie.token=}" ;;
    nixie.mac=*) mac="${w#nixie.mac=}" ;;
  esac
done
[ -n "$api" ] || { echo "lab-agent: no nixie.api= on the kernel command line"; exit 2; }
ip="$(ip -4 -o addr show scope global | awk '{print $4}' | head -n1)"
body="{\"mac\":\"$mac\",\"ip\":\"${ip%/*}\",\"agent\":\"nixielab\"}"
echo "lab-agent: POST $api/phone-home $body"
wget -q -O - --header "Authorization: Bearer $token" --header "Content-Type: application/json" \
  --post-data "$body" "$api/phone-home" && echo && echo "NIXIE-LAB: phoned home"
