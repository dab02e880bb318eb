# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tests/utils/programs.py finds the programs and system files code uses, on small inputs."""

from __future__ import annotations

import pathlib
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "utils"))

import programs  # noqa: E402  pylint: disable=wrong-import-position,import-error


def names(found):
    return sorted({name for name, dummy in found})


def python(source):
    return names(programs.python_programs(textwrap.dedent(source)))


def shell(source):
    return names(programs.shell_commands(textwrap.dedent(source), paths=True))


def yaml_file(source):
    return names(programs.yaml_programs(textwrap.dedent(source)))


# ---------------------------------------------------------------- argv


def test_an_argv_runs_its_first_word_and_what_it_wraps():
    assert programs.programs_of_argv(["qemu-img", "create", "-f", "qcow2"]) == {"qemu-img"}
    assert programs.programs_of_argv(["ip", "netns", "exec", None, "dnsmasq", "-d"]) == {"ip", "dnsmasq"}
    assert programs.programs_of_argv(["sh", "-c", "mount -t tmpfs x /run && exec /usr/sbin/sshd -D"]) == \
        {"sh", "mount", "/usr/sbin/sshd"}
    assert programs.programs_of_argv(["env", "-u", "PYTHONPATH", "A=1", "python", "-m", "pip"]) == {"env", "python"}
    assert programs.programs_of_argv(["timeout", "--kill-after=5", "60", "ssh", "-T"]) == {"timeout", "ssh"}


def test_an_argv_not_known_before_run_time_runs_nothing_known():
    assert programs.programs_of_argv([None, "-v"]) == set()
    assert programs.programs_of_argv([]) == set()
    assert programs.programs_of_argv(["ip", "netns", "exec", None, None]) == {"ip"}
    assert programs.programs_of_argv(["not a program", "x"]) == set()


# ---------------------------------------------------------------- Python


def test_python_subprocess_argv_literals():
    assert python("""
        import subprocess
        subprocess.run(["qemu-img", "create", "-q", path, size], check=True)
        subprocess.Popen(("tar", "-x"), stdin=subprocess.PIPE)
        subprocess.check_output(args=["dpkg-deb", "--fsys-tarfile", deb])
        subprocess.call(["ip", "netns", "exec", ns, "sysctl", "-qw", "x=0"])
        """) == ["dpkg-deb", "ip", "qemu-img", "sysctl", "tar"]


def test_python_helpers_that_take_an_argv():
    assert python("""
        lab.run(["ss", "-H", "-lnu"], check=False)
        site.popen(["dnsmasq", "--keep-in-foreground"], ns=site.site_ns)
        rack.wrap(["curl", "-sf", url], rack.cli)
        lab.run("virsh -c qemu:///x list")
        """) == ["curl", "dnsmasq", "ss", "virsh"]


def test_python_names_bound_to_argv_lists_and_constants():
    assert python("""
        BUSYBOX = "/bin/busybox"

        def build(kind, extra):
            if kind == "arm":
                machine = ["qemu-system-aarch64", "-machine", "virt"]
            else:
                machine = ["qemu-system-x86_64"]
            argv = machine + ["-m", "512"]
            return argv + extra

        def start(rack):
            binary = shutil.which("nginx") or "/usr/sbin/nginx"
            argv = rack.wrap([binary, "-c", conf], rack.srv)
            cmd = ["dumpcap", "-i", "br0"]
            cmd += ["-f", "port 67"]
            proc = lab.popen(cmd)
            subprocess.run([BUSYBOX, "--list"])
        """) == ["/bin/busybox", "/usr/sbin/nginx", "dumpcap", "nginx", "qemu-system-aarch64", "qemu-system-x86_64"]


def test_python_which_names_loops_and_shell_strings():
    assert python("""
        found = shutil.which(executable or "ssh")
        ready = all(shutil.which(b) for b in ("dnsmasq", "ssh-keygen"))
        subprocess.run("set -e; virsh list | grep -q running", shell=True)
        """) == ["dnsmasq", "grep", "ssh", "ssh-keygen", "virsh"]


def test_python_absolute_system_paths_are_files_to_provide():
    assert python('''
        """Docstrings mentioning /usr/share/OVMF/OVMF_CODE_4M.fd are text, not paths."""
        OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
        wheels = glob.glob("/usr/share/python-wheels/pip-*.whl")
        IPXE_DIR = Path("/usr/lib/ipxe")
        not_system = ["/etc/passwd", "/usr/local/bin/x", "/usr/bin", "/tmp/x", "/usr/bin:/bin", "/bin/sh\\n"]
        ''') == ["/usr/lib/ipxe", "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/python-wheels/pip-*.whl"]


def test_python_what_is_not_a_program_call():
    assert python("""
        argv = [sys.executable, "-m", "pytest"]
        subprocess.run(with_capabilities([sys.executable, "-c", code]))
        command = "printf '%s' %s > %s" % (a, b, c)
        asyncio.run(main())
        names = ["ssh", "nix"]
        sock.bind(("0.0.0.0", 67))
        """) == []


def test_python_lines_are_reported():
    found = programs.python_programs('import subprocess\n\nsubprocess.run(["qemu-img", "info", p])\n')
    assert found == [("qemu-img", 3)]


# ---------------------------------------------------------------- shell


def test_shell_first_words_of_commands():
    assert shell("""
        #!/usr/bin/env bash
        set -euo pipefail
        root=$(cd "$(dirname "$0")" && pwd)
        export X=1
        ansible-galaxy collection build --output-path "$work/dist" >/dev/null
        [ -d "$x" ] || mkdir -p "$x"
        if ! command -v nix >/dev/null; then echo "no nix" >&2; exit 1; fi
        for _ in $(seq 50); do sleep 0.1; done
        grep -v foo file | sort -u 2>&1 | head -n1
        FOO=bar exec "${PYTHON:-python3}" -m pytest
        ip netns exec "$ns" sysctl -qw x=0
        """) == ["ansible-galaxy", "dirname", "grep", "head", "ip", "mkdir", "seq", "sleep", "sort", "sysctl"]


def test_shell_skips_functions_builtins_keywords_and_expansions():
    assert shell("""
        say() { printf 'setup: %s\\n' "$*" >&2; }
        as_root() {
          if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
        }
        say "installing"
        "$venv/bin/python" -m pip install
        trap 'rm -rf "$work"' EXIT
        local start; read -r a b <<< "$pair"; wait "$pid"; kill "$pid"
        echo "$((count + 1)) ${#list[@]} ${x#*=}"
        """) == ["id", "sudo"]


def test_shell_arrays_case_patterns_and_comments_are_not_commands():
    assert shell("""
        packages=(
          git curl   # the comment (with parens) and an apostrophe's
          qemu-utils
        )
        stages=(sanity lint units integration)
        case $stage_name in
          sanity) ansible-test sanity ;;
          --keep|--lab) mode=keep ;;
          000 | '') return 1 ;;
          *) echo "unknown" >&2; exit 2 ;;
        esac
        # molecule test -s default
        """) == ["ansible-test"]


def test_shell_nested_commands_and_heredocs():
    assert shell("""
        version=$("$venv/bin/python" - <<'PY'
        import re
        print(re.search(r"pip='([0-9.]+)'", source).group(1))
        PY
        )
        cat > "$work/sshd_config" <<CONFIG
        Port 22
        ListenAddress 0.0.0.0
        CONFIG
        cat > "$work/in-namespace.sh" <<'NAMESPACE'
        mount -t tmpfs tmpfs /run/nixie-metal
        ss -H -lnut > "$work/listening.txt"
        NAMESPACE
        cat > "$work/bin/nixos-anywhere" <<TRAP
        #!/bin/sh
        date >> "$work/ran"
        TRAP
        pip install 2> >(grep -v "ignored" >&2)
        n=`wc -l < file`
        """) == ["cat", "date", "grep", "mount", "pip", "ss", "wc"]


def test_shell_paths_and_lines():
    found = programs.shell_commands("set -e\nif [ ! -x /usr/sbin/sshd ]; then\n  apt-get install -y openssh-server\nfi\n", paths=True)
    assert found == [("/usr/sbin/sshd", 2), ("apt-get", 3)]


# ---------------------------------------------------------------- YAML


def test_yaml_command_tasks():
    assert yaml_file("""
        - name: Scan
          ansible.builtin.command:
            argv: [ssh-keyscan, -T, "5", "{{ target }}"]
        - name: Fingerprint
          command:
            argv: ["{{ executable }}", -l]
        - name: Through a namespace
          ansible.builtin.command:
            argv: >-
              {{ ['ip', 'netns', 'exec', lab_ns, bin ~ '/ansible-playbook'] }}
        - name: Timeout
          ansible.builtin.command:
            argv: "{{ ['timeout', '--kill-after=5', '60', tmp ~ '/bin/ssh', '-T'] + extra }}"
        - name: Free form
          ansible.builtin.command: nix-store --version
        - name: Dynamic command line
          ansible.builtin.command:
            cmd: "{{ python | quote }} -m nixielab.libvirt up"
        - name: A shell
          ansible.builtin.shell:
            cmd: set -o pipefail; virsh list | grep -c running
        - name: A block
          block:
            - name: Inner
              ansible.builtin.raw: uname -a
        """) == ["grep", "ip", "nix-store", "ssh-keyscan", "timeout", "uname", "virsh"]


def test_yaml_module_options_named_command_are_not_tasks():
    assert yaml_file("""
        - name: Define the domains
          community.libvirt.virt:
            command: define
            xml: "{{ item }}"
        - name: Variables
          ansible.builtin.set_fact:
            ipxe_dir: /usr/lib/ipxe
        """) == ["/usr/lib/ipxe"]


# ---------------------------------------------------------------- files and trees


def test_kind_of_files():
    assert programs.kind_of("a/b.py", "") == "python"
    assert programs.kind_of("runme.sh", "") == "shell"
    assert programs.kind_of("tasks/main.yml", "---") == "yaml"
    assert programs.kind_of("scripts/setup", "#!/usr/bin/env bash") == "shell"
    assert programs.kind_of("files/nixos-anywhere", "#!/usr/bin/env python") == "python"
    assert programs.kind_of("README.md", "# title") is None


def test_scan_tree(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "demo").write_text("#!/bin/sh\nmolecule create\n")
    (tmp_path / "tests" / "lab").mkdir(parents=True)
    (tmp_path / "tests" / "lab" / "libvirt.py").write_text('import subprocess\nsubprocess.run(["qemu-img", "create"])\n')
    (tmp_path / "tests" / "lab" / "agent.sh").write_text("wget -q -O- http://x\n")
    (tmp_path / "tests" / "data.json").write_text('{"argv": ["nope"]}')
    (tmp_path / "tests" / "output").mkdir()
    (tmp_path / "tests" / "output" / "copy.sh").write_text("excluded\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "run.sh").write_text("not-scanned\n")
    uses = programs.scan_tree(str(tmp_path), ["scripts", "tests"], exclude={"tests/lab/agent.sh", "tests/output"})
    assert uses == {"molecule": ["scripts/demo:2"], "qemu-img": ["tests/lab/libvirt.py:2"]}
