# TEST STAND-IN for nixpkgs' lib.nixosSystem (see ../README.md): a small module system
# that checks the shape of every module and merges their definitions. It knows only
# the options declared by the modules it is given and by ./modules/base.nix.
{ lib, pkgsFor }:
{
  modules,
  specialArgs ? { },
  ...
}:
let
  inherit (builtins)
    all
    attrNames
    concatMap
    concatStringsSep
    filter
    foldl'
    head
    isAttrs
    isFunction
    isList
    isPath
    isString
    length
    listToAttrs
    typeOf
    ;

  uniqueNames = names: attrNames (listToAttrs (map (name: { inherit name; value = null; }) names));

  fail = msg: throw "stand-in nixosSystem: ${msg}";
  where = file: if file == null then "an inline module" else "module ${toString file}";

  # What a NixOS module may hold next to options and config.
  moduleKeys = [
    "imports"
    "options"
    "config"
    "_file"
    "key"
    "disabledModules"
    "meta"
    "_class"
  ];

  moduleArgs =
    {
      inherit config lib pkgs options;
      modulesPath = ./modules;
    }
    // specialArgs;

  # A module as written (path, function or attribute set) -> { file, imports, options, config }.
  load =
    file: m:
    if isPath m || isString m then
      load m (import m)
    else if isFunction m then
      let
        wanted = builtins.functionArgs m;
        missing = filter (n: !(wanted.${n}) && !(moduleArgs ? ${n})) (attrNames wanted);
      in
      if missing != [ ] then
        fail "${where file} asks for ${concatStringsSep ", " missing}, which NixOS does not pass"
      else
        load file (m (builtins.intersectAttrs wanted moduleArgs))
    else if !isAttrs m then
      fail "${where file} must be a function or an attribute set, not a ${typeOf m}"
    else if m ? config || m ? options then
      let
        unknown = filter (k: !(builtins.elem k moduleKeys)) (attrNames m);
      in
      if unknown != [ ] then
        fail "${where file} has an unsupported attribute `${head unknown}': with `options' or `config', every setting belongs under `config'"
      else
        {
          inherit file;
          imports = m.imports or [ ];
          options = m.options or { };
          config = m.config or { };
        }
    else
      {
        inherit file;
        imports = m.imports or [ ];
        options = { };
        config = removeAttrs m moduleKeys;
      };

  collect =
    file: m:
    let
      loaded = load file m;
    in
    if !isList loaded.imports then
      fail "imports of ${where file} must be a list"
    else
      [ loaded ] ++ concatMap (collect null) loaded.imports;

  all' = concatMap (collect null) ([ ./modules/base.nix ] ++ modules);

  isOption = v: isAttrs v && v._type or null == "option";

  # The options of all modules as one tree; an option declared twice is an error.
  mergeOptions =
    path: decls:
    if all (d: !(isOption d.value) && isAttrs d.value) decls then
      listToAttrs (
        map (name: {
          inherit name;
          value = mergeOptions (path ++ [ name ]) (
            concatMap (d: if d.value ? ${name} then [ (d // { value = d.value.${name}; }) ] else [ ]) decls
          );
        }) (uniqueNames (concatMap (d: attrNames d.value) decls))
      )
    else if length decls == 1 && isOption (head decls).value then
      (head decls).value
    else
      fail "option `${concatStringsSep "." path}' is declared more than once or is not an option (in ${
        concatStringsSep ", " (map (d: where d.file) decls)
      })";

  options = mergeOptions [ ] (map (m: { inherit (m) file; value = m.options; }) all');

  # mkIf and mkOverride around a value -> its conditions, priority and content.
  peel =
    v:
    if isAttrs v && v._type or null == "if" then
      let
        inner = peel v.content;
      in
      inner // { conds = [ v.condition ] ++ inner.conds; }
    else if isAttrs v && v._type or null == "override" then
      let
        inner = peel v.content;
      in
      inner // { prio = if inner.prio == null then v.priority else inner.prio; }
    else
      {
        conds = [ ];
        prio = null;
        content = v;
      };

  rewrap =
    p: v:
    foldl' (acc: c: lib.mkIf c acc) (if p.prio == null then v else lib.mkOverride p.prio v) p.conds;

  isTree = v: isAttrs v && !(v ? _type) && v.type or null != "derivation";

  merge =
    path: opt: defs:
    let
      peeled = map (d: d // { p = peel d.value; }) defs;
      names = uniqueNames (concatMap (d: attrNames d.p.content) peeled ++ attrNames opt);
    in
    if isOption opt then
      leaf path opt peeled
    else if all (d: isTree d.p.content) peeled then
      listToAttrs (
        map (name: {
          inherit name;
          value = merge (path ++ [ name ]) (opt.${name} or { }) (
            concatMap (
              d: if d.p.content ? ${name} then [ (d // { value = rewrap d.p d.p.content.${name}; }) ] else [ ]
            ) peeled
          );
        }) names
      )
    else if opt != { } then
      fail "`${concatStringsSep "." path}' holds options, but ${files peeled} define it as a value"
    else
      leaf path null peeled;

  files = defs: concatStringsSep ", " (map (d: where d.file) defs);

  leaf =
    path: opt: peeled:
    let
      name = concatStringsSep "." path;
      active = filter (
        d:
        all (
          c: if builtins.isBool c then c else fail "the condition of mkIf for `${name}' in ${where d.file} is not a boolean"
        ) d.p.conds
      ) peeled;
      prio = d: if d.p.prio == null then 100 else d.p.prio;
      best = foldl' (m: d: if prio d < m then prio d else m) 10000 active;
      chosen = filter (d: prio d == best) active;
      values = map (d: d.p.content) chosen;
      value =
        if values == [ ] then
          if opt != null && opt ? default then opt.default else fail "`${name}' is used but not defined"
        else if all isList values then
          concatMap (v: v) values
        else if all (v: v == head values) values then
          head values
        else
          fail "conflicting definitions of `${name}' in ${files chosen}";
    in
    if opt != null && opt ? type && !(opt.type.check value) then
      fail "`${name}' is not of type ${opt.type.name} (defined in ${files chosen})"
    else
      value;

  config = merge [ ] options (map (m: { inherit (m) file; value = m.config; }) all');

  pkgs = pkgsFor config.nixpkgs.hostPlatform;
in
{
  _type = "configuration";
  inherit config options pkgs;
}
