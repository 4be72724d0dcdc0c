"""`bench/ray_scale.py --json` runs on the loopback two-node cluster and prints `shards` -> agent-steps/s with the
other figures docs/scale.md reads (speed itself is the bench's business, never a test's)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from conftest import REPO_ROOT


@pytest.mark.ray_cluster
def test_ray_scale_json_prints_shards_to_agent_steps_per_second(ray_cluster: Any) -> None:
    argv = [sys.executable, str(REPO_ROOT / "bench/ray_scale.py"), "--json", "--epochs", "1", "--towns", "2",
            "--rollout-ticks", "8", "--shards", "2", "--repeats", "1",
            "--ray-address", ray_cluster.address]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["benchmark"] == "ray_scale"
    for table in ("shards", "train_shards"):
        assert set(out[table]) == {"2"}
        assert all(isinstance(v, float) and v > 0 for v in out[table].values())
    for name in ("trainer", "local"):
        assert {"rollout", "train", "learn"} <= set(out[name]) and out[name]["learn"] > 0
    block = out["block"]
    # 2 towns x 9 agents x 8 ticks of 578 float32 observations at least.
    assert block["bytes_per_epoch"] > 2 * 9 * 8 * 578 * 4
    assert set(block["transport"]) == {"2"} and block["transport"]["2"]["bytes_per_block"] > 0
    assert block["weights_bytes"] > 0
    for figure in out["figures"]:
        node: Any = out
        for part in figure.split("."):
            node = node[part]
        assert isinstance(node, int | float), figure
