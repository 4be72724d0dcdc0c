# A stand-in for nixpkgs with exactly the attribute paths flake.nix may use, each checked against nixpkgs'
# sources (docs/nix.md names the files). tests/test_nix_flake.py evaluates the flake's outputs against it with
# nix-instantiate: an attribute the flake uses that is not here stops the evaluation, so the flake uses no path
# that was not checked. Derivations are plain attribute sets (nothing is built); the Python packages carry the
# versions docs/nix.md lists, so the flake's version warnings can be read.
{
  flake,
  versions,
  # attribute -> the systems its meta.platforms names (a stand-in for a package nixpkgs builds only there)
  platforms ? { },
}:
let
  systems = [
    "x86_64-linux"
    "aarch64-linux"
    "x86_64-darwin"
    "aarch64-darwin"
  ];
  drv =
    name: attrs:
    attrs
    // {
      type = "derivation";
      inherit name;
      outPath = "/nix/store/00000000000000000000000000000000-${name}";
    };
  mkDerivation =
    args:
    drv (args.name or "${args.pname}-${args.version}") args
    // {
      overrideAttrs = f: mkDerivation (args // (if builtins.isFunction f then f args else f));
    };
  upper = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lower = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];

  # lib/attrsets.nix, lib/strings.nix, lib/lists.nix, lib/sources.nix, lib/meta.nix, lib/trivial.nix,
  # lib/licenses.nix
  lib = {
    genAttrs =
      names: f:
      builtins.listToAttrs (
        map (n: {
          name = n;
          value = f n;
        }) names
      );
    toLower = builtins.replaceStrings upper lower;
    optionals = cond: list: if cond then list else [ ];
    optionalString = cond: s: if cond then s else "";
    optionalAttrs = cond: set: if cond then set else { };
    mapAttrs' =
      f: set: builtins.listToAttrs (map (n: f n set.${n}) (builtins.attrNames set));
    nameValuePair = name: value: { inherit name value; };
    # The real ones filter the tree; here the source is a name (nothing is copied into a store).
    cleanSource = src: builtins.seq (builtins.isPath src) "source";
    cleanSourceWith =
      { src, filter }:
      builtins.seq (filter "/x/target" "directory" == false && filter "/x/flake.nix" "regular") (
        drv "source" { }
      );
    makeLibraryPath = ds: builtins.concatStringsSep ":" (map (d: "${d}/lib") ds);
    meta.availableOn =
      platform: pkg: builtins.elem platform.system (pkg.meta.platforms or [ platform.system ]);
    warnIf = cond: msg: x: if cond then builtins.trace "evaluation warning: ${msg}" x else x;
    licenses.mit = {
      spdxId = "MIT";
    };
  };

  pkgsFor =
    system:
    let
      isDarwin = builtins.match ".*-darwin" system != null;
      tool = name: drv name { };
      pypkg =
        attr: version:
        drv "python3.13-${attr}-${version}" {
          pname = attr;
          inherit version;
          meta = if platforms ? ${attr} then { platforms = platforms.${attr}; } else { };
        };
      ps =
        builtins.mapAttrs pypkg versions
        // {
          # pkgs/development/interpreters/python/python-packages-base.nix
          buildPythonPackage =
            args:
            drv "python3.13-${args.pname}-${args.version}" args
            // {
              overridePythonAttrs =
                f: ps.buildPythonPackage (args // (if builtins.isFunction f then f args else f));
            };
          # pkgs/development/interpreters/python/hooks/default.nix
          pytestCheckHook = tool "pytest-check-hook";
        };
      python = drv "python3-3.13" {
        interpreter = "/nix/store/00000000000000000000000000000000-python3-3.13/bin/python3.13";
        pkgs = ps;
        withPackages = f: drv "python3-3.13-env" { packages = f ps; };
      };
    in
    {
      python3 = python;
      bash = tool "bash";
      cargo = tool "cargo";
      rustc = tool "rustc";
      clippy = tool "clippy";
      rustfmt = tool "rustfmt";
      maturin = tool "maturin";
      gnumake = tool "gnumake";
      git = tool "git";
      pkg-config = tool "pkg-config";
      cacert = tool "cacert";
      ruff = tool "ruff" // { version = versions.ruff or null; };
      libiconv = tool "libiconv";
      zlib = tool "zlib";
      stdenv = {
        inherit mkDerivation;
        hostPlatform = {
          inherit system isDarwin;
        };
        isLinux = !isDarwin;
        cc.cc.lib = tool "gcc-lib";
      };
      # pkgs/build-support/rust/make-rust-platform.nix (rustPlatform), pkgs/build-support/rust/hooks/default.nix
      rustPlatform = {
        importCargoLock =
          { lockFile }: builtins.seq (builtins.isPath lockFile) (drv "cargo-vendor-dir" { });
        cargoSetupHook = tool "cargo-setup-hook.sh";
        maturinBuildHook = tool "maturin-build-hook.sh";
        rustLibSrc = tool "rust-lib-src";
      };
      # pkgs/build-support/mkshell/default.nix, pkgs/build-support/trivial-builders/default.nix
      mkShell = args: drv "nix-shell" args;
      writeShellScriptBin = name: text: drv name { inherit text; };
    };

  nixpkgs = {
    inherit lib;
    legacyPackages = lib.genAttrs systems pkgsFor;
  };
  outputs = (import flake).outputs {
    self = outputs;
    inherit nixpkgs;
  };
in
outputs
