# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure parts of the power module (plugins/module_utils/_power/plan.py) and control.apply.

apply() is driven here by an in-memory BMC that follows the interface's contract (it changes its
state as a BMC would); the real protocols are proven against sushy-emulator and virtualbmc in the
integration target power_redfish_ipmi.
"""

from __future__ import annotations

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._power import control, plan
from ansible_collections.nixie.metal.plugins.module_utils._power.plan import Boot, PowerError

NETWORK_ONCE = Boot("network", False, None)
DISK_ONCE = Boot("disk", False, None)


# -- plan --------------------------------------------------------------------------------

@pytest.mark.parametrize("power, state, expected", [
    ("off", "on", [plan.POWER_ON]),
    ("on", "on", []),
    ("powering_on", "on", []),
    ("on", "off", [plan.POWER_OFF]),
    ("off", "off", []),
    ("powering_off", "off", []),
    ("on", "reset", [plan.RESET]),
    ("off", "reset", [plan.POWER_ON]),
    ("off", None, []),
])
def test_power_steps(power, state, expected):
    assert plan.plan(power, plan.NO_OVERRIDE, state) == expected


def test_boot_override_comes_before_the_power_step():
    assert plan.plan("on", plan.NO_OVERRIDE, "reset", "network") == [plan.SET_BOOT, plan.RESET]
    assert plan.plan("off", DISK_ONCE, "on", "network") == [plan.SET_BOOT, plan.POWER_ON]


def test_boot_override_already_set_is_not_set_again_even_when_persistent():
    assert plan.plan("off", NETWORK_ONCE, None, "network") == []
    assert plan.plan("off", Boot("network", True, None), None, "network") == []
    assert plan.plan("off", Boot("network", False, "legacy"), None, "network", "uefi") == [plan.SET_BOOT]
    assert plan.plan("off", Boot("network", False, "uefi"), None, "network", "uefi") == []


def test_unknown_power_state_is_refused_naming_the_bmc_only_when_a_state_is_asked():
    with pytest.raises(PowerError, match=r"^Redfish BMC x reports the power state 'unknown'"):
        plan.plan("unknown", plan.NO_OVERRIDE, "on", bmc="Redfish BMC x")
    assert plan.plan("unknown", plan.NO_OVERRIDE, None, "disk") == [plan.SET_BOOT]


def test_predictions():
    steps = [plan.SET_BOOT, plan.POWER_ON]
    assert plan.power_after("off", steps) == "on"
    assert plan.power_after("on", [plan.POWER_OFF]) == "off"
    assert plan.power_after("on", [plan.RESET]) == "on"
    assert plan.power_after("off", []) == "off"
    assert plan.boot_after(Boot(None, False, "uefi"), steps, "network") == Boot("network", False, "uefi")
    assert plan.boot_after(DISK_ONCE, [plan.POWER_ON], "network") == DISK_ONCE
    assert plan.describe_steps(steps, "network", "uefi") == ["boot once from network (uefi)", "power on"]


def test_read_back_of_a_network_boot_that_did_not_take_is_an_error_and_of_a_disk_boot_a_warning():
    assert plan.check_boot_applied("BMC", "network", Boot("network", True, None)) is None
    error, text = plan.check_boot_applied("IPMI BMC h:623", "network", DISK_ONCE)
    assert error and text.startswith("IPMI BMC h:623 accepted a one-time boot from the network but reports disk")
    error, text = plan.check_boot_applied("BMC", "network", plan.NO_OVERRIDE)
    assert error and "reports no override" in text
    error, text = plan.check_boot_applied("BMC", "disk", NETWORK_ONCE)
    assert not error and "put disk first" in text


def test_persistence_warning_only_for_a_network_boot_that_stays():
    assert plan.persistence_warning("BMC", Boot("network", True, None)).startswith("BMC keeps the network boot")
    assert plan.persistence_warning("BMC", Boot("disk", True, None)) is None
    assert plan.persistence_warning("BMC", NETWORK_ONCE) is None


# -- Redfish -----------------------------------------------------------------------------

@pytest.mark.parametrize("address, port, url", [
    ("10.0.0.5", None, "https://10.0.0.5"),
    ("10.0.0.5", 8443, "https://10.0.0.5:8443"),
    ("bmc1.example.org", None, "https://bmc1.example.org"),
    ("fe80::1", None, "https://[fe80::1]"),
    ("[fd00::5]", 443, "https://[fd00::5]:443"),
    ("http://10.77.0.4:8000", None, "http://10.77.0.4:8000"),
    ("https://bmc1/", None, "https://bmc1"),
    ("https://bmc1:8443", 8443, "https://bmc1:8443"),
])
def test_redfish_base_url(address, port, url):
    assert plan.redfish_base_url(address, port) == url


@pytest.mark.parametrize("address, port, message", [
    ("", None, "address is empty"),
    ("ftp://bmc1", None, "starts with https://"),
    ("https://bmc1/redfish/v1", None, "without a path"),
    ("https://bmc1:8443", 443, "names port 8443 but port is 443"),
    ("bmc1:8443", None, "give the port separately"),
    ("not a host", None, "neither a host name nor an IP address"),
    ("10.0.0.5", 70000, "not a TCP port"),
])
def test_redfish_base_url_refuses_with_a_reason(address, port, message):
    with pytest.raises(PowerError, match=message):
        plan.redfish_base_url(address, port)


def test_choose_system():
    members = ["/redfish/v1/Systems/1"]
    assert plan.choose_system("B", members) == "/redfish/v1/Systems/1"
    assert plan.choose_system("B", members + ["/redfish/v1/Systems/2/"], "2") == "/redfish/v1/Systems/2"
    assert plan.choose_system("B", members, "/redfish/v1/Systems/1") == "/redfish/v1/Systems/1"
    # A name the BMC may accept as an alias (sushy-emulator takes libvirt domain names) is tried as a path.
    assert plan.choose_system("B", members, "node1") == "/redfish/v1/Systems/node1"
    with pytest.raises(PowerError, match=r"^B manages 2 systems \(1, 2\); name the machine's with system"):
        plan.choose_system("B", members + ["/redfish/v1/Systems/2"])
    with pytest.raises(PowerError, match="lists no computer system"):
        plan.choose_system("B", [])
    with pytest.raises(PowerError, match="neither a Redfish system Id"):
        plan.choose_system("B", members, "a/b")


def test_redfish_boot_object():
    assert plan.redfish_boot({"BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "Pxe",
                              "BootSourceOverrideMode": "UEFI"}) == Boot("network", False, "uefi")
    assert plan.redfish_boot({"BootSourceOverrideEnabled": "Continuous", "BootSourceOverrideTarget": "Hdd"}) == \
        Boot("disk", True, None)
    assert plan.redfish_boot({"BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideTarget": "Pxe"}) == plan.NO_OVERRIDE
    assert plan.redfish_boot({"BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "None"}) == plan.NO_OVERRIDE
    assert plan.redfish_boot({"BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "UefiShell"}).device == "uefishell"
    assert plan.redfish_boot(None) == plan.NO_OVERRIDE


def test_redfish_override_problems_from_allowable_values():
    boot = {"BootSourceOverrideTarget@Redfish.AllowableValues": ["Pxe", "Hdd"],
            "BootSourceOverrideEnabled@Redfish.AllowableValues": ["Once", "Continuous", "Disabled"],
            "BootSourceOverrideMode@Redfish.AllowableValues": ["UEFI"]}
    assert plan.redfish_override_problem("B", boot, "network") is None
    assert plan.redfish_override_problem("B", boot, "network", "uefi") is None
    assert "cannot boot in legacy mode" in plan.redfish_override_problem("B", boot, "network", "legacy")
    assert "offers the boot targets Cd, Hdd, not Pxe" in plan.redfish_override_problem(
        "B", dict(boot, **{"BootSourceOverrideTarget@Redfish.AllowableValues": ["Cd", "Hdd"]}), "network")
    no_once = dict(boot, **{"BootSourceOverrideEnabled@Redfish.AllowableValues": ["Continuous", "Disabled"]})
    assert plan.redfish_override_problem("B", no_once, "network").startswith(
        "B does not support one-time boot overrides: it offers Continuous, Disabled, not Once")
    # A BMC that advertises nothing is judged by its answer, not here.
    assert plan.redfish_override_problem("B", {}, "disk") is None


def test_redfish_boot_patch_and_reset_types():
    assert plan.redfish_boot_patch("network") == {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}
    assert plan.redfish_boot_patch("disk", "legacy")["BootSourceOverrideMode"] == "Legacy"
    everything = {"On", "ForceOn", "ForceOff", "GracefulShutdown", "ForceRestart", "GracefulRestart", "PowerCycle",
                  "PushPowerButton", "Nmi"}
    assert plan.redfish_reset_type(plan.POWER_ON, everything) == "On"
    assert plan.redfish_reset_type(plan.POWER_OFF, everything) == "ForceOff"
    assert plan.redfish_reset_type(plan.RESET, everything) == "ForceRestart"
    assert plan.redfish_reset_type(plan.RESET, {"PowerCycle", "On"}) == "PowerCycle"
    assert plan.redfish_reset_type(plan.POWER_OFF, {"PushPowerButton"}) == "PushPowerButton"
    assert plan.redfish_reset_type(plan.POWER_ON, {"Nmi"}) is None


def test_redfish_power_states():
    assert [plan.redfish_power(v) for v in ("On", "Off", "PoweringOn", "PoweringOff", None, "Paused")] == \
        ["on", "off", "powering_on", "powering_off", "unknown", "unknown"]


@pytest.mark.parametrize("text, cause", [
    ("HTTPConnectionPool(host='10.77.0.9', port=8000): Max retries exceeded (Caused by ConnectTimeoutError("
     "'Connection to 10.77.0.9 timed out. (connect timeout=3)'))", "no answer within 3 s"),
    ("Failed to establish a new connection: [Errno 111] Connection refused", "connection refused"),
    ("[Errno 113] No route to host", "no route to the host"),
    ("[Errno -2] Name or service not known", "does not resolve"),
    ("SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed'))",
     "not trusted: set validate_certs to false"),
    ("something else entirely", "something else entirely"),
])
def test_connection_error_causes(text, cause):
    assert cause in plan.explain_connection_error(text, 3)


# -- IPMI --------------------------------------------------------------------------------

def test_ipmi_target():
    assert plan.ipmi_target("10.0.0.6") == ("10.0.0.6", 623)
    assert plan.ipmi_target("bmc2", 6230) == ("bmc2", 6230)
    with pytest.raises(PowerError, match="is a URL; IPMI takes"):
        plan.ipmi_target("https://bmc2")
    with pytest.raises(PowerError, match="not a UDP port"):
        plan.ipmi_target("bmc2", 0)


def test_ipmi_boot_answers():
    assert plan.ipmi_boot({"bootdev": "default", "persistent": True}) == plan.NO_OVERRIDE
    assert plan.ipmi_boot({"bootdev": "network", "persistent": False, "uefimode": True}) == Boot("network", False, "uefi")
    assert plan.ipmi_boot({"bootdev": "hd", "persistent": True, "uefimode": False}) == Boot("disk", True, "legacy")
    assert plan.ipmi_boot({"bootdev": "optical", "persistent": False, "uefimode": False}).device == "cd"
    assert plan.ipmi_boot({"bootdev": 9, "persistent": False}).device == "9"


def test_ipmi_errors():
    silent = plan.explain_ipmi_error("IPMI BMC h:623", "log in to", "", "admin", 5)
    assert silent.startswith("IPMI BMC h:623 did not answer within about 5 s")
    refused = plan.explain_ipmi_error("IPMI BMC h:623", "log in to", "Incorrect password provided", "admin", 5)
    assert refused.startswith("IPMI BMC h:623 refused user 'admin' (Incorrect password provided)")
    assert "power.password_env or power.password_var" in refused
    assert "refused user" in plan.explain_ipmi_error("B", "log in to", "Unauthorized name", "x", 5)
    assert "no free session" in plan.explain_ipmi_error("B", "log in to", "Insufficient resources to create new session", "x", 5)
    assert plan.explain_ipmi_error("B", "reset through", "Node busy", "x", 5) == "B: could not reset through it: Node busy"


def test_labels():
    assert plan.bmc_label("redfish", "https://10.0.0.5", "1") == "Redfish BMC https://10.0.0.5 (system 1)"
    assert plan.bmc_label("ipmi", "10.0.0.6:623") == "IPMI BMC 10.0.0.6:623"


# -- control.apply with an in-memory BMC ---------------------------------------------------

class MemoryBmc:
    """A BMC as the interface describes it: power and boot override in memory.

    ``keeps``: what it reports for a boot override after it is set (None: what was set).
    ``slow``: how many reads a power change takes to show.
    """

    label = "Memory BMC m1"

    def __init__(self, power="off", boot=plan.NO_OVERRIDE, keeps=None, slow=0, later=False):
        self._power, self._boot, self.keeps, self.slow, self.later = power, boot, keeps, slow, later
        self.calls, self._pending = [], None

    def power(self):
        if self._pending is not None:
            wanted, reads = self._pending
            if reads <= 0:
                self._power, self._pending = wanted, None
            else:
                self._pending = (wanted, reads - 1)
        return self._power

    def boot(self):
        return self._boot

    def boot_applies_later(self):
        return self.later

    def set_boot(self, device, mode=None):
        self.calls.append(("set_boot", device, mode))
        self._boot = self.keeps if self.keeps is not None else Boot(device, False, mode)

    def act(self, step):
        self.calls.append(("act", step))
        self._pending = ("off" if step == plan.POWER_OFF else "on", self.slow)
        self.power()


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def apply(bmc, **kwargs):
    clock = Clock()
    return control.apply(bmc, sleep=clock.sleep, clock=clock, **kwargs)


def test_apply_boots_from_the_network_and_powers_on_then_does_nothing_the_second_time():
    bmc = MemoryBmc(slow=2)
    result = apply(bmc, state="on", device="network")
    assert bmc.calls == [("set_boot", "network", None), ("act", plan.POWER_ON)]
    assert result["changed"] and result["power_before"] == "off" and result["power_after"] == "on"
    assert result["boot_after"] == {"device": "network", "persistent": False, "mode": None}
    assert result["actions"] == ["boot once from network", "power on"] and result["warnings"] == []
    bmc.calls.clear()
    again = apply(bmc, state="on", device="network")
    assert not again["changed"] and bmc.calls == [] and again["actions"] == []


def test_apply_in_check_mode_only_reads():
    bmc = MemoryBmc(power="on")
    result = apply(bmc, state="reset", device="network", check_mode=True)
    assert bmc.calls == []
    assert result["changed"] and result["actions"] == ["boot once from network", "reset"]
    assert result["power_after"] == "on" and result["boot_after"]["device"] == "network"


def test_apply_fails_before_any_power_step_when_the_network_boot_does_not_take():
    bmc = MemoryBmc(keeps=DISK_ONCE)
    with pytest.raises(PowerError) as caught:
        apply(bmc, state="on", device="network")
    assert bmc.calls == [("set_boot", "network", None)]
    assert "does not support one-time boot overrides" in str(caught.value)
    assert caught.value.partial["power_before"] == "off" and caught.value.partial["actions"] == []


def test_apply_warns_about_a_kept_network_boot_and_a_disk_boot_that_reads_back_otherwise():
    kept = apply(MemoryBmc(keeps=Boot("network", True, None)), device="network")
    assert len(kept["warnings"]) == 1 and "keeps the network boot override" in kept["warnings"][0]
    disk = apply(MemoryBmc(power="on", boot=NETWORK_ONCE, keeps=NETWORK_ONCE), device="disk")
    assert disk["changed"] and "put disk first" in disk["warnings"][0]
    later = apply(MemoryBmc(keeps=plan.NO_OVERRIDE, later=True), device="network")
    assert "could not be checked now" in later["warnings"][0]


def test_apply_gives_up_when_the_power_state_is_not_reached():
    bmc = MemoryBmc(slow=1000)
    with pytest.raises(PowerError, match=r"^Memory BMC m1 was asked to power on but still reports off after 5 s") as caught:
        apply(bmc, state="on", timeout=5)
    assert caught.value.partial["actions"] == []


def test_apply_reset_of_a_machine_that_is_off_powers_it_on():
    bmc = MemoryBmc()
    result = apply(bmc, state="reset")
    assert bmc.calls == [("act", plan.POWER_ON)] and result["actions"] == ["power on"]


def test_open_bmc_refuses_an_unknown_driver_and_checks_the_address_first():
    with pytest.raises(PowerError, match="driver 'amt' is not one of redfish, ipmi"):
        control.open_bmc({"driver": "amt", "address": "x", "user": "u", "password": "p"})
    with pytest.raises(PowerError, match="is a URL"):
        control.open_bmc({"driver": "ipmi", "address": "https://x", "user": "u", "password": "p"})
