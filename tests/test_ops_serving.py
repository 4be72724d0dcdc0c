"""A served shard is ready for policy commands before its first tick: the promotion manager (stability monitor,
autosave) is attached when it starts serving, and torch is imported before the first tick when a checkpoint may act
(an admin token or a checkpoint policy), never while ticking. Real processes: the shard CLI, and a script serving a
shard with `serve` that records what was imported at its first tick."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DEFAULT_CONFIG, _cli_env
from ops_shard import VIEWER, no_proxy, start_shard

SCRIPT = """
import json, sys
from pathlib import Path
from townlet.ops.auth import TokenStore
from townlet.ops.promotion import current
from townlet.ops.server import serve
from townlet.ops.shard import Shard
from townlet.sim.config import load_config

role = sys.argv[2]
tokens = TokenStore([("t" * 20, role, "someone")])
shard = Shard(load_config(sys.argv[1]), tokens=tokens, audit_path=Path("audit.jsonl"), snapshot_root=Path("snaps"))
before = "torch" in sys.modules
seen = []
step = shard.step
def first_step():
    if not seen:
        seen.append({"torch": "torch" in sys.modules, "manager": current(shard.world) is not None})
    step()
shard.step = first_step
serve(shard, "127.0.0.1", 0, tick_limit=3)
shard.close()
print(json.dumps({"torch_before_serving": before, **seen[0]}))
"""


@pytest.mark.parametrize(("role", "torch_expected"), [("admin", True), ("viewer", False)])
def test_serving_attaches_the_manager_and_imports_torch_before_the_first_tick(
    tmp_path: Path, role: str, torch_expected: bool
) -> None:
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(DEFAULT_CONFIG), role],
        cwd=tmp_path,
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out == {"torch_before_serving": False, "torch": torch_expected, "manager": True}


def test_a_served_shard_reports_promotion_before_any_policy_command(tmp_path: Path) -> None:
    no_proxy()
    served = start_shard(tmp_path)
    try:
        served.wait_ticks(3)
        snap = served.snapshot().json()
        assert snap["promotion"] is not None
        assert snap["promotion"]["status"] == "monitoring" and snap["promotion"]["release"] == "expert"
        r = served.post({"name": "promotion_status"}, token=VIEWER).json()
        assert r["status"] == "ok", r
        assert r["result"]["monitor"]["window_start"] is not None, "the monitor tracked ticks from the start"
        assert not any(e["name"] in ("shadow_policy", "policy_swap", "promote_policy") for e in served.audit())
    finally:
        rc, err = served.stop()
    assert rc == 0, err
