"""The policy commands on a served shard (a real `run_simulation.py --serve` process, over HTTP): a drill swap makes
a checkpoint the acting policy, promote_policy is refused until the candidate is ready (409), rollback_policy
returns to the scripted expert; the history files are in the shard's working folder."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from ops_shard import VIEWER, no_proxy, start_shard
from test_promotion import checkpoint


def test_policy_commands_over_http(tmp_path: Path) -> None:
    no_proxy()
    ckpt = checkpoint(tmp_path / "cand.json", seed=5)
    served = start_shard(tmp_path, tick_rate=100)
    try:
        status = served.post({"name": "promotion_status"}, token=VIEWER).json()
        assert status["status"] == "ok" and status["result"]["release"]["kind"] == "expert"
        r = served.post({"name": "promote_policy", "args": [str(ckpt)], "cmd_id": "p1"})
        assert r.status_code == 409 and "candidate not ready" in r.json()["error"]["message"]
        r = served.post({"name": "policy_swap", "args": [str(ckpt)], "cmd_id": "s1"})
        assert r.status_code == 200, r.text
        swapped = r.json()["result"]
        assert swapped["event"] == "policy_swap" and swapped["to"].startswith("checkpoint:cand.json")
        served.wait_ticks(3)
        status = served.post({"name": "promotion_status"}, token=VIEWER).json()["result"]
        assert status["release"]["kind"] == "checkpoint" and status["previous"] == ["expert"]
        r = served.post({"name": "rollback_policy", "args": ["--reason", "http drill"], "cmd_id": "r1"})
        assert r.status_code == 200 and r.json()["result"]["to"] == "expert", r.text
        r = served.post({"name": "rollback_policy", "cmd_id": "r2"})
        assert r.status_code == 409 and "nothing to roll back to" in r.json()["error"]["message"]
    finally:
        code, err = served.stop(signal.SIGTERM)
    assert code == 0, err
    lines = (tmp_path / "logs/promotion_history.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["policy_swap", "rollback"]
    assert (tmp_path / "snapshots/rel/cand.json").exists()
    assert "reason: http drill" in (tmp_path / "ops/rollouts.md").read_text(encoding="utf-8")
