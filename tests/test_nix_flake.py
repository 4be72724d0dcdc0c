"""flake.nix without building anything (docs/nix.md, "What was verified"): its deselected tests exist, pyproject's
required dependencies are among the nixpkgs packages docs/nix.md checked, and, where nix-instantiate is installed,
the flake parses and its outputs evaluate against tests/nix_stub.nix, a stand-in for nixpkgs holding only the
attribute paths checked in nixpkgs' sources, with the versions docs/nix.md lists."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT

FLAKE = REPO_ROOT / "flake.nix"
STUB = REPO_ROOT / "tests/nix_stub.nix"
DOC = REPO_ROOT / "docs/nix.md"
NIX = shutil.which("nix-instantiate")
needs_nix = pytest.mark.skipif(NIX is None, reason="nix-instantiate is not installed (Debian: apt-get install nix-bin)")

SANDBOXED = {"package", "pytest", "cargo-test", "cargo-clippy", "cargo-fmt", "ruff", "mypy", "stubtest", "registry"}
SANDBOXED |= {"golden"}
MAKE_CHECKS = {"lint", "stubtest", "test", "registry", "warm-start"}


def nix_attr(name: str) -> str:
    """A requirement's name as nixpkgs' python3Packages spells it (lower case, dashes)."""
    return re.sub(r"[._]", "-", name.lower())


def requirement_name(spec: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    assert match, spec
    return match.group(1)


def checked_versions() -> dict[str, str]:
    """docs/nix.md's table of checked nixpkgs Python packages: attribute -> the version read."""
    rows = re.findall(r"^\| `[^`]+`[^|]* \| `([a-z0-9-]+)` \| ([0-9][^ |]*) \|", DOC.read_text(encoding="utf-8"), re.M)
    assert rows, "docs/nix.md has no table of checked packages"
    return dict(rows)


def project() -> dict[str, Any]:
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return dict(data["project"])


def browser_tests() -> set[tuple[str, str]]:
    """(file, test) of every test that takes the `browser` fixture (headless Chromium)."""
    found: set[tuple[str, str]] = set()
    for path in sorted((REPO_ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            is_test = isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
            if is_test and "browser" in [a.arg for a in node.args.args]:
                found.add((path.name, node.name))
    return found


def test_the_flakes_deselected_tests_exist() -> None:
    for file, name in re.findall(r"tests/(test_\w+\.py)::(\w+)", FLAKE.read_text(encoding="utf-8")):
        text = (REPO_ROOT / "tests" / file).read_text(encoding="utf-8")
        assert re.search(rf"^def {name}\(", text, re.M), (file, name)


def run_scan(cwd: Path) -> set[str]:
    """Run the pytest check's scan for tests to leave out (the Python snippet of its preCheck) in CWD."""
    match = re.search(r"<<'PY'\n(.*?)\n\s*PY\n", FLAKE.read_text(encoding="utf-8"), re.S)
    assert match, "no test scan in flake.nix"
    argv = [sys.executable, "-c", textwrap.dedent(match.group(1))]
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    return set(res.stdout.split())


def test_the_flakes_scan_leaves_out_browser_and_ray_tests(tmp_path: Path) -> None:
    found = run_scan(REPO_ROOT)
    browser = {f"tests/{file}::{name}" for file, name in browser_tests()}
    assert browser and browser <= found, browser - found
    (tmp_path / "tests").mkdir()
    files = {
        "test_a.py": "def test_page(browser): pass\ndef test_plain(tmp_path): pass\n",
        "test_b.py": "def test_lazy():\n    import ray\n",
        "test_c.py": "def test_cluster(ray_cluster): pass\ndef test_arrays(array, tray): pass\n",
        "test_d.py": "from ray.util import ActorPool\ndef test_pool(): pass\n",
        "helper.py": "import ray\n",
    }
    for name, text in files.items():
        (tmp_path / "tests" / name).write_text(text, encoding="utf-8")
    assert run_scan(tmp_path) == {
        "tests/test_a.py::test_page",
        "tests/test_b.py",
        "tests/test_c.py::test_cluster",
        "tests/test_d.py",
    }


def test_required_dependencies_are_checked_nixpkgs_packages() -> None:
    """The flake stops evaluating on a required dependency nixpkgs lacks: each must be one docs/nix.md checked."""
    versions = checked_versions()
    missing = [spec for spec in project()["dependencies"] if nix_attr(requirement_name(spec)) not in versions]
    assert not missing, f"add these to docs/nix.md's table after checking nixpkgs has them: {missing}"


Env = dict[str, str] | None


def run_nix(expr: str, flake_dir: Path = REPO_ROOT, env: Env = None) -> subprocess.CompletedProcess[str]:
    """`nix-instantiate --eval --strict --json` of EXPR, where `o` is the flake's outputs against the stub nixpkgs
    (its Python packages at docs/nix.md's versions; ray built for Linux only)."""
    versions = " ".join(f'"{attr}" = "{version}";' for attr, version in checked_versions().items())
    prelude = (
        f"let o = import {STUB} {{ flake = {flake_dir / 'flake.nix'}; versions = {{ {versions} }};"
        ' platforms = { ray = [ "x86_64-linux" "aarch64-linux" ]; }; }; in '
    )
    assert NIX is not None
    argv = [NIX, "--eval", "--strict", "--json", "-E", prelude + expr]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, env=env)


def evaluate(expr: str, flake_dir: Path = REPO_ROOT, env: Env = None) -> tuple[Any, str]:
    res = run_nix(expr, flake_dir, env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout), res.stderr


@needs_nix
def test_the_flake_parses() -> None:
    assert NIX is not None
    res = subprocess.run([NIX, "--parse", str(FLAKE)], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr


SUMMARY = """builtins.deepSeq o (builtins.mapAttrs (sys: checks: {
  checks = builtins.attrNames checks;
  noChroot = builtins.filter (n: checks.${n}.__noChroot or false) (builtins.attrNames checks);
  deps = map (d: d.pname) o.packages.${sys}.default.dependencies;
  checkInputs = map (d: d.pname or d.name) o.packages.${sys}.default.nativeCheckInputs;
  inherit (o.packages.${sys}.default) pytestFlags preCheck doCheck;
  testsRun = checks.pytest.doCheck;
  makeChecks = builtins.attrNames o.legacyPackages.${sys}.make-checks;
  makeNoChroot = builtins.all (c: c.__noChroot) (builtins.attrValues o.legacyPackages.${sys}.make-checks);
  app = o.apps.${sys}.default.program;
  shell = o.devShells.${sys}.default.MAKEFLAGS;
}) o.checks)"""


@needs_nix
def test_the_flake_evaluates_against_the_checked_nixpkgs_paths() -> None:
    out, stderr = evaluate(SUMMARY)
    assert set(out) == {"x86_64-linux", "aarch64-linux", "x86_64-darwin", "aarch64-darwin"}
    required = {nix_attr(requirement_name(s)) for s in project()["dependencies"]}
    for system, s in out.items():
        assert set(s["checks"]) == SANDBOXED, (system, s["checks"])
        assert s["noChroot"] == [], system
        assert set(s["makeChecks"]) == MAKE_CHECKS and s["makeNoChroot"], system
        assert required <= set(s["deps"]), (system, required - set(s["deps"]))
        assert {"pytest-check-hook", "gnumake", "git", "pytest-xdist"} <= set(s["checkInputs"]), system
        assert s["doCheck"] is False and s["testsRun"] is True
        assert "-mnot(ray_cluster)" in s["pytestFlags"]
        assert 'appendToVar disabledTestPaths "$test"; done < "$TMPDIR/left-out"' in s["preCheck"]
        assert "ln -sf" in s["preCheck"] and ".venv/.ext-stamp" in s["preCheck"]
        assert s["app"].endswith("/bin/townlet-run") and s["shell"].startswith("SHELL=")
    # ray (when pyproject has it as an extra) is a dependency only where nixpkgs builds it.
    extras = project().get("optional-dependencies", {}).values()
    if any(requirement_name(r) == "ray" for group in extras for r in group):
        assert "ray" in out["x86_64-linux"]["deps"] and "ray" not in out["aarch64-darwin"]["deps"]
    # A warning may name extras nixpkgs lacks or versions outside pyproject's ranges, never a required dependency.
    for line in stderr.splitlines():
        for name in required:
            assert not re.search(rf"[;:] {name}[<>=!~ ]", line.lower()), line


@needs_nix
def test_the_make_checks_join_the_checks_only_when_asked() -> None:
    out, _ = evaluate(
        "builtins.mapAttrs (_: c: builtins.filter (n: c.${n}.__noChroot or false) (builtins.attrNames c)) o.checks",
        env={"TOWNLET_NIX_MAKE_CHECKS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert set(out["x86_64-linux"]) == {f"make-{name}" for name in MAKE_CHECKS}


@needs_nix
def test_requirements_map_to_nixpkgs_names_and_a_missing_required_one_is_named(tmp_path: Path) -> None:
    shutil.copy(FLAKE, tmp_path / "flake.nix")
    pyproject = """[project]
name = "townlet"
version = "0.1.0"
description = "x"
dependencies = ["PyYAML>=6", "prompt_toolkit>=3", "numpy>=99"]
[project.optional-dependencies]
dev = ["pytest-xdist"]
extra = ["ray[default]>=2.0", "not-in-nixpkgs>=1"]
"""
    (tmp_path / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    (tmp_path / "Cargo.lock").write_text("version = 4\n", encoding="utf-8")
    (tmp_path / "requirements-dev.txt").write_text("# pins\nruff==99.0\nnumpy==1.0\n", encoding="utf-8")
    out, stderr = evaluate('map (d: d.pname) o.packages."x86_64-linux".default.dependencies', flake_dir=tmp_path)
    assert out == ["pyyaml", "prompt-toolkit", "numpy", "ray"]
    assert "numpy>=99 (nixpkgs has" in stderr and "not-in-nixpkgs>=1 (not in nixpkgs" in stderr
    assert "requirements-dev.txt pins ruff==99.0, nixpkgs has " in stderr and "numpy==1.0" not in stderr
    (tmp_path / "pyproject.toml").write_text(pyproject.replace('"numpy>=99"', '"no-such-thing>=1"'), encoding="utf-8")
    res = run_nix('o.packages."x86_64-linux".default.dependencies', flake_dir=tmp_path)
    assert res.returncode != 0
    assert "pyproject.toml requires no-such-thing>=1, and nixpkgs' python3Packages has no no-such-thing" in res.stderr
