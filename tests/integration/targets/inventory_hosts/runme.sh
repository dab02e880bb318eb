#!/usr/bin/env bash
# The inventory plugin as users meet it: ansible-inventory and ansible-doc on the
# shipped example, from another working directory, and on broken hosts.json files.
set -euo pipefail

# ansible-test runs a copy of this target; the collection itself is on the collections path.
collection_root=${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/nixie/metal
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The example, copied as a user would, and read from an unrelated directory.
cp -r "$collection_root/examples" "$work/site"
mkdir "$work/elsewhere"
(cd "$work/elsewhere" && ansible-inventory -i ../site/hosts.nixie.yml --list) > "$work/list.json"
(cd "$work/elsewhere" && ansible-inventory -i ../site/hosts.nixie.yml --graph) > "$work/graph.txt"
python3 check_inventory.py "$work/list.json" "$work/graph.txt" "$work/site/hosts.json"

ansible-doc -t inventory nixie.metal.hosts > "$work/doc.txt"
grep -q "Reads a .hosts.json. file in upstream Nixie's format" "$work/doc.txt"

# Broken files stop the run with the plugin's message and no traceback.
export ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED=true
expect_failure() {
  local name=$1 content=$2 expected=$3
  mkdir -p "$work/bad/$name"
  printf '%s' "$content" > "$work/bad/$name/hosts.json"
  printf 'plugin: nixie.metal.hosts\n' > "$work/bad/$name/hosts.nixie.yml"
  if ansible-inventory -i "$work/bad/$name/hosts.nixie.yml" --list > "$work/out.txt" 2>&1; then
    echo "FAIL $name: ansible-inventory succeeded on a broken hosts.json" >&2; cat "$work/out.txt" >&2; exit 1
  fi
  if ! grep -qF -- "$expected" "$work/out.txt"; then
    echo "FAIL $name: expected message not found: $expected" >&2; cat "$work/out.txt" >&2; exit 1
  fi
  if grep -q "Traceback" "$work/out.txt"; then
    echo "FAIL $name: a traceback reached the user" >&2; cat "$work/out.txt" >&2; exit 1
  fi
  echo "ok $name"
}
expect_failure invalid_json '{"a": {"mac_address": "bc:24:11:d0:28:34",}}' "hosts.json: not valid JSON at line 1, column"
expect_failure not_object '["a"]' "the top level must be a JSON object"
expect_failure empty '' "the file is empty"
expect_failure missing_mac '{"a": {}}' "host 'a': \"mac_address\" is missing"
expect_failure bad_mac '{"a": {"mac_address": "bc:24"}}' "host 'a', field 'mac_address': 'bc:24' is not a MAC address"
expect_failure duplicate_mac '{"a": {"mac_address": "bc:24:11:d0:28:34"}, "b": {"mac_address": "BC-24-11-D0-28-34"}}' "is also the MAC of host 'a'"
expect_failure bad_name '{"a.b": {"mac_address": "bc:24:11:d0:28:34"}}' "'a.b' is not a usable host name"
expect_failure wrong_type '{"a": {"mac_address": "bc:24:11:d0:28:34", "groups": "x"}}' "field 'groups': expected a list"
expect_failure misspelt '{"a": {"mac_address": "bc:24:11:d0:28:34", "arc": "x86_64-linux"}}' "field 'arc': unknown field; did you mean 'arch'?"
mkdir -p "$work/bad/missing" && printf 'plugin: nixie.metal.hosts\npath: nowhere.json\n' > "$work/bad/missing/hosts.nixie.yml"
if ansible-inventory -i "$work/bad/missing/hosts.nixie.yml" --list > "$work/out.txt" 2>&1 || ! grep -q "nowhere.json: no such file" "$work/out.txt"; then
  echo "FAIL missing file" >&2; cat "$work/out.txt" >&2; exit 1
fi
echo "ok missing_file"
