# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The build context ansible-builder made from the example's execution-environment.yml is complete.

Reads the Containerfile as a container build would (continuation lines, stages, ARG defaults) and
checks: the four stages in order, ARG defaults from the definition, every COPY source present in
the context, every COPY --from naming an earlier stage or a pinned image, the collection
requirements copied, and the definition's own steps (Nix, nixos-anywhere, iPXE) in the final stage.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import sys

import yaml

INSTRUCTIONS = {"FROM", "ARG", "ENV", "RUN", "COPY", "ADD", "WORKDIR", "USER", "LABEL", "ENTRYPOINT", "CMD",
                "EXPOSE", "VOLUME", "SHELL", "STOPSIGNAL", "HEALTHCHECK", "ONBUILD"}


def read_containerfile(path):
    """[(stage name or None, INSTRUCTION, arguments)], continuation lines joined, comments dropped."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    instructions, pending, stage = [], "", None
    for number, line in enumerate(lines, 1):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text, pending = pending + line, ""
        keyword, dummy, arguments = text.strip().partition(" ")
        if keyword.upper() not in INSTRUCTIONS:
            raise SystemExit("FAIL %s line %d: %r is not a Containerfile instruction" % (path, number, keyword))
        if keyword.upper() == "FROM":
            words = arguments.split()
            stage = words[2] if len(words) == 3 and words[1].upper() == "AS" else words[0]
        instructions.append((stage, keyword.upper(), arguments.strip()))
    if pending:
        raise SystemExit("FAIL %s: ends inside a continued line" % path)
    return instructions


def fold(step):
    """A step of the definition as it appears in the Containerfile (YAML folding leaves it on one line)."""
    return " ".join(step.split())


def main(context, site):
    with open(os.path.join(site, "execution-environment.yml"), encoding="utf-8") as handle:
        definition = yaml.safe_load(handle)
    instructions = read_containerfile(os.path.join(context, "Containerfile"))
    problems = []

    stages = [stage for stage, keyword, dummy in instructions if keyword == "FROM"]
    if stages != ["base", "galaxy", "builder", "final"]:
        problems.append("stages are %s" % stages)

    global_args = dict(re.match(r'(\w+)="?(.*?)"?$', arguments).groups()
                       for stage, keyword, arguments in instructions if stage is None and keyword == "ARG")
    if global_args.get("EE_BASE_IMAGE") != definition["images"]["base_image"]["name"]:
        problems.append("base image %r" % global_args.get("EE_BASE_IMAGE"))
    if global_args.get("PKGMGR") != definition["options"]["package_manager_path"]:
        problems.append("package manager %r" % global_args.get("PKGMGR"))
    refs = global_args.get("ANSIBLE_INSTALL_REFS", "")
    for key in ("ansible_core", "ansible_runner"):
        if definition["dependencies"][key]["package_pip"] not in refs:
            problems.append("%s is not installed (ANSIBLE_INSTALL_REFS=%r)" % (key, refs))

    for stage, keyword, arguments in instructions:
        if keyword not in ("COPY", "ADD"):
            continue
        words = shlex.split(arguments)
        options = [word for word in words if word.startswith("--")]
        paths = [word for word in words if not word.startswith("--")]
        source_from = next((option.split("=", 1)[1] for option in options if option.startswith("--from=")), None)
        if source_from is None:
            for source in paths[:-1]:
                if not glob.glob(os.path.join(context, source)):
                    problems.append("COPY source %s is not in the context" % source)
        elif source_from not in stages[:stages.index(stage)] and not re.search(r"[:@][\w.-]+$", source_from.split("/")[-1]):
            problems.append("COPY --from=%s is neither an earlier stage nor a pinned image" % source_from)
        elif source_from.endswith(":latest"):
            problems.append("COPY --from=%s is not pinned" % source_from)

    with open(os.path.join(site, "collections", "requirements.yml"), encoding="utf-8") as handle:
        wanted = yaml.safe_load(handle)
    with open(os.path.join(context, "_build", "requirements.yml"), encoding="utf-8") as handle:
        copied = yaml.safe_load(handle)
    if copied != wanted or "nixie.metal" not in [entry["name"] for entry in copied["collections"]]:
        problems.append("_build/requirements.yml is %r" % copied)
    galaxy_runs = " ".join(arguments for stage, keyword, arguments in instructions if stage == "galaxy" and keyword == "RUN")
    if "ansible-galaxy collection install" not in galaxy_runs or "-r requirements.yml" not in galaxy_runs:
        problems.append("the galaxy stage installs no collections")
    builder_runs = " ".join(arguments for stage, keyword, arguments in instructions if stage == "builder" and keyword == "RUN")
    if "introspect.py introspect" not in builder_runs or "/output/scripts/assemble" not in builder_runs:
        problems.append("the builder stage does not introspect and assemble the collections' dependencies")

    final = [fold("%s %s" % (keyword, arguments)) for stage, keyword, arguments in instructions if stage == "final"]
    steps = [fold(step) for step in definition["additional_build_steps"]["append_final"]]
    positions = [final.index(step) if step in final else -1 for step in steps]
    if -1 in positions or positions != sorted(positions):
        problems.append("the definition's final steps are missing or out of order: %s" % [s for s, p in zip(steps, positions) if p == -1])
    for tool, pattern in (("nix", r"COPY --from=\S*nixos/nix:"), ("nixos-anywhere", r"nixos-anywhere"), ("iPXE", r"/usr/lib/ipxe/ipxe\.efi")):
        if not any(re.search(pattern, step) for step in steps):
            problems.append("the final stage does not provide %s" % tool)

    if problems:
        raise SystemExit("FAIL build context %s:\n  %s" % (context, "\n  ".join(problems)))
    print("ok build context: %d instructions in stages %s" % (len(instructions), ", ".join(stages)))


if __name__ == "__main__":
    main(*sys.argv[1:])
