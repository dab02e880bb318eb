# TEST STAND-IN for nixpkgs' lib (see ../README.md): written for the tests, with only
# the functions flake.nix, nix/ and examples/ call.
let
  lib = {
    genAttrs = names: f: builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);
    mapAttrs = builtins.mapAttrs;
    filter = builtins.filter;
    hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;
    # One separator character is all the callers use.
    splitString =
      sep: s:
      assert builtins.stringLength sep == 1;
      builtins.filter builtins.isString (builtins.split (if sep == "\n" then "\n" else "[${sep}]") s);
    optional = cond: x: if cond then [ x ] else [ ];
    optionalAttrs = cond: attrs: if cond then attrs else { };
    makeBinPath = paths: builtins.concatStringsSep ":" (map (p: "${p}/bin") paths);
    getExe =
      p:
      if p ? meta.mainProgram then
        "${p}/bin/${p.meta.mainProgram}"
      else
        throw "stand-in lib.getExe: ${p.name or "a package"} has no meta.mainProgram";
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };

    # Module system values; nixos/eval.nix interprets them.
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = name: {
      _type = "option";
      type = lib.types.bool;
      default = false;
      description = "Whether to enable ${name}.";
    };
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkOverride = priority: content: {
      _type = "override";
      inherit priority content;
    };
    mkDefault = lib.mkOverride 1000;
    mkForce = lib.mkOverride 50;

    types =
      let
        type = name: check: { inherit name check; };
      in
      {
        str = type "str" builtins.isString;
        bool = type "bool" builtins.isBool;
        package = type "package" (v: builtins.isAttrs v && v.type or null == "derivation");
        attrsOf = t: type "attrsOf ${t.name}" (v: builtins.isAttrs v && builtins.all t.check (builtins.attrValues v));
        listOf = t: type "listOf ${t.name}" (v: builtins.isList v && builtins.all t.check v);
        anything = type "anything" (v: true);
      };

    licenses.gpl3Plus = {
      spdxId = "GPL-3.0-or-later";
    };
    platforms.linux = [
      "x86_64-linux"
      "aarch64-linux"
    ];
  };
in
lib
