"""Configs that hold what JSON and the world cannot carry: NaN/inf and YAML dates.

Each is refused where the config is loaded, in any section (world sections checked by Rust, the Python sections
ppo/bc/training) and in an included file, with one `error:` line naming FILE:LINE and the key path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import CORE_MANIFEST, DEFAULT_CONFIG, DEFAULT_PERTURBATIONS, RunCli, assert_one_line_error


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# (case id, text to replace in the main config, replacement, key path named, text on the line named)
MAIN_CASES = [
    ("nan-nested", "faint_threshold: 0.05", "faint_threshold: .nan", "needs.faint_threshold", "faint_threshold"),
    ("inf-deep", "meal_cost: 0.3", "meal_cost: .inf", "economy.prices.meal_cost", "meal_cost: .inf"),
    ("neg-inf-flow", "wage_rate: 0.006", "wage_rate: -.inf", "jobs.grocer.wage_rate", "wage_rate: -.inf"),
    ("overflow", "starting_wallet: 5.0", "starting_wallet: 1.0e+400", "economy.starting_wallet", "starting_wallet"),
    ("nan-in-list", "balanced: 1.0", "balanced: .NaN", "personalities.distribution.balanced", "balanced"),
    ("date", "config_id: poc_hybrid_v1", "config_id: 2024-01-01", "config_id", "config_id"),
    (
        "datetime",
        "respawn_wallet: 2.0",
        "respawn_wallet: 2024-01-01 10:00:00",
        "lifecycle.respawn_wallet",
        "respawn_wallet",
    ),
]

# Python sections (validated by pydantic): appended to the main config.
PYTHON_CASES = [
    ("ppo-nan", "ppo:\n  learning_rate: .nan\n", "ppo.learning_rate"),
    ("bc-inf", "bc:\n  weight_decay: .inf\n", "bc.weight_decay"),
    ("ppo-quoted-nan", 'ppo:\n  ent_coef: "nan"\n', "ppo.ent_coef"),
    ("ppo-quoted-overflow", 'ppo:\n  vf_coef: "1e400"\n', "ppo.vf_coef"),
    ("training-date", "training:\n  started: 2024-01-01\n", "training.started"),
]


def _main_config(tmp_path: Path) -> tuple[Path, str]:
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    text = _replace_once(text, "affordances: configs/", f"affordances: {CORE_MANIFEST.parent.parent}/")
    text = _replace_once(text, "perturbations: configs/", f"perturbations: {DEFAULT_PERTURBATIONS.parent.parent}/")
    return tmp_path / "town.yaml", text


def _check(cli: RunCli, path: Path, text: str, key: str, on_line: str, main: Path | None = None) -> None:
    """Both `validate` and `sim run` on the config (`main`, when the bad value is in an included `path`)."""
    line = _line_of(text, on_line)
    config = main or path
    for args in (["validate", config], ["sim", "run", "--config", config, "--tick-limit", "1"]):
        res = cli(*args)
        out = assert_one_line_error(res, f"{path}:{line}: {key}: ")
        # A quoted "nan" in a bounded field fails the bound first ("... got "nan""): still file, line and key.
        assert "finite" in out or "date" in out or '"nan"' in out, out


@pytest.mark.parametrize(("old", "new", "key", "on_line"), [c[1:] for c in MAIN_CASES], ids=[c[0] for c in MAIN_CASES])
def test_world_sections_refuse_non_finite_and_dates(
    tmp_path: Path, cli: RunCli, old: str, new: str, key: str, on_line: str
) -> None:
    path, text = _main_config(tmp_path)
    text = _replace_once(text, old, new)
    path.write_text(text, encoding="utf-8")
    _check(cli, path, text, key, on_line)


@pytest.mark.parametrize(("extra", "key"), [c[1:] for c in PYTHON_CASES], ids=[c[0] for c in PYTHON_CASES])
def test_python_sections_refuse_non_finite_and_dates(tmp_path: Path, cli: RunCli, extra: str, key: str) -> None:
    path, text = _main_config(tmp_path)
    text = text + "\n" + extra
    path.write_text(text, encoding="utf-8")
    _check(cli, path, text, key, extra.splitlines()[1].strip())


INCLUDE_CASES = [
    ("affordances", CORE_MANIFEST, "effects: {hunger: 0.5, energy: 0.02}", "effects: {hunger: .inf, energy: 0.02}",
     "affordances[0].effects.hunger", "hunger: .inf"),
    ("affordances", CORE_MANIFEST, "capacity: 1\n    stock", "capacity: 1\n    since: 2024-01-01\n    stock",
     "object_types.fridge.since", "since:"),
    ("perturbations", DEFAULT_PERTURBATIONS, "prob_per_day: 0.3", "prob_per_day: .nan",
     "events.grocer_price_spike.prob_per_day", "prob_per_day: .nan"),
    ("perturbations", DEFAULT_PERTURBATIONS, "magnitude: [1.2, 1.8]", "magnitude: [1.2, -.inf]",
     "events.grocer_price_spike.magnitude[1]", "magnitude"),
]  # fmt: skip


@pytest.mark.parametrize(("include", "source", "old", "new", "key", "on_line"), INCLUDE_CASES)
def test_included_files_refuse_non_finite_and_dates(
    tmp_path: Path, cli: RunCli, include: str, source: Path, old: str, new: str, key: str, on_line: str
) -> None:
    inc_text = _replace_once(source.read_text(encoding="utf-8"), old, new)
    inc = tmp_path / f"{include}.yaml"
    inc.write_text(inc_text, encoding="utf-8")
    path, text = _main_config(tmp_path)
    text = "\n".join(f"{include}: {inc}" if line.startswith(f"{include}: ") else line for line in text.splitlines())
    path.write_text(text + "\n", encoding="utf-8")
    _check(cli, inc, inc_text, key, on_line, main=path)
