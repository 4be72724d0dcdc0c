"""`tools/promotion_drill.py` (make promotion-drill) as a user runs it, in a scratch folder: a trained candidate is
promoted on a live shard and the forced canary breach rolls it back (exit 0, every step PASS, the history files);
without a canary nothing rolls back and the drill fails (exit 1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT, _cli_env
from test_promotion import checkpoint


def drill(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(REPO_ROOT / "tools/promotion_drill.py"), "--out", str(out), "--window", "40",
            "--bench-ticks", "40", *args]  # fmt: skip
    return subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, timeout=300, check=False)


def test_the_drill_promotes_a_trained_candidate_and_the_breach_rolls_it_back(tmp_path: Path) -> None:
    res = drill(tmp_path / "drill", "--epochs", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    steps = [line for line in lines if line.startswith("[")]
    assert steps and all(line.startswith("[PASS]") for line in steps), res.stdout
    text = res.stdout
    for step in ("train candidate to shadow", "two passing windows", "promote_policy", "acting policy swapped",
                 "canary breach -> automatic rollback", "shard ticks/s with shadow evaluation",
                 "journal replay"):  # fmt: skip
        assert f"[PASS] {step}:" in text, text
    # Training published the candidate to the shadow folder by default; the release folder holds what was promoted.
    assert "[PASS] train candidate to shadow: snapshots/shadow/poc_hybrid_v1/ppo_latest.json" in text
    assert (tmp_path / "drill/snapshots/rel/ppo_latest.json").is_file()
    assert "(1 automatic rollback) replayed to tick" in text and "world hash equal; history files unchanged" in text
    assert "latency " in text and " ticks/s" in text
    history = (tmp_path / "drill/logs/promotion_history.jsonl").read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in history]
    assert [e["event"] for e in events] == ["promoted", "rollback"]
    assert events[1]["alert"]["alert"] == "starvation_spike" and events[1]["to"] == "expert"
    assert "**rollback** expert" in (tmp_path / "drill/ops/rollouts.md").read_text(encoding="utf-8")


def test_without_a_canary_nothing_rolls_back_and_the_drill_fails(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path / "cand.json", seed=7)
    res = drill(tmp_path / "drill", "--candidate", str(ckpt), "--canary-windows", "0")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "[PASS] acting policy swapped:" in res.stdout
    assert "[FAIL] canary breach -> automatic rollback:" in res.stdout
    assert res.stdout.splitlines()[-1].startswith("promotion drill: FAIL")
