# Townlet's Nix flake (docs/nix.md says how it is built, what was verified and what was not).
#
#   nix build                   # packages.default: the townlet Python package, Rust extension included
#   nix flake check             # every check below; the default sandbox (sandbox = true) is enough
#   nix run . -- EPOCHS=100     # apps.default: `make run` (train PPO on the default town, evaluate, report)
#   nix develop -c make check   # the toolchain and the Python set below; Make runs offline in it
#
# The package is built the way nixpkgs builds Rust-backed Python packages (pydantic-core, tokenizers, polars):
# buildPythonPackage in pyproject format, rustPlatform.cargoSetupHook + rustPlatform.maturinBuildHook, and the
# crates vendored from Cargo.lock by rustPlatform.importCargoLock (each crate a fixed-output download checked
# against the lock file's checksum), so nothing in a build or a check touches the network.
#
# The Python dependencies are read from pyproject.toml: `project.dependencies` must all be in nixpkgs'
# python3Packages (evaluation stops naming the one that is not); the extras' packages are added where nixpkgs
# has them for the platform (`ray` is one such optional extra). Evaluation warns, naming them, about extras
# nixpkgs lacks, about nixpkgs versions below pyproject's lower bounds (or other than its `==` pins) and about a
# ruff or mypy older than requirements-dev.txt's pin; the build's runtime dependency check refuses required
# dependencies outside their ranges.
#
# Checks, sandboxed (each also listed in the README's Nix section):
#   package, pytest, cargo-test, cargo-clippy, cargo-fmt, ruff, mypy, stubtest, registry, golden
# and the Make-driven checks of earlier versions, which download from PyPI and crates.io and so set `__noChroot`:
#   make-lint, make-stubtest, make-test, make-registry, make-warm-start
# Nix builds them only with `sandbox = relaxed` (or false), from a trusted user. A check Nix refuses would fail
# `nix flake check` under the default sandbox, so they join `checks` only when asked for:
#   TOWNLET_NIX_MAKE_CHECKS=1 nix flake check --impure --option sandbox relaxed
# and are always reachable as legacyPackages.<system>.make-checks.<name>:
#   nix build .#make-checks.test --option sandbox relaxed
{
  description = "Townlet: a deterministic Rust town simulation with a Python training and operations layer";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f (perSystem nixpkgs.legacyPackages.${system}));

      project = (builtins.fromTOML (builtins.readFile ./pyproject.toml)).project;
      extras = project.optional-dependencies or { };
      # Extras Townlet itself imports (the ops server, the terminal UI, ray, ...) are runtime dependencies of the
      # package; `dev` (test and lint tools) and `bench` (Stable-Baselines3, never imported by Townlet) are for
      # the checks and the shell.
      checkExtras = [
        "dev"
        "bench"
      ];
      runtimeExtras = builtins.filter (g: !builtins.elem g checkExtras) (builtins.attrNames extras);

      # "PyYAML>=6" -> { attr = "pyyaml"; min = "6"; }, "sb3-contrib==2.9.2" -> { attr = "sb3-contrib"; pin = ...; },
      # "ray[default]>=2.40" -> { attr = "ray"; ... }: nixpkgs names Python packages in lower case with dashes.
      requirement =
        spec:
        let
          m = builtins.match "[[:space:]]*([A-Za-z0-9][A-Za-z0-9._-]*)[[:space:]]*(\\[[^]]*])?(.*)" spec;
          name = builtins.elemAt m 0;
          bound =
            op:
            let
              b = builtins.match ".*${op}[[:space:]]*([0-9][0-9A-Za-z.]*).*" (builtins.elemAt m 2);
            in
            if b == null then null else builtins.head b;
        in
        {
          inherit spec;
          attr = lib.toLower (builtins.replaceStrings [ "_" "." ] [ "-" "-" ] name);
          min = bound ">=";
          pin = bound "==";
        };
      requirements = groups: map requirement (builtins.concatMap (g: extras.${g} or [ ]) groups);
      # requirements-dev.txt's exact pins ("ruff==0.17.6" -> { ruff = "0.17.6"; }): what `make lint` runs.
      pins = builtins.listToAttrs (
        map
          (line: {
            name = lib.toLower (builtins.elemAt line 0);
            value = builtins.elemAt line 1;
          })
          (
            builtins.filter (m: m != null) (
              map (line: builtins.match "([A-Za-z0-9._-]+)==([^ ;#]+).*" line) (
                builtins.filter builtins.isString (builtins.split "\n" (builtins.readFile ./requirements-dev.txt))
              )
            )
          )
      );

      # The repository without build outputs (a git checkout already leaves out untracked files).
      source = lib.cleanSourceWith {
        src = lib.cleanSource ./.;
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

      perSystem =
        pkgs:
        let
          python = pkgs.python3;
          ps = python.pkgs;
          bash = "${pkgs.bash}/bin/bash";

          # A package nixpkgs has and can build here (not an alias that throws, not broken, not another platform's).
          lookup =
            r:
            let
              got = builtins.tryEval (ps.${r.attr} or null);
            in
            if
              got.success
              && got.value != null
              && lib.meta.availableOn pkgs.stdenv.hostPlatform got.value
              && !(got.value.meta.broken or false)
            then
              got.value
            else
              null;
          present = rs: builtins.filter (d: d != null) (map lookup rs);
          required = map (
            r:
            ps.${r.attr}
              or (throw "flake.nix: pyproject.toml requires ${r.spec}, and nixpkgs' python3Packages has no ${r.attr}")
          ) (map requirement project.dependencies);
          runtimeDeps = required ++ present (requirements runtimeExtras);
          checkDeps = present (requirements checkExtras);

          allRequirements = map requirement project.dependencies ++ requirements (builtins.attrNames extras);
          problems = builtins.concatMap (
            r:
            let
              d = lookup r;
              v = if d == null then null else d.version or null;
            in
            if d == null then
              [
                "${r.spec} (not in nixpkgs for ${pkgs.stdenv.hostPlatform.system}${
                  if builtins.elem r.spec project.dependencies then "" else ": left out"
                })"
              ]
            else if
              v != null
              && (
                (r.min != null && builtins.compareVersions v r.min < 0) || (r.pin != null && v != r.pin)
              )
            then
              [ "${r.spec} (nixpkgs has ${v})" ]
            else
              [ ]
          ) allRequirements
          # The lint checks' verdicts depend on the tools' versions: say when nixpkgs' are older than make lint's.
          ++ builtins.concatMap (
            tool:
            let
              v = tool.drv.version or null;
            in
            if pins ? ${tool.name} && v != null && builtins.compareVersions v pins.${tool.name} < 0 then
              [
                "requirements-dev.txt pins ${tool.name}==${pins.${tool.name}}, nixpkgs has ${v} (the ${tool.name} check runs nixpkgs')"
              ]
            else
              [ ]
          ) [
            {
              name = "ruff";
              drv = pkgs.ruff;
            }
            {
              name = "mypy";
              drv = ps.mypy or null;
            }
          ];

          cargoDeps = pkgs.rustPlatform.importCargoLock { lockFile = ./Cargo.lock; };

          townlet = lib.warnIf (problems != [ ])
            "townlet: nixpkgs differs from pyproject.toml (or requirements-dev.txt) on: ${builtins.concatStringsSep "; " problems}"
            (
              ps.buildPythonPackage {
                pname = project.name;
                inherit (project) version;
                pyproject = true;
                src = source;
                inherit cargoDeps;

                nativeBuildInputs = [
                  pkgs.rustPlatform.cargoSetupHook
                  pkgs.rustPlatform.maturinBuildHook
                ];
                buildInputs = lib.optionals pkgs.stdenv.hostPlatform.isDarwin [ pkgs.libiconv ];
                maturinBuildFlags = [ "--interpreter=${python.interpreter}" ];

                dependencies = runtimeDeps;
                pythonImportsCheck = [
                  "townlet"
                  "townlet._core"
                ];

                # The tests run in checks.pytest (this package with doCheck), so `nix build` is the build alone.
                doCheck = false;
                nativeCheckInputs = [
                  ps.pytestCheckHook
                  pkgs.gnumake
                  pkgs.git
                ]
                ++ checkDeps;
                # The Makefile names /bin/bash, which the build sandbox (and NixOS) does not have.
                postPatch = ''
                  substituteInPlace Makefile --replace-fail "SHELL := /bin/bash" "SHELL := ${bash}"
                '';
                # Tests that start a Ray cluster carry the ray_cluster mark (no spaces: pytestFlags split on them).
                pytestFlags = [ "-mnot(ray_cluster)" ];
                preCheck = ''
                  export HOME="$(mktemp -d)" MPLBACKEND=Agg
                  appendToVar pytestFlags "--numprocesses=$NIX_BUILD_CORES"
                  # Tests that run Make targets (make train, make checkpoint-list, ...) call .venv/bin/python: here
                  # this build's interpreter, which finds the installed package and its dependencies on PYTHONPATH.
                  # The stamps tell Make the environment and the extension are built: it runs neither pip nor maturin.
                  mkdir -p .venv/bin
                  ln -sf ${python.interpreter} .venv/bin/python
                  touch .venv/.deps-stamp .venv/.ext-stamp
                  # Tests left out, found by scanning the tests (ast) so that new ones need no edit here:
                  # - those taking the `browser` fixture drive headless Chromium through Selenium: no browser here;
                  # - Ray's: files that import ray anywhere and tests taking a fixture named ray_* or *_ray start a
                  #   cluster (ray.init, `ray start`), needing processes, ports and shared memory the sandbox does not
                  #   promise (tests marked ray_cluster are deselected by pytestFlags). They run in make-test.
                  ${python.interpreter} - > "$TMPDIR/left-out" <<'PY'
                  import ast, pathlib, re
                  for path in sorted(pathlib.Path("tests").glob("test_*.py")):
                      tree = ast.parse(path.read_text(encoding="utf-8"))
                      names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
                      names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
                      if any(name.split(".")[0] == "ray" for name in names):
                          print(path)
                          continue
                      for node in ast.walk(tree):
                          if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                              args = [arg.arg for arg in node.args.args]
                              if "browser" in args or any(re.search(r"(^|_)ray(_|$)", a) for a in args):
                                  print(f"{path}::{node.name}")
                  PY
                  while read -r test; do appendToVar disabledTestPaths "$test"; done < "$TMPDIR/left-out"
                ''
                # Optional test dependencies nixpkgs may lack: their tests are left out when it does.
                + lib.optionalString (lookup (requirement "schemathesis") == null) ''
                  appendToVar disabledTestPaths tests/test_ops_http_fuzz.py
                ''
                +
                  lib.optionalString
                    (lookup (requirement "stable-baselines3") == null || lookup (requirement "sb3-contrib") == null)
                    ''
                      appendToVar disabledTestPaths tests/test_ecosystem_sb3.py "tests/test_ecosystem_docs.py::test_a_recipe_runs_as_printed[sb3]"
                    '';
                # The HTTP tests serve on 127.0.0.1 (no test needs the network); macOS's sandbox asks for this.
                __darwinAllowLocalNetworking = true;

                meta = {
                  description = project.description;
                  license = lib.licenses.mit;
                  mainProgram = "townlet";
                };
              }
            );

          # The package with its tests (nixpkgs' pydantic-core does the same in passthru.tests.pytest).
          pytest = townlet.overridePythonAttrs (_: { doCheck = true; });

          # The package, its dependencies and the tools the checks and the app call.
          runPython = python.withPackages (_: [
            townlet
            ps.mypy
          ]);
          # Everything pyproject.toml names (runtime, every extra nixpkgs has) plus mypy's plugins, without
          # townlet itself: the shell's Python (Make builds the extension into .venv) and the mypy check's.
          devPython = python.withPackages (_: runtimeDeps ++ checkDeps ++ [ ps.mypy ]);

          # One check: a shell command in a writable copy of the source, offline.
          sourceCheck =
            name: inputs: command:
            pkgs.stdenv.mkDerivation {
              name = "townlet-${name}";
              src = source;
              nativeBuildInputs = inputs;
              dontConfigure = true;
              buildPhase = ''
                runHook preBuild
                export HOME="$(mktemp -d)"
                ${command}
                runHook postBuild
              '';
              installPhase = "touch $out";
            };
          cargoCheck =
            name: command:
            (sourceCheck name [
              pkgs.rustPlatform.cargoSetupHook
              pkgs.cargo
              pkgs.rustc
              pkgs.clippy
              pkgs.rustfmt
              python
            ] command).overrideAttrs
              (_: {
                inherit cargoDeps;
                buildInputs = lib.optionals pkgs.stdenv.hostPlatform.isDarwin [ pkgs.libiconv ];
                PYO3_PYTHON = python.interpreter;
              });
          # A Make target run with this flake's Python instead of .venv (EXT_STAMP= and TOOL_DEPS= drop the
          # prerequisites that would build .venv).
          makeTarget = target: ''
            make ${target} SHELL=${bash} PY=${runPython}/bin/python EXT_STAMP= TOOL_DEPS=
          '';

          # The Make-driven checks of earlier versions, kept for relaxed sandboxes: the Make targets create .venv,
          # pip install requirements-dev.txt from PyPI and let cargo download the crates, hence `__noChroot`.
          makeCheck =
            target:
            (sourceCheck "make-${target}" [
              pkgs.cargo
              pkgs.rustc
              pkgs.rustfmt
              pkgs.clippy
              pkgs.maturin
              python
              pkgs.gnumake
              pkgs.pkg-config
              pkgs.cacert
            ] "make ${target} SHELL=${bash}").overrideAttrs
              (
                _:
                {
                  __noChroot = true;
                  SSL_CERT_FILE = "${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt";
                  preBuild = ''export CARGO_HOME="$TMPDIR/cargo" PIP_CACHE_DIR="$TMPDIR/pip-cache"'';
                }
                // lib.optionalAttrs pkgs.stdenv.isLinux {
                  # pip's wheels are generic Linux builds: they look for libstdc++ and zlib here.
                  LD_LIBRARY_PATH = lib.makeLibraryPath [
                    pkgs.stdenv.cc.cc.lib
                    pkgs.zlib
                  ];
                }
              );
        in
        {
          packages = {
            default = townlet;
            inherit townlet;
          };

          checks = {
            package = townlet;
            inherit pytest;
            cargo-test = cargoCheck "cargo-test" "cargo test --workspace --exclude townlet-py --offline -j $NIX_BUILD_CORES";
            cargo-clippy = cargoCheck "cargo-clippy" "cargo clippy --workspace --all-targets --offline -j $NIX_BUILD_CORES -- -D warnings";
            cargo-fmt = cargoCheck "cargo-fmt" "cargo fmt --all -- --check";
            ruff = sourceCheck "ruff" [ pkgs.ruff ] ''
              ruff check --no-cache python tests tools bench
              ruff format --no-cache --check python tests tools bench
            '';
            mypy = sourceCheck "mypy" [ devPython ] "python -m mypy --cache-dir=$TMPDIR/mypy";
            stubtest = sourceCheck "stubtest" [ runPython ] ''
              python -m mypy.stubtest townlet._core --allowlist .stubtest-allowlist
            '';
            registry = sourceCheck "registry" [ runPython pkgs.gnumake ] (makeTarget "registry-validate");
            golden = sourceCheck "golden" [ runPython pkgs.gnumake ] (makeTarget "golden-check");
          };

          make-checks = builtins.mapAttrs (_: makeCheck) {
            lint = "lint";
            stubtest = "stubtest";
            test = "test";
            registry = "registry-validate";
            warm-start = "warm-start-check";
          };

          app = pkgs.writeShellScriptBin "townlet-run" ''
            # `make run` on the default town, in the current directory (logs/ppo/...). Arguments are Make
            # variables: `nix run . -- EPOCHS=100 RUN_DIR=logs/try`.
            exec ${pkgs.gnumake}/bin/make -f ${source}/Makefile run SHELL=${bash} EXT_STAMP= \
              PY=${runPython}/bin/python CONFIG=${source}/configs/examples/poc_hybrid.yaml "$@"
          '';

          devShell = pkgs.mkShell {
            packages = [
              devPython
              pkgs.cargo
              pkgs.rustc
              pkgs.rustfmt
              pkgs.clippy
              pkgs.maturin
              pkgs.gnumake
              pkgs.pkg-config
            ]
            ++ lib.optionals pkgs.stdenv.hostPlatform.isDarwin [ pkgs.libiconv ];
            RUST_SRC_PATH = "${pkgs.rustPlatform.rustLibSrc}";
            # The Makefile names /bin/bash; a variable in MAKEFLAGS counts as one on make's command line.
            MAKEFLAGS = "SHELL=${bash}";
            shellHook = ''
              # stdenv pins SOURCE_DATE_EPOCH to 1980: captures and checkpoints would all carry that date.
              unset SOURCE_DATE_EPOCH
              # Cargo takes the crates of Cargo.lock from the store (vendored), so builds need no network.
              export CARGO_HOME="$PWD/target/nix-cargo-home"
              mkdir -p "$CARGO_HOME"
              printf '[source.crates-io]\nreplace-with = "vendored-sources"\n[source.vendored-sources]\ndirectory = "%s"\n' \
                ${cargoDeps} > "$CARGO_HOME/config.toml"
              # Make runs everything from .venv: here a virtual environment over this shell's Python set, stamped as
              # installed so that Make never runs pip; `make build` builds the extension into it with maturin.
              if [ ! -e .venv ]; then
                ${devPython}/bin/python -m venv --system-site-packages .venv
                echo ${devPython} > .venv/.nix-python
                touch .venv/.deps-stamp
              elif [ ! -e .venv/.nix-python ]; then
                echo "townlet: .venv was not made by this shell (make setup?); Make uses it as it is (rm -rf .venv to use the shell's Python set)" >&2
              elif [ "$(cat .venv/.nix-python)" != ${devPython} ]; then
                echo "townlet: .venv was made by another version of this shell: rm -rf .venv and enter the shell again" >&2
              fi
              echo "townlet: 'make run' runs the default town, 'make check' lints and tests, 'make help' lists targets"
            '';
          };
        };
    in
    {
      packages = forAllSystems (s: s.packages);
      # The make-* checks join `checks` only when asked for (they need `sandbox = relaxed`, see the top of this
      # file): TOWNLET_NIX_MAKE_CHECKS=1 nix flake check --impure --option sandbox relaxed. A pure evaluation
      # (the default) reads the variable as empty.
      checks = forAllSystems (
        s:
        s.checks
        // lib.optionalAttrs (builtins.getEnv "TOWNLET_NIX_MAKE_CHECKS" == "1") (
          lib.mapAttrs' (name: check: lib.nameValuePair "make-${name}" check) s.make-checks
        )
      );
      # The same Make-driven checks, always reachable: nix build .#make-checks.test --option sandbox relaxed
      legacyPackages = forAllSystems (s: {
        make-checks = s.make-checks;
      });
      devShells = forAllSystems (s: {
        default = s.devShell;
      });
      apps = forAllSystems (s: {
        default = {
          type = "app";
          program = "${s.app}/bin/townlet-run";
          meta.description = "make run: train PPO on the default town, evaluate it against the expert and random";
        };
      });
    };
}
