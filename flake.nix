# Townlet's Nix flake: a development shell with the toolchain, and checks that run the same Make
# targets as CI and `make check`.
#
#   nix develop                 # shell with cargo, rustc, rustfmt, clippy, maturin, python 3.11, make
#   nix develop -c make check   # lint, stubtest and tests, exactly as CI runs them
#   nix flake check --option sandbox relaxed
#
# About the checks, honestly: the Make targets create `.venv` and install the pinned packages of
# requirements-dev.txt from PyPI, and cargo downloads the crates of Cargo.lock. Both need the network,
# which the Nix build sandbox forbids. The checks therefore set `__noChroot = true`, which Nix only
# accepts when the daemon runs with `sandbox = relaxed` (pass `--option sandbox relaxed` as a trusted
# user, or set it in nix.conf) or with `sandbox = false`. Under the default `sandbox = true` the checks
# refuse to build; use `nix develop -c make check` instead, which runs the same steps.
#
# The pinned Python tools (maturin, ruff, mypy, pytest, ...) come from requirements-dev.txt, not from
# nixpkgs, so that Nix and non-Nix runs use the same versions: the Makefile runs them from `.venv`
# (the nixpkgs maturin in the shell is for use by hand). The wheels pip installs are generic Linux
# builds: LD_LIBRARY_PATH below lets them find libstdc++ and zlib. On NixOS, wheels that ship
# executables (ruff) also need `programs.nix-ld`.
{
  description = "Townlet: a deterministic Rust town simulation with a Python training and operations layer";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # What the shell and the checks put on PATH (the C compiler and linker come from stdenv).
      tools = pkgs: [
        pkgs.cargo
        pkgs.rustc
        pkgs.rustfmt
        pkgs.clippy
        pkgs.maturin
        # `python3 -m venv` and pip (ensurepip) come with the interpreter; the Makefile makes .venv.
        pkgs.python311
        pkgs.gnumake
        pkgs.pkg-config
        pkgs.cacert
      ];

      # Environment shared by the shell and the checks.
      env =
        pkgs:
        {
          SSL_CERT_FILE = "${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt";
        }
        // nixpkgs.lib.optionalAttrs pkgs.stdenv.isLinux {
          LD_LIBRARY_PATH = nixpkgs.lib.makeLibraryPath [
            pkgs.stdenv.cc.cc.lib
            pkgs.zlib
          ];
        };

      # The repository without build outputs (a git checkout already leaves out untracked files).
      source =
        pkgs:
        pkgs.lib.cleanSourceWith {
          src = pkgs.lib.cleanSource ./.;
          filter =
            path: type:
            !(builtins.elem (baseNameOf path) [
              "target"
              ".venv"
              ".mypy_cache"
              ".ruff_cache"
              ".pytest_cache"
              ".hypothesis"
            ]);
        };

      # One check = one Make target run in a writable copy of the source. Needs the network: see the
      # comment at the top of this file.
      makeCheck =
        pkgs: target:
        pkgs.stdenv.mkDerivation (
          env pkgs
          // {
            name = "townlet-make-${target}";
            src = source pkgs;
            nativeBuildInputs = tools pkgs;
            __noChroot = true;
            dontConfigure = true;
            buildPhase = ''
              runHook preBuild
              export HOME="$TMPDIR/home" CARGO_HOME="$TMPDIR/cargo" PIP_CACHE_DIR="$TMPDIR/pip-cache"
              mkdir -p "$HOME"
              make ${target}
              runHook postBuild
            '';
            installPhase = ''
              runHook preInstall
              mkdir -p "$out"
              echo "make ${target}: ok" > "$out/result"
              runHook postInstall
            '';
            dontFixup = true;
          }
        );
    in
    {
      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell (
          env pkgs
          // {
            packages = tools pkgs;
            RUST_SRC_PATH = "${pkgs.rustPlatform.rustLibSrc}";
            shellHook = ''
              # stdenv pins SOURCE_DATE_EPOCH to 1980, which can break building wheels outside a builder.
              unset SOURCE_DATE_EPOCH
              echo "townlet: 'make run' runs the default town, 'make test' runs the tests, 'make help' lists targets"
            '';
          }
        );
      });

      # `make check` is lint + stubtest + test; each is its own check so they can run in parallel.
      # `registry` checks that configs/config_registry.json is canonical and that every entry's hash
      # matches its stored config; `warm-start` runs the checkpoint, registry, log and archive round
      # trips, their tamper tests and the bc -> ppo -> resume chain (also part of `test`).
      checks = forAllSystems (pkgs: {
        lint = makeCheck pkgs "lint";
        stubtest = makeCheck pkgs "stubtest";
        test = makeCheck pkgs "test";
        registry = makeCheck pkgs "registry-validate";
        warm-start = makeCheck pkgs "warm-start-check";
      });
    };
}
