# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What nix printed, shared by the tests of _nix's output and of its calls.

The log lines below were captured from Debian's nix 2.8 (nix build --log-format internal-json).
"""

from __future__ import annotations

S = "/nix/store/"
DRV_A = S + "dhrkybpxixk6r9f4r9arv06czwjkn5xi-a.drv"
DRV_B = S + "k60rsqn5hcksvfq90lhwf3z6lg107w5x-b.drv"
OUT_A = S + "bfllz57r4x5sjijg4wg2yhrqgigahflm-a"
OUT_B = S + "vnff7fg7jl8scf7rx5c3bvhm2ic2ka4n-b"

DRY_RUN_LOG = """\
@nix {"action":"start","id":1,"level":4,"text":"copying '/tmp/f1'","type":0}
@nix {"action":"stop","id":1}
@nix {"action":"start","id":3,"level":6,"text":"querying info about missing paths","type":0}
@nix {"action":"stop","id":3}
@nix {"action":"msg","level":0,"msg":"these 2 derivations will be built:"}
@nix {"action":"msg","level":0,"msg":"  %s"}
@nix {"action":"msg","level":0,"msg":"  %s"}
@nix {"action":"msg","level":0,"msg":"this path will be fetched (0.01 MiB download, 0.05 MiB unpacked):"}
@nix {"action":"msg","level":0,"msg":"  /nix/store/0q5jfgavmf4y78x00s7rdvj6yn58r7g4-hello"}
""" % (DRV_B, DRV_A)

BUILD_LOG = """\
@nix {"action":"start","id":7,"level":0,"text":"","type":102}
@nix {"action":"result","fields":[0,1,0,0],"id":8,"type":105}
@nix {"action":"start","fields":["%s","",1,1],"id":10,"level":3,"text":"building '%s'","type":105}
@nix {"action":"start","fields":["%s","",1,1],"id":11,"level":3,"text":"building '%s'","type":105}
@nix {"action":"result","fields":["LOGLINE"],"id":11,"type":101}
@nix {"action":"start","fields":["/nix/store/0q5jfgavmf4y78x00s7rdvj6yn58r7g4-hello","https://cache.nixos.org"],"id":12,"level":4,"text":"","type":108}
@nix {"action":"stop","id":11}
@nix {"action":"stop","id":10}
""" % (DRV_A, DRV_A, DRV_B, DRV_B)

BUILD_FAILED_LOG = (
    '@nix {"action":"start","fields":["/nix/store/krzx726x1n9mdrazmykr0aw90wsd4l75-bad.drv","",1,1],"id":6,"level":3,'
    '"text":"building","type":105}\n'
    '@nix {"action":"result","fields":["some error output"],"id":6,"type":101}\n'
    '@nix {"action":"msg","column":null,"file":null,"level":0,"line":null,"msg":"\\u001b[31;1merror:\\u001b[0m '
    '\\u001b[35;1m\\u001b[0mbuilder for \'\\u001b[35;1m/nix/store/krzx726x1n9mdrazmykr0aw90wsd4l75-bad.drv\\u001b[0m\' '
    'failed with exit code 3\\u001b[0m"}\n'
)

EVAL_ERROR_LOG = """\
@nix {"action":"start","id":1,"level":4,"text":"copying '/tmp/f1'","type":0}
@nix {"action":"msg","column":null,"file":null,"level":0,"line":null,\
"msg":"\\u001b[31;1merror:\\u001b[0m my eval error\\n       at /tmp/f1/flake.nix:4:5:","raw_msg":"my eval error"}
@nix {"action":"msg","level":0,"msg":"(use '--show-trace' to show detailed location information)"}
"""


def collection(tmp_path):
    """A directory that looks like the collection's root to agent_flake (flake.nix and nix/)."""
    root = tmp_path / "collection"
    (root / "nix").mkdir(parents=True)
    (root / "flake.nix").write_text("{ }", encoding="utf-8")
    return str(root)
