"""The code in docs/ecosystem.md runs as printed (from a checkout's root), with the SB3 training budget cut to one
rollout. The RLlib snippet is not run: Ray is not a dependency."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO_ROOT

DOC = REPO_ROOT / "docs/ecosystem.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def runnable() -> list[tuple[str, str]]:
    out = []
    for block in python_blocks():
        if "ray." in block:
            continue
        first = next(line for line in block.splitlines() if "townlet." in line)
        out.append((first.split()[1], block))
    return out


def test_the_doc_has_the_recipes() -> None:
    names = [name for name, _ in runnable()]
    assert names == ["townlet.env.sb3", "townlet.env", "townlet.env"], names
    assert any("ray." in b for b in python_blocks())


@pytest.mark.parametrize(("module", "code"), runnable(), ids=["sb3", "vectown", "townenv"])
def test_a_recipe_runs_as_printed(module: str, code: str, scratch_cwd: Path) -> None:
    budget = "model.learn(total_timesteps=200_000)"
    if module == "townlet.env.sb3":
        assert budget in code
        code = code.replace(budget, "model.learn(total_timesteps=1)  # one rollout")
    exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_recipe__"})
    if module == "townlet.env.sb3":
        assert (scratch_cwd / "maskable_ppo_town.zip").is_file()
