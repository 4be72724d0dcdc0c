"""The package layout holds: each part imports only what docs/architecture.md allows, library code never prints,
and modules stay small. The layering table is read from the doc, so the doc is the rule."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "python/townlet"
DOC = REPO_ROOT / "docs/architecture.md"
HELPERS = ("errors", "jsonio", "clock", "paths")
MAX_LINES = 500


def layering() -> dict[str, set[str]]:
    """part -> the parts it may import, from the table between the layering markers in the doc."""
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- layering: begin -->")[1].split("<!-- layering: end -->")[0]
    rules: dict[str, set[str]] = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] in ("part", "") or set(cells[0]) <= {"-"}:
            continue
        rules[cells[0]] = {c.strip() for c in cells[1].split(",") if c.strip()}
    return rules


def part_of(module: str) -> str:
    """`townlet.sim.env` -> `sim`; `townlet.jsonio` -> `helpers`; `townlet.training.network` stays whole."""
    parts = module.split(".")[1:]
    if not parts or parts[0] in ("__init__", "__main__"):
        return "package"  # the package's public face re-exports from every part
    if parts[0] in HELPERS:
        return "helpers"
    if parts[0] == "training" and parts[1:2] == ["network"]:
        return "training.network"
    return parts[0]


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        out.append((".".join(rel.parts).removesuffix(".__init__"), path))
    return out


def imported(path: Path, module: str) -> set[str]:
    """Every `townlet...` module the file imports, at any depth (`from townlet import _core` -> `townlet._core`)."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == "townlet")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: climb from the importing package
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            if base.split(".")[0] != "townlet":
                continue
            for alias in node.names:
                names.add(f"{base}.{alias.name}" if base == "townlet" else base)
    return names


def allowed(rules: dict[str, set[str]], src: str, dst: str) -> bool:
    if src == "package" or src == dst or {src, dst} <= {"training", "training.network"}:
        return True
    if src == "training.network":
        return dst in rules["training"] or dst == "training"
    if dst == "training.network":
        return "training.network" in rules[src] or "training" in rules[src]
    return dst in rules[src]


def test_the_layering_table_names_every_part() -> None:
    rules = layering()
    parts = {part_of(m) for m, _ in modules()} - {"package", "training.network"}
    assert parts <= set(rules), f"parts missing from docs/architecture.md: {sorted(parts - set(rules))}"
    for src, dsts in rules.items():
        assert dsts <= set(rules) | {"_core", "training.network"}, f"{src}: unknown parts {dsts - set(rules)}"


def test_every_import_follows_the_layering() -> None:
    rules = layering()
    bad = []
    for module, path in modules():
        src = part_of(module)
        for name in sorted(imported(path, module)):
            dst = part_of(name)
            if dst != "package" and not allowed(rules, src, dst):
                bad.append(f"{path.relative_to(REPO_ROOT)}: {src} imports {name} ({dst})")
    assert not bad, "\n".join(bad)


PRINTING = re.compile(r"\b(print\(|sys\.(stdout|stderr)\.write|typer\.echo|Console\()")


def test_library_code_never_prints() -> None:
    bad = []
    for module, path in modules():
        if part_of(module) == "cli" or module == "townlet.__main__":
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if PRINTING.search(code) and not code.lstrip().startswith(('"', "'")):
                bad.append(f"{path.relative_to(REPO_ROOT)}:{lineno}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_modules_stay_small() -> None:
    big = [
        f"{path.relative_to(REPO_ROOT)}: {n} lines"
        for _, path in modules()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) >= MAX_LINES
    ]
    assert not big, "\n".join(big)


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The import scan is real: a telemetry module importing training is flagged."""
    fake = tmp_path / "x.py"
    fake.write_text("from townlet.training.trainer import Trainer\nfrom townlet import _core\n")
    names = imported(fake, "townlet.telemetry.x")
    assert names == {"townlet.training.trainer", "townlet._core"}
    rules = layering()
    assert not allowed(rules, "telemetry", part_of("townlet.training.trainer"))
    assert not allowed(rules, "telemetry", part_of("townlet._core"))
    assert allowed(rules, "artifacts", part_of("townlet.training.network"))
