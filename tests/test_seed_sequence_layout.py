"""The per-config checkpoint layout (`logs/<config_id>/<phase>/checkpoints/`, SPEC §8) as the tools see it: a run
saves there by default, `checkpoint list` finds it from `logs/` (or the config's folder) without --recursive, and
`registry lookup` names the config's checkpoint folders."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import RunCli, assert_one_line_error

QC = "configs/scenarios/queue_conflict.yaml"
PPO_DIR = "scenario_queue_conflict/ppo/checkpoints"


def test_the_tools_know_the_per_config_layout(cli: RunCli, tmp_path: Path) -> None:
    res = cli("train", "--config", QC, "--epochs", "1", "--rollout-ticks", "8", "--num-envs", "1", "-q", timeout=300)
    assert res.returncode == 0, str(res)
    assert f"checkpoint logs/{PPO_DIR}/ppo_latest.json" in res.stdout, str(res)

    rows = json.loads(cli("checkpoint", "list", "--json").stdout)  # FOLDER defaults to logs
    assert [(r["file"], r["config_id"], r["metadata"]["phase"]) for r in rows] == [
        (f"{PPO_DIR}/ppo_best.json", "scenario_queue_conflict", "ppo"),
        (f"{PPO_DIR}/ppo_latest.json", "scenario_queue_conflict", "ppo"),
    ]
    rows = json.loads(cli("checkpoint", "list", "logs/scenario_queue_conflict", "--json").stdout)
    assert [r["file"] for r in rows] == ["ppo/checkpoints/ppo_best.json", "ppo/checkpoints/ppo_latest.json"]
    table = cli("checkpoint", "list", "logs")
    assert table.returncode == 0 and "config id" in table.stdout and "scenario_queue_conflict" in table.stdout

    reg = tmp_path / "registry.json"
    res = cli("registry", "register", QC, "--label", "qc", "--registry", reg)
    assert res.returncode == 0, str(res)
    sha = json.loads(reg.read_text(encoding="utf-8"))["entries"].popitem()[0]
    res = cli("registry", "lookup", sha[:12], "--registry", reg)
    assert res.returncode == 0, str(res)
    assert "bc checkpoints: logs/scenario_queue_conflict/bc/checkpoints (none here)" in res.stdout
    assert f"ppo checkpoints: logs/{PPO_DIR} (2 here)" in res.stdout


def test_config_is_the_positional_config_or_the_option_not_two(cli: RunCli) -> None:
    """Seed 003's `run_training.py --config C` form; the dry run shows the per-config save path either way."""
    for args in ((QC,), ("--config", QC), ("-c", QC), (QC, "--config", QC)):
        res = cli("train", *args, "--dry-run")
        assert res.returncode == 0, str(res)
        assert f"save path ok: logs/{PPO_DIR}/ppo_latest.json" in res.stdout, str(res)
    assert_one_line_error(cli("train", QC, "--config", "configs/examples/poc_hybrid.yaml"), "two configs given")
    assert_one_line_error(cli("train", "--dry-run"), "missing the config: give CONFIG or --config CONFIG")
