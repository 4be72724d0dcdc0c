"""Mixed mode's anneal ratio through the real command line, in seed 001's form (`run_training.py CONFIG --mode
mixed --epochs 1 --ppo-log LOG`, the replay data named by the config): every record carries `anneal_ratio`, the
blend changes what the rollout does, and the records stay valid PPO records that are not anneal records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import CliResult, _cli_env, default_config_data, dump_yaml
from townlet.telemetry.records import check_record, is_anneal_record


def tool(script: str, *args: str | Path, timeout: float = 300) -> CliResult:
    argv = [sys.executable, f"tools/{script}", *(str(a) for a in args)]
    proc = subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, timeout=timeout, check=False)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def mixed_config(path: Path, manifest: Path, ratio: float | None) -> Path:
    data = default_config_data()
    data["ppo"] = {"num_envs": 1, "rollout_ticks": 16, "warm_start": {"inherit": None}}
    data["training"] = {"replay_manifest": str(manifest), **({"anneal_ratio": ratio} if ratio is not None else {})}
    path.write_text(dump_yaml(data), encoding="utf-8")
    return path


def test_mixed_mode_anneal_ratio_in_telemetry(tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    res = tool("capture_rollout.py", mixed_config(tmp_path / "c.yaml", tmp_path, None), "--output", capture,
               "--ticks", "16")  # fmt: skip
    assert res.returncode == 0, str(res)
    manifest = capture / "rollout_sample_manifest.json"
    records: dict[float, dict[str, Any]] = {}
    for ratio in (0.25, None):
        cfg = mixed_config(tmp_path / f"mixed_{ratio}.yaml", manifest, ratio)
        log = tmp_path / f"ppo_{ratio}.jsonl"
        res = tool("run_training.py", cfg, "--mode", "mixed", "--epochs", "1", "--ppo-log", log,
                   "--checkpoint", tmp_path / f"ck_{ratio}.json")  # fmt: skip
        assert res.returncode == 0, str(res)
        (rec,) = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
        assert check_record(rec, where=str(log)) == [] and rec["data_mode"] == "mixed"
        assert not is_anneal_record(rec)
        records[1.0 if ratio is None else ratio] = rec
    assert records[0.25]["anneal_ratio"] == 0.25 and records[1.0]["anneal_ratio"] == 1.0
    # Three quarters of the rollout's actions are the expert's: the rollout (and so the loss) is not the policy's.
    assert records[0.25]["episode_return_mean"] != records[1.0]["episode_return_mean"] or (
        records[0.25]["loss_total"] != records[1.0]["loss_total"]
    )
