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
    """(name, code) per recipe; a block that uses `model` without making one continues the block before it."""
    out: list[tuple[str, str]] = []
    for block in python_blocks():
        if "ray." in block:
            continue
        if "model." in block and "model = " not in block:
            name, before = out.pop()
            out.append((name + "+evaluate", before + "\n" + block))
            continue
        first = next(line for line in block.splitlines() if "townlet." in line)
        out.append((first.split()[1], block))
    return out


def test_the_doc_has_the_recipes() -> None:
    names = [name for name, _ in runnable()]
    assert names == ["townlet.env.sb3+evaluate", "townlet.env", "townlet.env"], names
    assert any("ray." in b for b in python_blocks())


@pytest.mark.parametrize(("module", "code"), runnable(), ids=["sb3", "vectown", "townenv"])
def test_a_recipe_runs_as_printed(module: str, code: str, scratch_cwd: Path) -> None:
    cuts = {  # the budgets, cut for a test: one rollout, one short evaluation
        "model.learn(total_timesteps=200_000)": "model.learn(total_timesteps=1)",
        "seeds=3)": "seeds=1, ticks=20, num_towns=2)",
    }
    if module.startswith("townlet.env.sb3"):
        for printed, cut in cuts.items():
            assert printed in code
            code = code.replace(printed, cut)
    namespace = {"__name__": "__doc_recipe__"}
    exec(compile(code, str(DOC), "exec"), namespace)
    if module.startswith("townlet.env.sb3"):
        assert (scratch_cwd / "maskable_ppo_town.zip").is_file()
        assert set(namespace["report"].policies) == {"sb3", "expert"}  # type: ignore[attr-defined]
