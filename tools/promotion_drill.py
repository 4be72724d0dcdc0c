#!/usr/bin/env python3
"""`python tools/promotion_drill.py [--out DIR] [--config C] [--window N] [--epochs N]`: seed 003's promotion
playbook on a live shard in a scratch folder (docs/promotion.md).

Steps, one line each with its verdict: train a candidate into the shadow folder (real PPO, short), shard ticks/s
without shadow evaluation, shadow evaluation beside the release (the scripted expert) over two windows (ticks/s with
it), promote_policy on the running shard (swap latency in ticks; the actions taken are the candidate's greedy
actions on the same observations), a canary breach forced with setneed (every agent starving), the automatic
rollback (the expert acts again), the history files, and a replay of the shard's journal (the automatic rollback is in
it) to the same world hash without a new history line. Exits 0 only when the promotion swapped the acting policy and
the breach rolled it back. The folder keeps ops/rollouts.md and logs/promotion_history.jsonl.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ADMIN = "drill-admin-token-0001"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="promotion_drill.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tmp/promotion_drill", help="scratch folder (emptied first)")
    ap.add_argument("--config", default=str(REPO / "configs/examples/poc_hybrid.yaml"))
    ap.add_argument("--window", type=int, default=200, help="promotion window in ticks")
    ap.add_argument("--epochs", type=int, default=2, help="PPO epochs for the candidate")
    ap.add_argument("--bench-ticks", type=int, default=400, help="ticks timed without shadow evaluation")
    ap.add_argument("--candidate", help="use this checkpoint (copied to the shadow folder) instead of training one")
    ap.add_argument("--canary-windows", type=int, default=None, help="override ops.promotion.canary_windows")
    args = ap.parse_args(argv)
    if args.window < 10 or args.epochs < 1 or args.bench_ticks < 10:
        print("promotion_drill.py: --window >= 10, --epochs >= 1, --bench-ticks >= 10", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    drill = Drill(out, Path(args.config).resolve(), args.window, args.epochs, args.bench_ticks)
    drill.candidate = Path(args.candidate).resolve() if args.candidate else None
    drill.canary_windows = args.canary_windows
    return drill.run()


class Drill:
    def __init__(self, out: Path, config: Path, window: int, epochs: int, bench: int) -> None:
        self.out, self.config_path, self.window, self.epochs, self.bench = out, config, window, epochs, bench
        self.ok = True
        self.ids = 0
        self.candidate: Path | None = None
        self.canary_windows: int | None = None

    def step(self, name: str, passed: bool, detail: str) -> bool:
        print(f"[{'PASS' if passed else 'FAIL'}] {name}: {detail}", flush=True)
        self.ok = self.ok and passed
        return passed

    def cmd(self, shard: Any, name: str, *args: Any) -> Any:
        self.ids += 1
        return shard.submit({"name": name, "args": list(args), "cmd_id": f"drill-{self.ids}-{name}"}, ADMIN)

    def run(self) -> int:
        if self.candidate is not None:
            candidate = self.out / "snapshots/shadow/candidate.json"
            candidate.parent.mkdir(parents=True)
            shutil.copyfile(self.candidate, candidate)
            self.step("candidate to shadow", True, f"{self.candidate} copied to {candidate.relative_to(self.out)}")
            return self.play(candidate)
        # Training as a user runs it, in the drill's folder: the trained policy is published to the shadow folder
        # (ops.promotion.shadow_dir) by default; the release folder is left to promote_policy.
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(REPO / "tools/run_training.py"), "--config", str(self.config_path), "--mode",
             "rollout", "--epochs", str(self.epochs), "--rollout-ticks", "32", "--num-envs", "2", "--fresh",
             "--quiet", "--json"],
            cwd=self.out, capture_output=True, text=True, check=False,
        )  # fmt: skip
        published = json.loads(proc.stdout.strip().splitlines()[-1]).get("candidate") if proc.returncode == 0 else None
        candidate = self.out / str(published)
        shadow = self.out / "snapshots/shadow"
        if not self.step(
            "train candidate to shadow",
            published is not None and candidate.is_file() and candidate.is_relative_to(shadow),
            f"{published} ({self.epochs} PPO epochs, {time.perf_counter() - t0:.1f} s); release folder untouched: "
            f"{not (self.out / 'snapshots/rel').exists()}"
            if proc.returncode == 0
            else (proc.stderr.strip().splitlines() or ["no output"])[-1],
        ):
            return 1
        return self.play(candidate)

    def play(self, candidate: Path) -> int:
        from townlet import _core
        from townlet.ops.auth import TokenStore
        from townlet.ops.monitor import ALERTS
        from townlet.ops.promotion import attach
        from townlet.ops.promotion_policy import MaskedView
        from townlet.ops.shard import Shard
        from townlet.ops.world import ShardWorld, TickRecord
        from townlet.sim.config import load_config
        from townlet.sim.settings_ops import OpsSection
        from townlet.training.evaluate import checkpoint_actor

        config = load_config(self.config_path)
        ops = config.sections.ops
        # The drill's windows are short; the charter's cumulative KPIs need days, so they are judged as configured.
        promotion = ops.promotion
        if self.canary_windows is not None:
            promotion = promotion.model_copy(update={"canary_windows": self.canary_windows})
        ops = OpsSection(stability=ops.stability.model_copy(update={"window_ticks": self.window}), promotion=promotion)
        shard = Shard(
            config,
            tokens=TokenStore([(ADMIN, "admin", "drill")]),
            audit_path=self.out / "logs/console/commands.jsonl",
            snapshot_root=self.out / "snapshots",
        )
        manager = attach(shard.world, ops, root=self.out)
        seen: list[tuple[int, Any, Any, Any]] = []

        def record(world: ShardWorld, rec: TickRecord) -> None:
            if rec.obs is not None and rec.masks is not None and world.actor is not None:
                seen.append((rec.tick, rec.obs.copy(), rec.masks.copy(), rec.actions.copy()))

        shard.world.tick_listeners.append(record)

        t0 = time.perf_counter()
        shard.run(tick_limit=self.bench)
        plain = self.bench / (time.perf_counter() - t0)
        self.step("shard ticks/s without shadow", True, f"{plain:.0f} ticks/s over {self.bench} ticks (monitor on)")

        r = self.cmd(shard, "shadow_policy", str(candidate.relative_to(self.out)))
        self.step("shadow_policy", r.status == "ok", f"candidate evaluated beside the expert from tick {shard.tick}")
        ticks = 2 * self.window
        t0 = time.perf_counter()
        shard.run(tick_limit=ticks)
        shadowed = ticks / (time.perf_counter() - t0)
        status = manager.status()
        mon = status["monitor"]
        agreement = status["shadow"]["agreement"] if status["shadow"] else None
        self.step(
            "shard ticks/s with shadow evaluation",
            status["shadow"] is not None and status["shadow"]["ticks"] == ticks,
            f"{shadowed:.0f} ticks/s over {ticks} ticks ({shadowed / plain:.2f}x); shadow agreed with the expert on "
            f"{(agreement or 0) * 100:.1f}% of actions",
        )
        windows = [w for w in manager.monitor.windows if w.end > shard.tick - ticks]
        self.step(
            "two passing windows",
            mon["candidate_ready"],
            f"pass streak {mon['pass_streak']}/{mon['required_passes']}, windows "
            + ", ".join(f"{w.start}-{w.end} {'pass' if w.passed else 'fail ' + ','.join(w.alerts)}" for w in windows),
        )

        # Promote on the running shard: the swap lands between two ticks.
        stop = threading.Event()
        runner = threading.Thread(target=shard.run, kwargs={"stop": stop}, daemon=True)
        runner.start()
        while shard.tick < status["tick"] + 5:
            time.sleep(0.001)
        submitted = shard.tick
        t0 = time.perf_counter()
        r = self.cmd(shard, "promote_policy", str(candidate.relative_to(self.out)))
        latency_ms = (time.perf_counter() - t0) * 1000
        swapped_at: int = r.result["tick"] if r.status == "ok" else -1
        while r.status == "ok" and shard.tick < swapped_at + 20:
            time.sleep(0.001)
        stop.set()
        runner.join()
        if not self.step(
            "promote_policy",
            r.status == "ok",
            f"swap at tick {swapped_at}, submitted at tick {submitted}: latency "
            f"{swapped_at - submitted} ticks ({latency_ms:.1f} ms); "
            f"world kept as {r.result['snapshot'] if r.status == 'ok' else r.error}",
        ):
            return self.finish(shard, manager)
        actor: Any = checkpoint_actor(candidate, config=config)
        spec = dict(_core.obs_spec(config.world_json()))
        after = [t for t in seen if t[0] >= swapped_at]
        same = sum(np.array_equal(np.asarray(actor(MaskedView(m, spec), o)), a) for _, o, m, a in after)
        first = after[0][0] if after else None
        self.step(
            "acting policy swapped",
            bool(after) and same == len(after) and first == swapped_at,
            f"{same}/{len(after)} ticks from tick {first} acted by the candidate's greedy actions "
            f"(policy {manager.release.name})",
        )

        # Canary breach: every agent starving; the monitor fires on the next tick and rolls back.
        ids = shard.world.agent_ids()
        for aid in ids:
            self.cmd(shard, "setneed", aid, "hunger", 0.0)
        before = manager.events
        shard.run(tick_limit=3)
        last = manager.last_event or {}
        alert = (last.get("alert") or {}).get("alert")
        rolled = manager.events > before and last.get("event") == "rollback" and shard.world.actor is None
        self.step(
            "canary breach -> automatic rollback",
            rolled and alert in ALERTS,
            f"setneed hunger 0 for {len(ids)} agents; {last.get('event')} at tick {last.get('tick')} to "
            f"{last.get('to')} on {alert} ({(last.get('alert') or {}).get('message')})",
        )
        return self.finish(shard, manager)

    def finish(self, shard: Any, manager: Any) -> int:
        from townlet.ops.replay import replay_journal
        from townlet.sim.config import load_config

        shard.close()
        manager.close()
        history = self.out / "logs/promotion_history.jsonl"
        rollouts = self.out / "ops/rollouts.md"
        lines = history.read_text(encoding="utf-8").splitlines() if history.exists() else []
        events = [json.loads(line)["event"] for line in lines]
        self.step(
            "history files",
            events[-2:] == ["promoted", "rollback"] and rollouts.exists(),
            f"{history.relative_to(self.out)}: {' -> '.join(events)}; {rollouts.relative_to(self.out)}",
        )
        # The journal (the automatic rollback included) replays from the config to the same world, writing nothing.
        journal = list(shard.world.journal)
        before = [p.read_bytes() if p.exists() else None for p in (history, rollouts)]
        replayed = replay_journal(load_config(self.config_path), journal, shard.world.tick, root=self.out)
        same = replayed.town.world_hash() == shard.world_hash()
        after = [p.read_bytes() if p.exists() else None for p in (history, rollouts)]
        autos = sum(1 for e in journal if e.get("auto"))
        self.step(
            "journal replay",
            same and after == before and autos == (1 if events[-1:] == ["rollback"] else 0),
            f"{len(journal)} entries ({autos} automatic rollback) replayed to tick {shard.world.tick}: world hash "
            f"{'equal' if same else 'DIFFERS'}; history files {'unchanged' if after == before else 'CHANGED'}",
        )
        print(f"promotion drill: {'PASS' if self.ok else 'FAIL'} ({self.out})")
        return 0 if self.ok else 1


if __name__ == "__main__":
    sys.exit(main())
