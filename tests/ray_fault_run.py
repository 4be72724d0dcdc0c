"""Run by tests/test_ray_shards.py (a process of its own, the Ray driver): sharded rollout runs on the Ray cluster at
--address whose shard actors are killed (SIGKILL of the actor's process) between chosen epochs.

1. `local.json`: the reference, --backend local, one shard, 3 epochs.
2. `restart.json`: --backend ray, 2 shards, shard 1 killed after epoch 1; Ray restarts it (max_restarts 1) and the
   learner recollects its epoch from the saved state.
3. `stopped.json`: the same with max_restarts 0 and shard 0 killed after epoch 2 (checkpoint every epoch): the run
   stops with ShardDiedError; then it is resumed from its last checkpoint (local backend) to epoch 3.
Prints one JSON object: what happened (pids, restarts, the error line, the checkpoint epoch it stopped at, files).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from conftest import wait_exited
from townlet.training.ray_shards import RayShards, ShardDiedError
from townlet.training.request import TrainPlan, TrainRequest
from townlet.training.run import plan, run
from townlet.training.sharded_run import run_sharded

OVERRIDES = {"num_envs": 2, "rollout_ticks": 16}


def kill(pid: int) -> None:
    """SIGKILL the actor's process and wait on its exit."""
    if not wait_exited(pid, 60, kill=True):
        raise TimeoutError(f"process {pid} still alive 60 s after SIGKILL")


def ray_plan(config: Path, checkpoint: Path, address: str, **more: Any) -> TrainPlan:
    return plan(TrainRequest(config=config, mode="rollout", epochs=3, overrides=OVERRIDES, checkpoint=checkpoint,
                             backend="ray", shards=2, ray_address=address, **more))  # fmt: skip


def shards_for(p: TrainPlan, address: str, max_restarts: int) -> RayShards:
    ppo = p.section
    return RayShards(p.config, ppo, p.meta, p.seed, 2, 2, address=address, max_restarts=max_restarts)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    # The result goes to a file: Ray's own notices (a killed worker's, "(raylet) A worker died ...") may reach
    # stdout after anything printed there.
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()
    out: dict[str, Any] = {}
    quiet = lambda line: None  # noqa: E731

    local = TrainRequest(config=args.config, mode="rollout", epochs=3, overrides=OVERRIDES,
                         checkpoint=args.out / "local.json", fresh=True, backend="local")  # fmt: skip
    run(plan(local))

    # 2. A shard killed after epoch 1, restarted by Ray, its epoch 2 recollected.
    p = ray_plan(args.config, args.out / "restart.json", args.address, fresh=True)
    assert p.backend is not None
    shards = shards_for(p, args.address, max_restarts=1)
    before = shards.pids()

    def kill_shard_1(rec: dict[str, Any]) -> None:
        if rec["epoch"] == 1:
            kill(before[1])
        if rec["epoch"] == 2:
            out["pids_after"] = shards.pids()

    run_sharded(p, p.backend, on_epoch=kill_shard_1, notify=quiet, shards=shards)
    out.update(pids_before=before, restarts=shards.restarts)

    # 3. No restarts allowed: the run stops after epoch 2's checkpoint; then it resumes from it.
    p = ray_plan(args.config, args.out / "stopped.json", args.address, fresh=True, checkpoint_every=1)
    assert p.backend is not None
    shards = shards_for(p, args.address, max_restarts=0)
    pids = shards.pids()

    def kill_shard_0(rec: dict[str, Any]) -> None:
        if rec["epoch"] == 2:
            kill(pids[0])

    try:
        run_sharded(p, p.backend, on_epoch=kill_shard_0, notify=quiet, shards=shards)
    except ShardDiedError as exc:
        out["error"] = str(exc)
    out["stopped_at"] = json.loads((args.out / "stopped.json").read_text())["counters"]["epochs"]
    out["files"] = sorted(f.name for f in args.out.iterdir())
    stopped = args.out / "stopped.json"
    again = TrainRequest(config=args.config, mode="rollout", epochs=3, overrides=OVERRIDES, checkpoint=stopped,
                         warm_start_load=stopped, backend="local")  # fmt: skip
    resumed = run(plan(again))
    out["resumed_from"] = resumed.start_epoch
    args.result.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
