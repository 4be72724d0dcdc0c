#!/usr/bin/env python3
"""Townlet's PPO side by side with sb3-contrib's MaskablePPO: same towns, network, PPO settings and wall clock.

`python bench/vs_sb3.py [--json] [--minutes M] [--seed S] [--eval-seeds N] [--chunk SECONDS] [--torch-threads N|auto]
[--overlap]` (the `bench` extra)

Both learners train on the default town (configs/examples/poc_hybrid.yaml) from scratch for `--minutes` of wall
clock each, taking turns of `--chunk` seconds (A B A B ..., so load from elsewhere on a shared machine falls on
both alike; each finishes the epoch or rollout it is in, as a wall-clock budget does), then both greedy policies
are scored by `townlet.training.evaluate` on the same evaluation towns and seeds (with the scripted expert and a
random masked policy for scale).

Kept equal: the towns (`ppo.num_envs` towns of 9 agents, one SB3 index per agent slot through
`townlet.env.sb3.make_vec_env`), the network (Townlet's conflict-aware network: a strided conv over the map and a
linear layer over the features, 64 units each, then one 128-unit ReLU layer for the actor and one for the critic;
SB3 builds it from `townlet.env.sb3.policy_kwargs`), the PPO settings of the config's `ppo:` section (learning rate,
n_steps = rollout_ticks, batch size = rollout size / num_minibatches, n_epochs = update_epochs, gamma, GAE lambda,
clip range, value clipping, advantage normalisation, entropy and value coefficients, max grad norm, Adam eps 1e-5),
a constant learning rate on both sides (the budget is time, not epochs), the torch threads (`ppo.torch_threads`, or
`--torch-threads`: a fixed count for both, or `auto` for both: each side's collection and learning each run on one
thread or on every usable CPU, whichever it measured faster, by the same `townlet.training.threads.Threads`), the
threads stepping the towns (one up to 16 towns, as our trainer does). With `--overlap` ours collects the next epoch
in a second process while it learns (`ppo.overlap`, each side on the fixed thread count), and SB3, which has no such
mode, gets the same cores as torch threads (twice the count).

SB3 trains in a process of its own (`Sb3Process`), started with the user's environment and OpenMP's default waits
(libgomp spins a while, then sleeps), as its users run it: our trainer's passive waits (set on `import townlet`) cost
SB3's two-thread update dearly (on a 2-core Xeon: 17.1 k agent-steps/s on two passive threads, 26.8 k on one,
34.2 k on two spinning). The turns still alternate: each side trains only while the other waits.

What differs: Townlet computes the network's hidden-layer products in bfloat16 (`ppo.precision`, its default; SB3
in float32); Townlet trains on the live agents' rows only, SB3 on every slot (an empty slot is a zero observation
with only `wait` valid, reward 0); a faint ends the slot's episode on both sides. The minibatch size follows each
side's rollout size. Initialisation is orthogonal on both (gains sqrt 2, 0.01 for the policy head, 1 for the value
head) but draws differ. Speed counts agent-steps as slot-steps collected (ticks x agent slots) on both sides,
learning time included.

Prints `ours` and `sb3` (each `agent_steps_per_sec`, `return`, KPIs), `ratio_speed` and `ratio_return` (ours / sb3)
with their goals (>= 4x the speed, a higher return). An acceptance script, not a CI test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

#: The environment as the user started us, before `import townlet` set OpenMP's passive waits: SB3's process gets it.
USER_ENV = dict(os.environ)

from townlet import load_config  # noqa: E402  # `import townlet` sets OpenMP's wait policy before torch loads
from townlet.env.sb3 import make_vec_env, policy_kwargs  # noqa: E402
from townlet.sim.env import VecTown  # noqa: E402
from townlet.sim.settings import PPOConfig  # noqa: E402
from townlet.training.envs import SEQUENTIAL_TOWNS, TownTrainEnv  # noqa: E402
from townlet.training.evaluate import Actor, evaluate, expert_actor, greedy_actor, random_actor  # noqa: E402
from townlet.training.threads import Threads  # noqa: E402
from townlet.training.trainer import Trainer  # noqa: E402

try:
    from sb3_contrib import MaskablePPO
except ImportError as exc:  # pragma: no cover
    raise SystemExit(f"bench/vs_sb3.py needs the bench extra: pip install -e '.[bench]' ({exc})") from None

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs/examples/poc_hybrid.yaml"
GOAL_SPEED = 4.0


class Ours:
    """Townlet's trainer, advanced epoch by epoch."""

    def __init__(self, ppo: PPOConfig, cfg: Any, seed: int) -> None:
        self.env = TownTrainEnv(cfg, ppo.num_envs, seed, ppo.episode_ticks)
        self.trainer = Trainer(self.env, ppo, seed=seed)
        self.ppo = ppo
        self.seconds = 0.0

    def train_until(self, until: float) -> None:
        """Epochs until `until` (perf_counter), finishing the one in progress (the trainer sets its threads)."""
        t0 = time.perf_counter()
        while time.perf_counter() < until:
            self.trainer.run(self.trainer.epoch + 1)
        self.seconds += time.perf_counter() - t0

    def stats(self) -> dict[str, float]:
        slot_steps = self.trainer.epoch * self.ppo.rollout_ticks * self.env.num_agents
        return {"seconds": self.seconds, "agent_steps": slot_steps, "live_agent_steps": self.trainer.steps}


class Sb3:
    """MaskablePPO on the same towns, advanced one rollout (and its update) at a time."""

    def __init__(self, ppo: PPOConfig, cfg: Any, seed: int) -> None:
        # The towns step on as many threads as our trainer's (TownTrainEnv's default).
        env_threads = 1 if ppo.num_envs <= SEQUENTIAL_TOWNS else 0
        venv = make_vec_env(cfg, ppo.num_envs, seed, episode_ticks=ppo.episode_ticks, num_threads=env_threads)
        self.rollout = ppo.rollout_ticks * venv.num_envs
        self.model = MaskablePPO(
            "MlpPolicy",
            venv,
            learning_rate=ppo.learning_rate,
            n_steps=ppo.rollout_ticks,
            batch_size=max(1, self.rollout // ppo.num_minibatches),
            n_epochs=ppo.update_epochs,
            gamma=ppo.gamma,
            gae_lambda=ppo.gae_lambda,
            clip_range=ppo.clip_coef,
            clip_range_vf=ppo.clip_coef if ppo.clip_vloss else None,
            normalize_advantage=ppo.norm_adv,
            ent_coef=ppo.ent_coef,
            vf_coef=ppo.vf_coef,
            max_grad_norm=ppo.max_grad_norm,
            target_kl=ppo.target_kl,
            policy_kwargs=policy_kwargs(venv, ppo.hidden),
            seed=seed,
            device="cpu",
        )
        # Our trainer's thread policy, per phase: collection (`collect_rollouts`) and learning (`train`).
        self.threads = Threads(ppo.torch_threads, ppo.precision)
        self._phase(self.model, "collect_rollouts", "collect")
        self._phase(self.model, "train", "learn")
        self.seconds = 0.0

    def _phase(self, model: MaskablePPO, method: str, phase: str) -> None:
        run = getattr(model, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.threads.use(phase)
            t0 = time.perf_counter()
            out = run(*args, **kwargs)
            self.threads.done(phase, time.perf_counter() - t0, self.rollout)
            return out

        setattr(model, method, timed)

    def train_until(self, until: float) -> None:
        """Rollouts and updates until `until`, finishing the one in progress (as `Ours` finishes its epoch)."""
        t0 = time.perf_counter()
        while time.perf_counter() < until:
            first = self.model.num_timesteps == 0
            self.model.learn(total_timesteps=self.rollout, reset_num_timesteps=first)
        self.seconds += time.perf_counter() - t0

    def stats(self) -> dict[str, float]:
        return {"seconds": self.seconds, "agent_steps": self.model.num_timesteps}


#: libgomp's own spin count where neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set: set explicitly in SB3's process,
#: so that its `import townlet` (which would set passive waits) leaves OpenMP as SB3's users have it.
LIBGOMP_DEFAULT_SPINCOUNT = "300000"


class Sb3Process:
    """`Sb3` in a process of its own (`--sb3-worker`), with the user's environment and OpenMP's default waits: the
    passive waits our trainer sets would slow SB3's multi-threaded update (measured on a 2-core Xeon: 17.1 k
    agent-steps/s on two passive threads, 26.8 k on one, 34.2 k on two spinning). Commands and replies are JSON lines
    on its stdin and stdout."""

    def __init__(self, ppo: PPOConfig, seed: int) -> None:
        env = dict(USER_ENV)
        if "OMP_WAIT_POLICY" not in env and "GOMP_SPINCOUNT" not in env:
            env["GOMP_SPINCOUNT"] = LIBGOMP_DEFAULT_SPINCOUNT
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--sb3-worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        )  # fmt: skip
        self.seconds, self.agent_steps = 0.0, 0
        self.threads_used: dict[str, int] = {}
        self._ask({"ppo": ppo.model_dump(mode="json"), "seed": seed})

    def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"error: SB3's process exited (code {self.proc.wait()}); its stderr above says why")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def train_until(self, until: float) -> None:
        reply = self._ask({"op": "train", "seconds": until - time.perf_counter()})
        self.seconds, self.agent_steps = float(reply["seconds"]), int(reply["agent_steps"])
        self.threads_used = dict(reply["threads_used"])

    def stats(self) -> dict[str, float]:
        return {"seconds": self.seconds, "agent_steps": self.agent_steps}

    def evaluate(self, seeds: int) -> dict[str, Any]:
        """The greedy policy's score by `townlet.training.evaluate` (the same towns and seeds as the others'); then
        the process ends."""
        score: dict[str, Any] = self._ask({"op": "evaluate", "seeds": seeds})["score"]
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()
        return score


def sb3_worker() -> None:
    """`--sb3-worker`: the SB3 side, driven by `Sb3Process` (replies on stdout; MaskablePPO prints nothing)."""
    spec = json.loads(sys.stdin.readline())
    cfg = load_config(CONFIG)
    sb3 = Sb3(PPOConfig.model_validate(spec["ppo"]), cfg, int(spec["seed"]))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "train":
            sb3.train_until(time.perf_counter() + float(command["seconds"]))
            reply = {**sb3.stats(), "threads_used": dict(sb3.threads.last)}
        else:
            report = evaluate(cfg, {"sb3": sb3_actor(sb3.model)}, seeds=int(command["seeds"]))
            reply = {"score": report.policies_json()["policies"]["sb3"]}
        print(json.dumps(reply), flush=True)


def train_both(
    ppo: PPOConfig, cfg: Any, seed: int, minutes: float, chunk: float, sb3_ppo: PPOConfig | None = None
) -> tuple[Ours, Sb3Process]:
    """Both learners, in turns of `chunk` seconds (A B A B ...: load from elsewhere on a shared machine falls on both
    alike), until each has trained `minutes` (SB3 with `sb3_ppo` when given: `--overlap`'s thread count)."""
    ours, sb3 = Ours(ppo, cfg, seed), Sb3Process(sb3_ppo or ppo, seed)
    budget = 60 * minutes
    while ours.seconds < budget or sb3.seconds < budget:
        for learner in (ours, sb3):
            left = budget - learner.seconds
            if left > 0:
                learner.train_until(time.perf_counter() + min(chunk, left))
    return ours, sb3


def sb3_actor(model: MaskablePPO) -> Actor:
    """MaskablePPO's greedy action among the valid ones."""
    model.policy.set_training_mode(False)

    def act(vec: VecTown, obs: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        actions, _ = model.predict(obs, deterministic=True, action_masks=vec.action_masks())
        return np.asarray(actions, np.int64)

    return act


def ratio(a: float, b: float) -> float | None:
    """a / b where that means something (b > 0), else None."""
    return a / b if b > 0 and math.isfinite(a / b) else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--minutes", type=float, default=5.0, help="training wall clock for each learner")
    p.add_argument("--seed", type=int, default=1, help="training seed (both learners)")
    p.add_argument("--eval-seeds", type=int, default=3)
    p.add_argument("--chunk", type=float, default=15.0, help="seconds per turn (the learners alternate)")
    p.add_argument("--torch-threads", help="a count or auto, for both sides (default: the config's ppo.torch_threads)")
    p.add_argument("--overlap", action="store_true", help="ours collects ahead (ppo.overlap); SB3 twice the threads")
    p.add_argument("--sb3-worker", action="store_true", help=argparse.SUPPRESS)  # Sb3Process's child
    args = p.parse_args()
    if args.sb3_worker:
        sb3_worker()
        return
    cfg = load_config(CONFIG)
    ppo = cfg.sections.ppo.model_copy(update={"anneal_lr": False})
    if args.torch_threads is not None:
        try:
            threads = int(args.torch_threads) if args.torch_threads.isdigit() else args.torch_threads
            ppo = PPOConfig.model_validate({**ppo.model_dump(), "torch_threads": threads})
        except ValueError:
            p.error(f"--torch-threads: expected a count (>= 1) or auto, got {args.torch_threads!r}")

    sb3_ppo = None
    if args.overlap:
        if ppo.torch_threads == "auto":
            p.error("--overlap: needs a fixed --torch-threads (ppo.overlap refuses auto)")
        sb3_ppo = ppo.model_copy(update={"torch_threads": 2 * int(ppo.torch_threads)})
        ppo = ppo.model_copy(update={"overlap": True})
    learners = train_both(ppo, cfg, args.seed, args.minutes, args.chunk, sb3_ppo)
    ours, sb3 = learners[0].stats(), learners[1].stats()
    if not args.json:
        for name, stats in (("ours", ours), ("sb3", sb3)):
            print(f"{name}: {stats['agent_steps']:,} agent-steps in {stats['seconds']:.0f} s", flush=True)

    policies = {"ours": greedy_actor(learners[0].trainer.policy), "expert": expert_actor(), "random": random_actor(0)}
    report = evaluate(cfg, policies, seeds=args.eval_seeds).policies_json()["policies"]
    report["sb3"] = learners[1].evaluate(args.eval_seeds)
    out: dict[str, Any] = {"minutes": args.minutes, "num_envs": ppo.num_envs, "seed": args.seed, "chunk": args.chunk}
    out["torch_threads"] = ppo.torch_threads
    out["overlap"] = ppo.overlap
    out["sb3_torch_threads"] = (sb3_ppo or ppo).torch_threads
    used = {"ours": dict(learners[0].trainer.threads.last), "sb3": learners[1].threads_used}
    for name, stats in (("ours", ours), ("sb3", sb3)):
        out[name] = {
            "agent_steps_per_sec": stats["agent_steps"] / stats["seconds"],
            "return": report[name]["return"],
            "kpis": report[name]["kpis"],
            "threads_used": used[name],
            **stats,
        }
    out["expert"], out["random"] = report["expert"], report["random"]
    out["ratio_speed"] = ratio(out["ours"]["agent_steps_per_sec"], out["sb3"]["agent_steps_per_sec"])
    out["ratio_return"] = ratio(out["ours"]["return"], out["sb3"]["return"])
    # The goals in the bench convention (bench/README.md): the `make bench` table reads them from here.
    out["goals"] = {"ratio_speed": {"value": GOAL_SPEED, "op": ">="}, "ratio_return": {"value": 1.0, "op": ">"}}
    out["figures"] = ["ours.agent_steps_per_sec", "sb3.agent_steps_per_sec", "ours.return", "sb3.return"]
    out["goals_met"] = {
        "speed": (out["ratio_speed"] or 0.0) >= GOAL_SPEED,
        "return": out["ours"]["return"] > out["sb3"]["return"],
    }
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return
    for name in ("ours", "sb3", "expert", "random"):
        row = out[name]
        sps = f"{row['agent_steps_per_sec']:>9,.0f} agent-steps/s" if "agent_steps_per_sec" in row else " " * 23
        k = row["kpis"]
        print(
            f"{name:7s} {sps}  return {row['return']:8.3f}  on-time {k['on_time_rate']:.2f}  "
            f"self-sufficiency {k['self_sufficiency']:.2f}  faints {k['faints']:.1f}"
        )
    used = {name: ", ".join(f"{k} {v}" for k, v in out[name]["threads_used"].items()) for name in ("ours", "sb3")}
    print(
        f"torch threads {out['torch_threads']}, sb3 {out['sb3_torch_threads']}, overlap {out['overlap']} "
        f"(last used: ours {used['ours']}; sb3 {used['sb3']})"
    )
    rs, rr = out["ratio_speed"], out["ratio_return"]
    print(f"ratio_speed  {rs:.2f}x (goal >= {GOAL_SPEED:.0f}x)" if rs is not None else "ratio_speed  n/a")
    print(
        f"ratio_return {rr:.2f}x (goal: a higher return)"
        if rr is not None
        else f"ratio_return n/a (sb3's return {out['sb3']['return']:.3f} is not positive; goal: a higher return)"
    )


if __name__ == "__main__":
    main()
