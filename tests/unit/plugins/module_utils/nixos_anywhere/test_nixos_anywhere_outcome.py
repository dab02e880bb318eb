# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Judgements of what came back (plugins/module_utils/_nixos_anywhere/outcome.py), without SSH."""

from __future__ import annotations

from ansible_collections.nixie.metal.plugins.module_utils._nixos_anywhere import outcome


def test_disk_check_all_present():
    verdict = outcome.disk_check("web1", ["/dev/vda"], 0, "present /dev/vda\nby-id /dev/disk/by-id/virtio-x -> /dev/vda\n", "")
    assert verdict["ok"] and verdict["by_id"] == ["/dev/disk/by-id/virtio-x -> /dev/vda"]


def test_disk_check_missing_lists_by_id():
    verdict = outcome.disk_check("web1", ["/dev/disk/by-id/nvme-A", "/dev/vda"], 0,
                                 "missing /dev/disk/by-id/nvme-A\npresent /dev/vda\nby-id /dev/disk/by-id/ata-B -> /dev/sda\n", "")
    assert not verdict["ok"] and verdict["missing"] == ["/dev/disk/by-id/nvme-A"]
    assert "web1 has no block device /dev/disk/by-id/nvme-A" in verdict["message"]
    assert "/dev/disk/by-id/ata-B -> /dev/sda" in verdict["message"]


def test_disk_check_an_unmentioned_disk_is_missing_and_no_by_id_is_said():
    verdict = outcome.disk_check("web1", ["/dev/vda"], 0, "", "")
    assert not verdict["ok"] and verdict["missing"] == ["/dev/vda"] and "no /dev/disk/by-id there" in verdict["message"]


def test_disk_check_ssh_failure():
    verdict = outcome.disk_check("web1", ["/dev/vda"], 255, "", "Permission denied (publickey).\n")
    assert not verdict["ok"] and "exit 255" in verdict["message"] and "Permission denied" in verdict["message"]


def test_outcome_not_started_is_timeouts_own_127():
    result = outcome.outcome(127, "", "timeout: failed to run command '/x/na': No such file or directory\n", "/x/na", "f#a on h", 60)
    assert result["kind"] == "not_started" and "could not be started (exit 127)" in result["message"]


def test_outcome_127_of_nixos_anywhere_itself_is_a_failure_with_its_tail():
    stdout = "### Uploading install SSH keys ###\n### Gathering machine facts ###\n### Formatting hard drive with disko ###\n"
    result = outcome.outcome(127, stdout, "bash: line 1: /nix/store/x-disko: No such file or directory\n", "na", "f#a on h", 60)
    assert result["kind"] == "failed" and "nixos-anywhere failed (exit 127)" in result["message"]
    assert "was not found" in result["message"] and "Formatting hard drive with disko" in result["message"]
    assert "x-disko: No such file" in result["message"]


def test_outcome_127_with_stderr_only_is_still_a_failure():
    result = outcome.outcome(127, "", "sh: 1: disko: not found\n", "na", "f#a on h", 60)
    assert result["kind"] == "failed"


def test_outcome_timeout_and_ok():
    assert outcome.outcome(124, "### Uploading install SSH keys ###\n", "", "na", "f#a on h", 4)["message"].startswith(
        "nixos-anywhere did not finish within 4 s")
    assert outcome.outcome(0, "", "", "na", "f#a on h", 4)["kind"] == "ok"


# The role's checks (formerly messages and conditions in Jinja: tasks/main.yml, host_key.yml, verify.yml)

def test_an_encrypted_key_is_refused_with_what_to_do_and_no_key_passes():
    verdict = outcome.key_check({"rc": 1, "stderr": "Load key \"/k\": incorrect passphrase supplied to decrypt private key\n"}, "/k")
    assert verdict["ok"] is False
    assert verdict["message"] == (
        "nixos_anywhere_ssh_key /k cannot be read without a passphrase (ssh-keygen -y: Load key \"/k\": incorrect passphrase "
        "supplied to decrypt private key). nixos-anywhere needs an unencrypted -i key: give one, or leave nixos_anywhere_ssh_key "
        "empty and load the key into ssh-agent (SSH_AUTH_SOCK). Nothing was contacted.")
    assert outcome.key_check({"rc": 0, "stdout": "ssh-ed25519 AAAA"}, "/k")["ok"] is True
    assert outcome.key_check({"skipped": True, "changed": False}, "")["ok"] is True


ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAwq+EfnD2DZmIrGP9ja8hP2GBrvXDwB95xkcbYRkgxX"
RSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7"
SCAN = {"stdout_lines": ["# 192.0.2.10:22 SSH-2.0-OpenSSH_9.6", "192.0.2.10 " + RSA, "", "192.0.2.10 " + ED + " extra",
                         "[192.0.2.10]:22 " + ED], "stderr": ""}


def test_the_offered_key_that_was_expected_is_the_host_key():
    offer = outcome.host_key_offer(SCAN, [ED])
    assert offer == {"offered": [RSA, ED], "ok": True, "host_key": ED, "fingerprint": []}


def test_a_mismatch_fingerprints_both_sides_and_says_so():
    other = "ssh-ed25519 AAAAother"
    offer = outcome.host_key_offer(SCAN, [other])
    assert offer["ok"] is False and offer["host_key"] is None
    assert offer["fingerprint"] == [{"label": "offered", "text": RSA + "\n" + ED}, {"label": "expected", "text": other}]
    fingerprints = {"results": [{"item": offer["fingerprint"][0], "stdout_lines": ["2048 SHA256:rsa (RSA)", "256 SHA256:ed (ED25519)"]},
                                {"item": offer["fingerprint"][1], "stdout_lines": []}]}
    assert outcome.host_key_mismatch(fingerprints, offer, SCAN, [other], "192.0.2.10", 2222) == (
        "Host key mismatch: 192.0.2.10 port 2222 offered 2048 SHA256:rsa (RSA); 256 SHA256:ed (ED25519), but its installer "
        "reported . Nothing was sent to it. Another machine may hold the address, or the connection is intercepted.")


def test_a_target_that_offers_nothing_says_what_ssh_keyscan_said():
    scan = {"stdout_lines": ["# 192.0.2.10:22 SSH-2.0-x"], "stderr": "  connection refused \n"}
    offer = outcome.host_key_offer(scan, [ED])
    assert offer["offered"] == [] and offer["fingerprint"] == [{"label": "expected", "text": ED}]
    message = outcome.host_key_mismatch({"results": [{"item": offer["fingerprint"][0], "skipped": True}]}, offer, scan, [ED],
                                        "192.0.2.10", 22)
    assert message.startswith("Host key mismatch: 192.0.2.10 port 22 offered no host key (ssh-keyscan: connection refused), "
                              "but its installer reported %s. " % ED)


def test_a_failed_pinned_login_names_the_destination_and_the_exit():
    assert outcome.login_check({"rc": 0}, "root@h", 22) == {"ok": True, "message": ""}
    assert outcome.login_check({"rc": 255, "stderr": "Host key verification failed.\n"}, "root@h", 22)["message"] == (
        "Could not log in to root@h port 22 with its host key pinned to the installer's (exit 255): Host key verification "
        "failed.. Nothing else was sent to it.")


REFIND = {"mac": "52:54:00:00:00:01", "last_address": "192.0.2.10", "by_mac": True, "wait": 900, "look": True}


def test_the_installed_system_is_judged_by_its_state():
    found = outcome.installed_check({"state": "installed", "current_system": "/nix/store/s", "ip": "192.0.2.31",
                                     "address_source": "arp", "waited": 12.5}, "web1", REFIND, "/nix/store/s")
    assert found == {"ok": True, "message": "", "found": {"state": "installed", "current_system": "/nix/store/s",
                                                          "ip": "192.0.2.31", "address_source": "arp", "waited": 12.5}}
    other = outcome.installed_check({"state": "other_system", "current_system": "/nix/store/t", "os_id": "nixos",
                                     "expected_system": "", "ip": "192.0.2.10"}, "web1", REFIND, "/nix/store/s")
    assert other["ok"] is False and other["found"]["state"] == "other_system"
    assert other["message"] == ("After the install, web1 (MAC 52:54:00:00:00:01) at 192.0.2.10 is other_system, not installed: "
                                "it runs /nix/store/t (os nixos), expected /nix/store/s.")
    assert "it runs an unknown system (os unknown)" in outcome.installed_check({"state": "unknown_os"}, "h", REFIND, "")["message"]


def test_without_verify_being_found_is_enough():
    status = {"state": "other_system", "current_system": "/nix/store/t", "ip": "192.0.2.31", "address_source": "arp"}
    judged = outcome.installed_check(status, "web1", REFIND, "", verify=False)
    assert judged["ok"] is True and judged["found"]["ip"] == "192.0.2.31"
    assert outcome.installed_check({"state": "absent", "reason": "x"}, "web1", REFIND, "", verify=False)["ok"] is False


def test_a_machine_not_found_after_the_reboot_is_named_with_its_mac():
    status = {"state": "absent", "ip": None, "reason": "52:54:00:00:00:01 not found within 900 s (300 rounds): 192.0.2.10: no answer"}
    judged = outcome.installed_check(status, "web1", REFIND, "/nix/store/s")
    assert judged["ok"] is False and judged["found"]["ip"] is None
    assert judged["message"].startswith(
        "The installed system of web1 (MAC 52:54:00:00:00:01) was not found by its MAC and at its installer's address "
        "192.0.2.10 within 900 s after the reboot: 52:54:00:00:00:01 not found within 900 s (300 rounds): 192.0.2.10: no answer.")
    at_address = outcome.installed_check(status, "web1", {"mac": "", "address": "192.0.2.50", "by_mac": False, "wait": 60}, "")
    assert "The installed system of web1 was not found at 192.0.2.50 within 60 s" in at_address["message"]


def test_host_status_failing_is_said_with_the_host():
    judged = outcome.installed_check({"failed": True, "msg": "the SSH host key of 192.0.2.31 is none of known_host_keys"},
                                     "web1", REFIND, "")
    assert judged["ok"] is False
    assert judged["message"] == ("Could not check the installed system of web1 (MAC 52:54:00:00:00:01) after the reboot: "
                                 "the SSH host key of 192.0.2.31 is none of known_host_keys")


def test_a_port_wait_alone_records_the_address():
    refind = {"mac": "", "address": "192.0.2.10", "by_mac": False, "wait": 900, "port_wait_only": True, "look": False}
    assert outcome.installed_check({"skipped": True}, "web1", refind, "", verify=False) == {
        "ok": True, "message": "", "found": {"ip": "192.0.2.10", "address_source": "address"}}
