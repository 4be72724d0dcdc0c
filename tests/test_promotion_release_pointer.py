"""A restarted shard acts with the release (#15): `--policy release` reads the release pointer
(`snapshots/rel/release.json`) that promotions and swaps write, and the served shard acts with that checkpoint (its
promotion manager names it as the release); without a pointer it is the scripted expert; a pointer naming a missing
checkpoint is one clear error."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import assert_one_line_error, run_cli
from ops_shard import start_shard
from test_ops_bus import make_shard
from test_promotion import checkpoint, cmd, settings
from townlet.ops.promotion import attach


def test_policy_release_serves_the_recorded_release(tmp_path: Path) -> None:
    checkpoint(tmp_path / "cands/a.json", seed=1)
    shard = make_shard(tmp_path)
    manager = attach(shard.world, settings(), root=tmp_path)
    assert cmd(shard, "policy_swap", "cands/a.json").status == "ok"  # installs snapshots/rel/a.json + the pointer
    shard.close()
    manager.close()
    pointer = json.loads((tmp_path / "snapshots/rel/release.json").read_text(encoding="utf-8"))
    assert Path(pointer["release"]["path"]) == tmp_path / "snapshots/rel/a.json"

    served = start_shard(tmp_path, "--policy", "release", "--allow-anonymous-viewer")
    try:
        served.wait_ticks(3)
        promo = served.snapshot().json()["promotion"]
        assert promo["release"].startswith("checkpoint:a.json:"), promo
        agents = served.snapshot().json()["agents"]
        assert all(a["action_prob"] is not None for a in agents.values())  # the checkpoint's softmax
    finally:
        code, err = served.stop()
        assert code == 0, err

    (tmp_path / "snapshots/rel/a.json").unlink()
    res = run_cli("sim", "serve", "--policy", "release", "--allow-anonymous-viewer", "--tick-limit", "1")
    assert res.returncode == 0, res  # this test's own working folder has no pointer: the expert serves
    (Path("snapshots/rel")).mkdir(parents=True)
    Path("snapshots/rel/release.json").write_text(json.dumps(pointer), encoding="utf-8")
    res = run_cli("sim", "serve", "--policy", "release", "--allow-anonymous-viewer", "--tick-limit", "1")
    assert_one_line_error(res, "snapshots/rel/release.json", "release.path", "missing")
