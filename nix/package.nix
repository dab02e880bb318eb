# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# The nixie-agent script (nix/agent/nixie-agent), packaged unchanged with the
# tools it calls on its PATH. Call it with pkgs.callPackage.
{
  lib,
  stdenvNoCC,
  makeWrapper,
  coreutils,
  curl,
  gawk,
  gnugrep,
  gnused,
  iproute2,
}:

stdenvNoCC.mkDerivation {
  pname = "nixie-agent";
  version = "0.1.0";

  src = ./agent;

  nativeBuildInputs = [ makeWrapper ];

  dontConfigure = true;
  dontBuild = true;

  # The script itself is installed as it is in the repository; the fixup phase only
  # points its "#!/bin/sh" at the store's shell. The wrapper puts exactly what the
  # script calls on PATH: cat tr od cut head mktemp sleep timeout (coreutils), curl,
  # awk, grep, sed and ip.
  installPhase = ''
    runHook preInstall
    install -Dm755 nixie-agent $out/libexec/nixie-agent
    makeWrapper $out/libexec/nixie-agent $out/bin/nixie-agent \
      --prefix PATH : ${
        lib.makeBinPath [
          coreutils
          curl
          gawk
          gnugrep
          gnused
          iproute2
        ]
      }
    runHook postInstall
  '';

  meta = {
    description = "Tells the nixie.metal provisioning server that a network-booted installer is up";
    homepage = "https://github.com/nixie-metal/nixie.metal";
    license = lib.licenses.gpl3Plus;
    platforms = lib.platforms.linux;
    mainProgram = "nixie-agent";
  };
}
