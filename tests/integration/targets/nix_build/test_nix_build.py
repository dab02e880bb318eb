# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""nixie.metal.nix_build through ansible, against a real nix, offline.

The flakes are written here, have no inputs, and build with /bin/sh, so no nixpkgs is
needed. The NixOS installer is a stand-in: a flake whose
nixosConfigurations.installer.config has the attributes the module reads
(system.build.{kernel,netbootRamdisk,toplevel}, system.boot.loader.kernelFile,
boot.kernelParams) and a toplevel laid out as NixOS lays it out (kernel link,
kernel-params, system, init). It stands in for shape only; real NixOS builds need
nixpkgs and the network.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid

import pytest

SYSTEM = {"x86_64": "x86_64-linux", "aarch64": "aarch64-linux"}.get(platform.machine(), platform.machine() + "-linux")


@pytest.fixture(scope="session")
def nix_env(tmp_path_factory):
    """Environment for a private nix: store, state, logs, caches and config in a temp dir."""
    root = tmp_path_factory.mktemp("nix")
    conf = root / "conf"
    conf.mkdir()
    env = dict(os.environ)
    env.update({
        "NIX_STORE_DIR": str(root / "nix" / "store"),
        "NIX_STATE_DIR": str(root / "nix" / "var" / "nix"),
        "NIX_LOG_DIR": str(root / "nix" / "var" / "log" / "nix"),
        "NIX_CONF_DIR": str(conf),
        "XDG_CONFIG_HOME": str(root / "config"),
        "XDG_CACHE_HOME": str(root / "cache"),
        # offline, as root or not, without build users; nix-command/flakes the module enables itself
        "NIX_CONFIG": "build-users-group =\nsubstituters =\nsandbox = false\n",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree",
        "ANSIBLE_NOCOLOR": "1",
    })
    env.pop("NIX_REMOTE", None)
    return env


def derivation(name, script, nonce):
    return ('builtins.derivation { name = "%s"; system = "%s"; builder = "/bin/sh"; nonce = "%s"; args = [ "-c" %s ]; }'
            % (name, SYSTEM, nonce, json.dumps(script)))


@pytest.fixture
def flake(tmp_path):
    """A flake whose packages.<system>.<name> are derivations unique to this test."""

    def make(packages, extra=""):
        nonce = uuid.uuid4().hex
        path = tmp_path / ("flake-" + nonce[:8])
        path.mkdir()
        body = "\n".join("        %s = %s;" % (name, derivation(name, script, nonce)) for name, script in packages.items())
        (path / "flake.nix").write_text(
            "{\n  outputs = { self }: {\n    packages.%s = {\n%s\n    };\n%s  };\n}\n" % (SYSTEM, body, extra),
            encoding="utf-8")
        return "path:" + str(path)

    return make


def run_module(env, args, check=False, cwd=None, module="nixie.metal.nix_build"):
    """Run the module once with ansible; its result as the tree callback wrote it."""
    tree = os.path.join(env["XDG_CACHE_HOME"], "tree", uuid.uuid4().hex)
    env = dict(env, ANSIBLE_CALLBACK_TREE_DIR=tree)
    argv = ["ansible", "localhost", "-c", "local", "-i", "localhost,", "-e", "ansible_python_interpreter=" + sys.executable,
            "-m", module, "-a", json.dumps(args)]
    if check:
        argv.append("--check")
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False, timeout=600)
    try:
        result = json.loads(read(os.path.join(tree, "localhost")))
    except (OSError, ValueError):
        pytest.fail("ansible wrote no result (rc %s):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    result.setdefault("failed", proc.returncode != 0)
    assert "Traceback" not in result.get("module_stderr", "") + result.get("exception", "")
    return result


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def test_single_installable_then_idempotent(nix_env, flake):
    ref = flake({"hello": "echo hello > $out"}) + "#hello"
    first = run_module(nix_env, {"installables": [ref]})
    assert not first.get("failed"), first
    assert first["changed"] is True
    out = first["outputs"][ref]["out"]
    assert out.startswith(nix_env["NIX_STORE_DIR"] + "/") and out.endswith("-hello")
    assert read(out) == "hello\n"
    assert first["built"] == [first["drv_paths"][ref]]
    assert "--no-link" in first["cmd"] and "--json" in first["cmd"]

    second = run_module(nix_env, {"installables": [ref]})
    assert second["changed"] is False, second
    assert second["outputs"] == first["outputs"]
    assert second["built"] == []


def test_several_installables_in_one_call(nix_env, flake):
    names = ["zeta", "alpha", "mu", "beta"]
    base = flake({n: "echo %s > $out" % n for n in names})
    refs = [base + "#" + n for n in names]
    result = run_module(nix_env, {"installables": refs + [refs[0]]})
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert sorted(result["outputs"]) == sorted(refs)  # one entry per installable, duplicates dropped
    for name, ref in zip(names, refs):
        assert read(result["outputs"][ref]["out"]) == name + "\n"  # each installable gets its own outputs
    assert sorted(result["built"]) == sorted(result["drv_paths"].values())
    # exactly one real build call: the command returned is the build, with every installable
    assert "--dry-run" not in result["cmd"]
    assert result["cmd"][-4:] == refs

    again = run_module(nix_env, {"installables": refs})
    assert again["changed"] is False
    assert again["outputs"] == {r: result["outputs"][r] for r in refs}


def test_failing_build_shows_nix_error_and_builder_output(nix_env, flake):
    base = flake({"ok": "echo ok > $out", "bad": "echo 'compiler says: missing semicolon' >&2; exit 3"})
    result = run_module(nix_env, {"installables": [base + "#ok", base + "#bad"]})
    assert result["failed"] is True
    assert "failed with exit code 3" in result["msg"]
    assert "compiler says: missing semicolon" in result["msg"]
    assert any("missing semicolon" in line for line in result["log_tail"])
    assert "Traceback" not in result["msg"]
    assert "\x1b" not in result["msg"]


def test_evaluation_error(nix_env, flake):
    base = flake({"ok": "echo ok > $out"}, extra='    packages.%s-broken = throw "the flake is broken on purpose";\n' % SYSTEM)
    # a missing attribute
    missing = run_module(nix_env, {"installables": [base + "#nonexistent"]})
    assert missing["failed"] is True
    assert "does not provide attribute" in missing["msg"]
    # a throw during evaluation, in the dry run of two installables
    thrown = run_module(nix_env, {"installables": [base + "#ok", base + "#packages.%s-broken" % SYSTEM]})
    assert thrown["failed"] is True
    assert "the flake is broken on purpose" in thrown["msg"]


def test_check_mode_builds_nothing(nix_env, flake):
    ref = flake({"later": "echo later > $out"}) + "#later"
    checked = run_module(nix_env, {"installables": [ref]}, check=True)
    assert not checked.get("failed"), checked
    assert checked["changed"] is True
    assert "--dry-run" in checked["cmd"]
    assert checked["built"] == [checked["drv_paths"][ref]]
    out = checked["outputs"][ref]["out"]
    assert not os.path.exists(out)

    built = run_module(nix_env, {"installables": [ref]})
    assert built["outputs"][ref]["out"] == out and os.path.exists(out)
    assert run_module(nix_env, {"installables": [ref]}, check=True)["changed"] is False


def test_missing_nix(nix_env, flake, tmp_path):
    ref = flake({"x": "echo x > $out"}) + "#x"
    result = run_module(nix_env, {"installables": [ref], "executable": "/nonexistent/bin/nix"})
    assert result["failed"] is True
    assert "apt-get install nix-bin" in result["msg"]
    result = run_module(nix_env, {"installables": [ref], "executable": "nix-not-installed"})
    assert result["failed"] is True
    assert "nix-not-installed not found on PATH" in result["msg"]
    # a machine without nix: directories of PATH that hold nix* are replaced by copies without it
    path = []
    for number, directory in enumerate(nix_env["PATH"].split(os.pathsep)):
        if not os.path.isdir(directory) or not any(n.startswith("nix") for n in os.listdir(directory)):
            path.append(directory)
            continue
        farm = tmp_path / ("bin%d" % number)
        farm.mkdir()
        for name in os.listdir(directory):
            if not name.startswith("nix"):
                (farm / name).symlink_to(os.path.join(directory, name))
        path.append(str(farm))
    env = dict(nix_env, PATH=os.pathsep.join(path))
    result = run_module(env, {"installables": [ref]})
    assert result["failed"] is True
    assert "nix not found" in result["msg"] and "apt-get install nix-bin" in result["msg"]


def test_timeout_stops_nix_and_its_builder(nix_env, flake, tmp_path):
    pidfile = tmp_path / "builder.pid"
    ref = flake({"slow": "echo $$ > %s; /bin/sleep 300; echo late > $out" % pidfile}) + "#slow"
    started = time.monotonic()
    result = run_module(nix_env, {"installables": [ref], "timeout": 5})
    assert result["failed"] is True
    assert "nix build ran out of time (timeout 5 seconds) and was stopped" in result["msg"]
    assert time.monotonic() - started < 60
    pid = int(read(pidfile))
    for dummy in range(100):
        if not os.path.exists("/proc/%d" % pid):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the builder (pid %d) is still running after the timeout" % pid)


INSTALLER_FLAKE = """\
{
  outputs = { self }:
    let
      drv = name: cmd: builtins.derivation {
        inherit name; system = "%(system)s"; builder = "/bin/sh"; nonce = "%(nonce)s"; args = [ "-c" cmd ];
      };
      installer = kernelFile: params:
        let
          kernel = drv "linux-stand-in" "/bin/mkdir $out && echo kernel > $out/${kernelFile}";
          netbootRamdisk = drv "initrd-stand-in" "/bin/mkdir $out && echo initrd > $out/initrd";
          # laid out as nixos/modules/system/activation/top-level.nix does
          toplevel = drv "nixos-system-stand-in" ''
            /bin/mkdir $out && /bin/ln -s ${kernel}/${kernelFile} $out/kernel &&
            printf '%%s' '${builtins.concatStringsSep " " params}' > $out/kernel-params &&
            printf '%(system)s' > $out/system && echo init > $out/init
          '';
        in {
          config = {
            system.build = { inherit kernel netbootRamdisk toplevel; };
            system.boot.loader.kernelFile = kernelFile;
            boot.kernelParams = params;
          };
        };
    in {
      nixosConfigurations.installer = installer "bzImage" [ "loglevel=4" "console=ttyS0,115200" ];
      nixosConfigurations.installer-arm = installer "Image" [ "loglevel=7" ];
      packages.%(system)s.extra = drv "extra" "echo extra > $out";
    };
}
"""


@pytest.fixture
def installer_flake(tmp_path):
    path = tmp_path / "site"
    path.mkdir()
    (path / "flake.nix").write_text(INSTALLER_FLAKE % {"system": SYSTEM, "nonce": uuid.uuid4().hex}, encoding="utf-8")
    return path


def test_installer_netboot_outputs(nix_env, installer_flake):
    ref = "path:%s#nixosConfigurations.installer" % installer_flake
    result = run_module(nix_env, {"installer": ref, "installables": ["path:%s#extra" % installer_flake]})
    assert not result.get("failed"), result
    assert result["changed"] is True
    store = nix_env["NIX_STORE_DIR"] + "/"
    assert result["kernel"].startswith(store) and result["kernel"].endswith("-linux-stand-in/bzImage")
    assert read(result["kernel"]) == "kernel\n"
    assert result["initrd"].endswith("-initrd-stand-in/initrd") and read(result["initrd"]) == "initrd\n"
    assert result["toplevel"].endswith("-nixos-system-stand-in")
    assert result["init"] == result["toplevel"] + "/init"
    assert result["kernel_params"] == ["loglevel=4", "console=ttyS0,115200"]
    assert result["cmdline"] == "init=%s loglevel=4 console=ttyS0,115200" % result["init"]
    assert result["system"] == SYSTEM
    # the three netboot outputs and the extra installable, from one build call
    builds = [ref + ".config.system.build." + a for a in ("kernel", "netbootRamdisk", "toplevel")]
    assert result["cmd"][-4:] == ["path:%s#extra" % installer_flake] + builds
    assert result["kernel"] == result["outputs"][builds[0]]["out"] + "/bzImage"
    assert "artifacts" not in result

    again = run_module(nix_env, {"installer": ref, "installables": ["path:%s#extra" % installer_flake]})
    assert again["changed"] is False
    assert {k: again[k] for k in ("kernel", "initrd", "init", "cmdline")} == {k: result[k] for k in ("kernel", "initrd", "init", "cmdline")}


def test_installer_check_mode_evaluates_the_command_line(nix_env, installer_flake):
    result = run_module(nix_env, {"installer": "path:%s#installer" % installer_flake}, check=True)
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert not os.path.exists(result["toplevel"])
    assert result["kernel"].endswith("-linux-stand-in/bzImage")
    assert result["cmdline"] == "init=%s/init loglevel=4 console=ttyS0,115200" % result["toplevel"]


def test_installers_per_architecture_relative_to_chdir(nix_env, installer_flake):
    args = {"chdir": str(installer_flake.parent),
            "installers": {"x86_64-linux": "path:./site#installer", "aarch64-linux": "path:./site#installer-arm"}}
    result = run_module(nix_env, args)
    assert not result.get("failed"), result
    arm = result["artifacts"]["aarch64-linux"]
    assert arm["kernel"].endswith("/Image") and arm["cmdline"] == "init=%s/init loglevel=7" % arm["toplevel"]
    assert result["artifacts"]["x86_64-linux"]["kernel"].endswith("/bzImage")
    assert "kernel" not in result


def test_bad_installer_reference(nix_env):
    result = run_module(nix_env, {"installer": "./examples"})
    assert result["failed"] is True and "FLAKE#ATTR" in result["msg"]


def test_ansible_doc_renders(nix_env):
    proc = subprocess.run(["ansible-doc", "nixie.metal.nix_build"], env=nix_env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "installer" in proc.stdout and "netbootRamdisk" in proc.stdout


# --- the installer's agent is the running collection's ------------------------------------

COLLECTION = os.environ.get("NIXIE_COLLECTION") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))


@pytest.fixture(scope="session")
def stand_in_inputs(tmp_path_factory):
    """nixpkgs and disko cannot be fetched offline: labelled stand-ins (stand-ins/README.md),
    copied to a plain path (nix 2.8 takes no path: URL beyond ASCII, which ansible-test's is)."""
    root = tmp_path_factory.mktemp("stand-ins")
    shutil.copytree(os.path.join(os.path.dirname(os.path.abspath(__file__)), "stand-ins"), root, dirs_exist_ok=True)
    return {"nixpkgs": "path:%s/nixpkgs" % root, "disko": "path:%s/disko" % root}


@pytest.fixture
def example_site(tmp_path):
    """A copy of examples/ whose nixie-metal input names a repository nobody can fetch here."""
    site = tmp_path / "site"
    shutil.copytree(os.path.join(COLLECTION, "examples"), site)
    return site


def installed_agent(toplevel):
    """The agent script the installer's nixie-agent.service runs, as bytes."""
    unit = read(os.path.join(toplevel, "etc", "systemd", "system", "nixie-agent.service"))
    exec_start = [line for line in unit.splitlines() if line.startswith("ExecStart=")][0].split("=", 1)[1]
    wrapper = read(exec_start)
    script = [line for line in wrapper.splitlines() if line.startswith("exec ")][0].split()[1]
    with open(script, "rb") as handle:
        return handle.read()


def collection_agent(root=COLLECTION):
    with open(os.path.join(root, "nix", "agent", "nixie-agent"), "rb") as handle:
        return handle.read()


def test_installer_carries_the_running_collections_agent(nix_env, stand_in_inputs, example_site):
    args = {"installer": "path:%s#installer" % example_site, "override_inputs": stand_in_inputs, "offline": True}
    checked = run_module(nix_env, args, check=True)
    assert not checked.get("failed"), checked
    assert checked["override_inputs"] == dict(stand_in_inputs, **{"nixie-metal": "path:" + COLLECTION})
    assert not os.path.exists(checked["toplevel"])
    cmd = " ".join(checked["cmd"])
    assert "--dry-run" in cmd and "--override-input nixie-metal path:%s" % COLLECTION in cmd

    built = run_module(nix_env, args)
    assert not built.get("failed"), built
    assert built["changed"] is True and built["toplevel"] == checked["toplevel"]
    assert installed_agent(built["toplevel"]) == collection_agent()
    assert not any("does not match any input" in w or "lock file" in w for w in built.get("warnings", []))

    again = run_module(nix_env, args)
    assert again["changed"] is False and again["toplevel"] == built["toplevel"]


def test_agent_flake_chooses_the_agent(nix_env, stand_in_inputs, example_site, tmp_path):
    """Another collection's agent (one line added) ends up in the installer instead."""
    other = tmp_path / "other-collection"
    shutil.copytree(os.path.join(COLLECTION, "nix"), other / "nix")
    shutil.copy(os.path.join(COLLECTION, "flake.nix"), other / "flake.nix")
    (other / "big-file-not-for-the-store").write_text("x" * 1000, encoding="utf-8")
    script = other / "nix" / "agent" / "nixie-agent"
    script.write_bytes(collection_agent() + b"# a different agent\n")
    args = {"installer": "path:%s#installer" % example_site, "override_inputs": stand_in_inputs,
            "agent_flake": str(other)}
    result = run_module(nix_env, args)
    assert not result.get("failed"), result
    assert result["override_inputs"]["nixie-metal"] == "path:%s" % other
    assert installed_agent(result["toplevel"]) == script.read_bytes() != collection_agent()

    # override_inputs wins over agent_flake
    mine = tmp_path / "mine"
    shutil.copytree(os.path.join(COLLECTION, "nix"), mine / "nix")
    shutil.copy(os.path.join(COLLECTION, "flake.nix"), mine / "flake.nix")
    own = dict(stand_in_inputs, **{"nixie-metal": "path:%s" % mine})
    result = run_module(nix_env, dict(args, override_inputs=own))
    assert result["override_inputs"]["nixie-metal"] == "path:%s" % mine
    assert installed_agent(result["toplevel"]) == collection_agent()


def test_flake_without_agent_input_is_built_as_it_is(nix_env, installer_flake):
    result = run_module(nix_env, {"installer": "path:%s#installer" % installer_flake})
    assert not result.get("failed"), result
    assert result["override_inputs"] == {}
    assert not any("override" in w for w in result.get("warnings", [])), result.get("warnings")
    assert "--override-input nixie-metal path:%s" % COLLECTION in " ".join(result["cmd"])


def test_override_input_that_matches_nothing_fails(nix_env, stand_in_inputs, example_site):
    inputs = dict(stand_in_inputs, nixpgks="path:/nonexistent")
    result = run_module(nix_env, {"installer": "path:%s#installer" % example_site, "override_inputs": inputs}, check=True)
    assert result["failed"] is True
    assert "override_inputs names nixpgks, which the flake has no input of" in result["msg"]


def test_bad_override_and_agent_flake(nix_env, example_site, tmp_path):
    result = run_module(nix_env, {"installer": "path:%s#installer" % example_site, "override_inputs": {"nixpkgs": ""}})
    assert result["failed"] is True and "flake reference of input nixpkgs must be a non-empty string" in result["msg"]
    result = run_module(nix_env, {"installer": "path:%s#installer" % example_site, "agent_flake": str(tmp_path)})
    assert result["failed"] is True and "agent_flake %s has no flake.nix" % tmp_path in result["msg"]


# --- the machines' systems, as the nixos_anywhere role builds and evaluates them -------------------------


def test_example_machine_built_and_evaluated_as_the_role_does(nix_env, stand_in_inputs, example_site):
    """The role's build on the controller (nixos_anywhere_build controller): node1's system and disko script in one
    nix_build call, and the disks of its disko configuration through nix_eval, both with the running collection as
    nixie-metal, so the example's GitHub URL for it is never fetched, and the site gets no flake.lock."""
    config = "path:%s#nixosConfigurations.node1.config" % example_site
    installables = [config + ".system.build.toplevel", config + ".system.build.diskoScript"]
    built = run_module(nix_env, {"installables": installables, "override_inputs": stand_in_inputs, "offline": True})
    assert not built.get("failed"), built
    assert built["override_inputs"] == dict(stand_in_inputs, **{"nixie-metal": "path:" + COLLECTION})
    toplevel, disko = (built["outputs"][installable]["out"] for installable in installables)
    assert os.path.isfile(os.path.join(toplevel, "init")) and toplevel.endswith("-nixos-system-node1-stand-in")
    assert os.path.isfile(disko)

    disks = {"installable": config + ".disko.devices.disk", "override_inputs": stand_in_inputs, "offline": True,
             "apply": "disks: map (name: (builtins.getAttr name disks).device) (builtins.attrNames disks)"}
    evaluated = run_module(nix_env, disks, module="nixie.metal.nix_eval")
    assert not evaluated.get("failed"), evaluated
    assert evaluated["value"] == ["/dev/disk/by-id/virtio-node1"] and evaluated["changed"] is False
    assert evaluated["override_inputs"] == built["override_inputs"]
    assert "--no-write-lock-file" in evaluated["cmd"] and "path:" + COLLECTION in evaluated["cmd"]
    # Read-only: check mode evaluates the same.
    assert run_module(nix_env, disks, check=True, module="nixie.metal.nix_eval")["value"] == evaluated["value"]
    assert not (example_site / "flake.lock").exists()

    # The control: without the override, nix reaches for the GitHub repository and fails.
    proc = subprocess.run(["nix", "--extra-experimental-features", "nix-command flakes", "eval", "--json", "--offline",
                           "--no-write-lock-file", "--override-input", "nixpkgs", stand_in_inputs["nixpkgs"],
                           "--override-input", "disko", stand_in_inputs["disko"], disks["installable"]],
                          env=nix_env, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode != 0 and "api.github.com/repos/nixie-metal/nixie.metal" in proc.stderr, proc.stderr


def test_nix_eval_failures_say_what(nix_env, stand_in_inputs, example_site):
    config = "path:%s#nixosConfigurations.node9.config" % example_site
    result = run_module(nix_env, {"installable": config + ".disko.devices.disk", "override_inputs": stand_in_inputs,
                                  "offline": True}, module="nixie.metal.nix_eval")
    assert result["failed"] is True
    assert result["msg"].startswith("nix eval of %s.disko.devices.disk failed (exit 1): error:" % config), result["msg"]
    assert "node9" in result["msg"] and "path:" + COLLECTION in result["cmd"]
    result = run_module(nix_env, {"installable": "path:%s" % example_site}, module="nixie.metal.nix_eval")
    assert result["failed"] is True and "must be FLAKE#ATTRIBUTE" in result["msg"]
    node1 = "path:%s#nixosConfigurations.node1.config.networking.hostName" % example_site
    result = run_module(nix_env, {"installable": node1, "override_inputs": dict(stand_in_inputs, nixpgks="path:/x"),
                                  "offline": True}, module="nixie.metal.nix_eval")
    assert result["failed"] is True and "override_inputs names nixpgks" in result["msg"]
