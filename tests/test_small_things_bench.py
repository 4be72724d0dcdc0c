"""`make bench`'s runner (`bench/run_all.py`): one row per figure with the goal the bench script itself
carries; a missing, failing or silent script is a row saying so. And `bench/capture.py --json` prints the
issue's figures with their goals. (Speed is never asserted: only that the figures are there.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import REPO_ROOT, _cli_env

RUN_ALL = REPO_ROOT / "bench/run_all.py"


def _script(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(f"import json, sys\n{body}\n", encoding="utf-8")


def _run_all(*args: str | Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(RUN_ALL), *(str(a) for a in args)]
    return subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, timeout=120, check=False)


def test_runner_reads_goals_from_the_scripts(tmp_path: Path) -> None:
    out = {"speed": 5.0, "nested": {"lag": 3.0}, "extra": 7, "goals": {
        "speed": {"value": 4, "op": ">="}, "nested.lag": {"value": 2.5, "op": "<="}}, "figures": ["extra"]}  # fmt: skip
    _script(tmp_path, "tick", f"assert '--json' in sys.argv\nprint('warming up')\nprint(json.dumps({out!r}))")
    _script(tmp_path, "vec_step", "print(json.dumps({'ratio_speed': 3.0, 'goal_ratio_speed': 4, 'goal_return': 'x'}))")
    _script(tmp_path, "train", "sys.exit('boom: no town')")
    _script(tmp_path, "capture", "print('not json')")
    runs = {"runs": [{"seed": 1, "ratio": 1.2, "kpis": {"on_time_rate": 0.9}}, {"seed": 2, "ratio": 0.8, "kpis": {}}],
            "goals": {"ratio": {"value": 1.0, "op": ">="}, "on_time_rate": {"value": 0.95, "op": ">="}}}  # fmt: skip
    _script(
        tmp_path,
        "learn_town",
        f"assert sys.argv[-2:] == ['--bc-minutes', '0.5'], sys.argv\nprint(json.dumps({runs!r}))",
    )
    # vs_sb3 is missing.
    res = _run_all("--bench-dir", tmp_path, "--json", "--minutes", "0.5")
    assert res.returncode == 0, res.stderr
    rows: list[dict[str, Any]] = json.loads(res.stdout)["rows"]
    got = {(r["bench"], r["figure"]): (r["value"], r["goal"], r["met"]) for r in rows}
    assert got[("tick", "speed")] == (5.0, ">= 4", True)
    assert got[("tick", "nested.lag")] == (3.0, "<= 2.5", False)
    assert got[("tick", "extra")] == (7, "", None)
    assert got[("vec_step", "ratio_speed")] == (3.0, ">= 4", False)  # the older goal_<figure> keys
    assert got[("learn_town", "runs[0] seed 1: ratio")] == (1.2, ">= 1", True)
    assert got[("learn_town", "runs[1] seed 2: ratio")] == (0.8, ">= 1", False)
    assert got[("learn_town", "runs[0] seed 1: on_time_rate")] == (0.9, ">= 0.95", False)
    notes = {r["bench"]: r["note"] for r in rows if r["figure"] == "—"}
    assert notes["train"].startswith("failed (exit 1)") and "boom: no town" in notes["train"]
    assert notes["capture"] == "printed no JSON object with --json"
    assert notes["vs_sb3"] == "missing: vs_sb3.py does not exist"
    # A bench that ran notes its run time and the load average it started under (figures move with the load).
    tick_note = next(r["note"] for r in rows if r["bench"] == "tick")
    assert re.fullmatch(r"\d+ s, load \d+\.\d", tick_note), tick_note
    # The table itself: one Rich table, every bench in it, the count of goals met.
    res = _run_all("--bench-dir", tmp_path, "--only", "tick,vs_sb3")
    assert res.returncode == 0, res.stderr
    assert "figure" in res.stdout and "met?" in res.stdout and "missing" in res.stdout
    assert "1 of 2 goals met" in res.stdout and "load average" in res.stdout
    res = _run_all("--only", "nope")
    assert res.returncode == 2 and "unknown nope" in res.stderr


def test_capture_bench_prints_the_issue_figures_with_goals() -> None:
    argv = [sys.executable, str(REPO_ROOT / "bench/capture.py"), "--json", "--quick", "--repeats", "1",
            "--long-ticks", "60"]  # fmt: skip
    res = subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    for key in ("default_town_vs_floor", "suite_vs_floor", "mb_per_sec"):
        assert isinstance(out[key], float) and out[key] > 0, key
    assert out["goals"] == {
        "default_town_vs_floor": {"value": 1.2, "op": "<="},
        "suite_vs_floor": {"value": 1.5, "op": "<="},
    }
    assert out["figures"] == ["mb_per_sec"]
    assert "goal_overhead_ratio" not in out  # the old "< 10 % of stepping" yardstick is gone
