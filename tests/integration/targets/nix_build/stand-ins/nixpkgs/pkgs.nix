# TEST STAND-IN for nixpkgs' legacyPackages.<system> (see ../README.md). Every package
# is a plain derivation built with /bin/sh; stdenvNoCC.mkDerivation runs the
# package's own installPhase, so what nix/package.nix installs is really installed.
{ lib, system }:
let
  empty =
    name:
    derivation {
      inherit name system;
      builder = "/bin/sh";
      args = [
        "-c"
        "echo 'test stand-in, not the real ${name}' > $out"
      ];
    };

  mkDerivation =
    attrs:
    assert attrs ? pname && attrs ? version && attrs ? src && attrs ? installPhase;
    derivation {
      name = "${attrs.pname}-${attrs.version}";
      inherit system;
      builder = "/bin/sh";
      args = [ ./mkderivation-builder.sh ];
      inherit (attrs) src installPhase;
    }
    // {
      inherit (attrs) pname version;
      meta = attrs.meta or { };
    };

  pkgs = {
    inherit lib system;
    stdenv.hostPlatform = {
      inherit system;
      isx86 = system == "x86_64-linux";
      isAarch64 = system == "aarch64-linux";
    };
    stdenvNoCC = {
      inherit mkDerivation;
      inherit (pkgs.stdenv) hostPlatform;
    };
    # The shell function of the same name is defined by mkderivation-builder.sh.
    makeWrapper = empty "make-wrapper-hook";
    # callPackage fills a function's named arguments from this set, as nixpkgs does;
    # an argument nixpkgs would not have is an error here too.
    callPackage =
      fn: overrides:
      let
        f = if builtins.isFunction fn then fn else import fn;
        wanted = builtins.functionArgs f;
        missing = builtins.filter (n: !(wanted.${n}) && !(pkgs ? ${n}) && !(overrides ? ${n})) (builtins.attrNames wanted);
      in
      if missing != [ ] then
        throw "stand-in callPackage: ${toString fn} asks for ${builtins.concatStringsSep ", " missing}, which the stand-in nixpkgs does not have"
      else
        f (builtins.intersectAttrs wanted pkgs // overrides);
  }
  // lib.genAttrs [
    "coreutils"
    "curl"
    "gawk"
    "gnugrep"
    "gnused"
    "iproute2"
    "nixfmt-rfc-style"
  ] empty;
in
pkgs
