#!/usr/bin/env python3
"""Does PPO learn the town, and does it do the job? PPO on the default town per seed, from scratch and
warm-started by behaviour cloning, scored against the scripted expert on return and on every charter KPI.

`python bench/learn_town.py [--json] [--minutes M] [--bc-minutes M] [--epochs N] [--bc-ppo-epochs N]
[--seeds S ...] [--no-bc] [--no-scratch] [--bc-days D] [--bc-epochs N] [--bc-gamma G] [--bc-kickstart W]
[--bc-kickstart-until S] [--set SECTION.KEY=VALUE ...]`

For each seed: PPO trains from scratch (collecting ahead, `ppo.overlap`, at learning rate 6e-4, kickstarted on the
shift to the run's end, the entropy bonus fading out over the run: `SCRATCH_PPO`) for
`--minutes` of wall clock (default 10; the learning rate falls linearly to 0 at the deadline), or for exactly
`--epochs` epochs (the learning rate annealed over them, as `make run` does; comparable on a loaded machine, where
wall clock is not); then, unless `--no-bc`, the expert is captured for
`--bc-days` days (default 8; one town, its own seed), cloned (the `bc` phase's trainer, `--bc-epochs` 10, its critic
under the discount PPO then uses), and PPO continues from those weights until `--bc-minutes` (default 5) have
passed, BC included, or for `--bc-ppo-epochs` epochs, with the discount `--bc-gamma` (default 0.995: the clone
already keeps the needs up, which the default 0.998 is for; the shorter horizon learns the shifts sooner) and
kickstarting of weight `--bc-kickstart` (default 0.5, held to the run's end: `ppo.kickstart_final` 0.5; with
`--set ppo.kickstart_final=0` it falls linearly to 0 by `--bc-kickstart-until` of the run, default its end;
`ppo.kickstart_coef` and `ppo.kickstart_until`): a cross-entropy term to the scripted expert's action in each state
PPO visits where the expert is about its shift (`ppo.kickstart_on: shift`: setting off for work, queueing there,
working), which the clone of the captured days alone cannot give (without it, one barista in three kept arriving
10-50 minutes late after 2,000 epochs), and the entropy bonus fading to 0 over the run (`ppo.ent_coef_final: 0`),
so that the greedy policy leaves for work when the sampled one does; the needs, and what agents do with free time,
where PPO finds the chats the expert leaves out, are left to the clone and the rewards.
After BC, too, the next epoch is collected while the update learns (`ppo.overlap`: about 1.4x the epochs in the 5
minutes on 2 cores; `--set ppo.overlap=false` for one core).
The runs use one torch thread; the collection ahead uses the second core. Every trained policy is scored greedily by
`townlet.training.evaluate` (one day, the evaluation seeds, the same towns for every policy), as are the expert and
a random masked policy. `--set rewards.punctuality_bonus=0` changes one key of the config's world sections (a YAML
value; repeatable): the reward ablations of docs/training.md are made this way; `--set ppo.ent_coef_final=0` sets a
PPO hyper-parameter instead (any `ppo:` field but num_envs, episode_ticks and anneal_lr, which the bench sets).

Goals (per run): return >= the expert's (`ratio >= 1`), on-time rate >= 0.95, self-sufficiency and
relationship coverage >= the expert's. `--json` prints `{"expert": {"return", "kpis", "reward_parts"},
"random": {...}, "runs": [{"seed", "minutes", "epochs", "return", "ratio", "kpis", "reward_parts", "steps",
"curve", "met", "sampled"}], "bc_runs": [... and "bc": {...}], "goals": {...}, "verdicts": {group: {goal:
{"met", "runs"}}}}`; `reward_parts` is each reward component's mean per agent-day on the first evaluation
seed; `sampled` ({"return", "kpis", "met"}) scores the same policy sampling its actions instead of taking the
most likely one (the goals are judged greedily; sampled is how the policy acts while it trains). The text
output ends with one verdict line per goal. An acceptance script, not a CI test.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import torch
import yaml
from pydantic import ValidationError

from townlet import _core, load_config
from townlet.capture.rollout import capture_rollout
from townlet.sim.config import TownConfig
from townlet.sim.env import VecTown
from townlet.sim.settings import BCConfig, PPOConfig
from townlet.training.bc import BCTrainer, split_rows
from townlet.training.data import load_replay
from townlet.training.envs import TownTrainEnv
from townlet.training.evaluate import (
    Actor,
    PolicyScore,
    eval_seeds,
    evaluate,
    expert_actor,
    greedy_actor,
    random_actor,
)
from townlet.training.network import ActorCritic, draw
from townlet.training.trainer import Trainer, make_policy

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs/examples/poc_hybrid.yaml"
EPISODE = 1440
ON_TIME_GOAL = 0.95
GOALS = ("return", "on_time_rate", "self_sufficiency", "relationship_coverage")
#: The PPO fields this bench sets itself (the rest are `PPOConfig`'s defaults unless `--set ppo.KEY=V`).
FIXED_PPO = ("num_envs", "episode_ticks", "anneal_lr")
#: PPO's discount after BC: the clone brings the expert's care of the needs, which the longer default discount
#: (0.998) is there to learn from scratch; the shorter one learns the shifts sooner (docs/training.md).
BC_GAMMA = 0.995
#: Kickstarting's weight after BC (`ppo.kickstart_coef`), held at `BC_KICKSTART_FINAL` to the run's end
#: (`ppo.kickstart_final`), on the shift only (`ppo.kickstart_on`: setting off for work, queueing there, working), with
#: the entropy bonus fading to 0 (`ppo.ent_coef_final`). Until session 22 the pull was on duties (every state but the
#: expert's leisure) and faded to 0 with the bonus constant: every goal on 3 seeds of 3 when the policy sampled, but
#: the greedy policy of one seed in three left for work late (on-time 0.83), because leaving was a chance each tick
#: that the greedy policy took only once it was the single most likely action. Holding the pull on duties with the
#: bonus fading made it punctual (0.99) and took its chats away (coverage 0.04); held on the shift alone, seed 3 met
#: every goal greedily (on-time 1.00, coverage 0.96; docs/training.md, "Session 22").
BC_KICKSTART = 0.5
BC_KICKSTART_FINAL = 0.5
BC_KICKSTART_UNTIL = 1.0
BC_KICKSTART_ON = "shift"
BC_ENT_COEF_FINAL = 0.0
#: After BC, too, the next epoch is collected while the update learns (`ppo.overlap`): 1,600 epochs took 4.96-5.66
#: minutes each (BC included) where they took 6.92-7.40 on one core, on the same 2-core box (docs/training.md,
#: "Session 19"); with the collector in a process of its own, 3,564-3,644 epochs fit the 5 minutes on the Xeon box
#: and every goal was met on 3 seeds of 3, then on 2 of 3 (seed 1 short of coverage; "Session 20").
BC_OVERLAP = True
#: PPO from scratch: the next epoch collected while the update learns (`ppo.overlap`, about 1.3-1.5x the epochs in the
#: budget on 2 cores) and twice the default learning rate, which learns the shifts within the 10 minutes where 3e-4 left
#: two seeds of three late (docs/training.md, "From scratch in a real 10 minutes, collecting ahead" and "Chatting
#: paid"), and kickstarting on the shift only: a pull of weight 1.0 towards the scripted expert's action where the
#: expert sets off for work, queues there or works (`ppo.kickstart_on: shift`), held to the run's end
#: (`ppo.kickstart_final` 1.0; until session 22 it faded linearly to 0, and one greedy policy in three, seed 3's, left
#: for work late, 0.89, in sessions 18-21; fading to 0.5 it still did; held at 1.0 it was on time, 1.000:
#: docs/training.md, "Session 22"). Fading to 0 at weight 0.5 that met every goal on 3 seeds of 3 and then on 2 (seed 2
#: late); at 1.0 on 3 of 3 twice (session 17); plain PPO left 1-2 seeds of 3 late; a pull in every state, or in every
#: state but leisure, took the chats away (docs/training.md, "Session 15" to "Session 17"). The entropy bonus falls
#: linearly to 0 with the learning rate (`ppo.ent_coef_final: 0`): after session 18's learner change two seeds of three
#: sampled the shift on time (0.97, 1.00) but their greedy policy was late (0.88, 0.89); with the bonus fading, 3 of 3
#: met every goal, greedy on-time 0.994-1.000 (docs/training.md, "Session 18"). `--set ppo.KEY=V` overrides any.
SCRATCH_PPO: dict[str, Any] = {
    "overlap": True,
    "learning_rate": 6e-4,
    "kickstart_coef": 1.0,
    "kickstart_until": 1.0,
    "kickstart_final": 1.0,
    "kickstart_on": "shift",
    "ent_coef_final": 0.0,
}


def usage(message: str) -> NoReturn:
    """One error line on stderr, exit 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def ppo_overrides(sets: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The `ppo.KEY=VALUE` items of `sets` as PPO hyper-parameters (checked against `PPOConfig`, exit 2 on a bad
    one), and the other items."""
    fields: dict[str, Any] = {}
    rest = []
    for item in sets:
        key, sep, value = item.partition("=")
        if not key.startswith("ppo."):
            rest.append(item)
            continue
        name = key.removeprefix("ppo.")
        if not sep or name not in PPOConfig.model_fields or name in FIXED_PPO:
            usage(f"--set {item!r}: expected ppo.KEY=VALUE with KEY a ppo field other than {', '.join(FIXED_PPO)}")
        fields[name] = yaml.safe_load(value)
    try:
        PPOConfig(**fields)
    except ValidationError as e:
        err = e.errors()[0]
        where = f"--set ppo.{err['loc'][0]}" if err["loc"] else "--set"
        usage(f"{where}: {err['msg']}")
    return fields, rest


def with_overrides(cfg: TownConfig, sets: list[str]) -> TownConfig:
    """The config with each `SECTION.KEY=VALUE` applied to its world sections (exit 2 on a bad one)."""
    world = copy.deepcopy(cfg.world)
    for item in sets:
        key, sep, value = item.partition("=")
        parts = key.split(".")
        if not sep or not all(parts):
            usage(f"--set {item!r}: expected SECTION.KEY=VALUE")
        node = world
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                usage(f"--set {item!r}: {part} is not a section")
        # YAML 1.2 reading: only true/false are booleans (`social.stage=OFF` is the string OFF).
        literal = value.strip().lower() in ("on", "off", "yes", "no", "y", "n")
        node[parts[-1]] = value.strip() if literal else yaml.safe_load(value)
    out = replace(cfg, world=world)
    try:
        _core.validate_config(out.world_json())
    except ValueError as e:
        usage(f"--set {' '.join(sets)}: {e}")
    return out


def reward_parts(cfg: TownConfig, actor: Actor, *, num_towns: int = 8) -> dict[str, float]:
    """Each reward component's mean per agent slot over one day on the first evaluation seed."""
    seed = eval_seeds(1)[0]
    vec = VecTown(cfg, num_towns, seed, episode_ticks=EPISODE + 1)
    obs, _ = vec.reset(seed)
    names = list(vec.native.reward_components())
    sums = np.zeros(len(names), np.float64)
    with torch.inference_mode():
        for _ in range(EPISODE):
            obs, *_ = vec.step(actor(vec, obs))
            for town in range(num_towns):
                sums += vec.native.reward_breakdown(town).sum(0)
    return {n: float(v) / (num_towns * vec.agents_per_env) for n, v in zip(names, sums, strict=True)}


class SampledActor:
    """The policy's sampled actions (masked softmax), from its own generator reseeded at each episode: the policy
    as it acts while training, where the greedy argmax can loop (docs/training.md)."""

    def __init__(self, policy: ActorCritic) -> None:
        self.policy = policy.eval()
        self.gen = torch.Generator().manual_seed(0)

    def reset(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def __call__(self, vec: VecTown, obs: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        masks = torch.from_numpy(np.ascontiguousarray(vec.action_masks()))
        logits, _ = self.policy(torch.from_numpy(np.ascontiguousarray(obs)), masks)
        out: npt.NDArray[np.int64] = draw(logits, self.gen)[0].numpy()
        return out


def behaviour_clone(
    cfg: TownConfig, env: TownTrainEnv, *, days: int, epochs: int, seed: int, gamma: float
) -> tuple[ActorCritic, dict[str, float]]:
    """Capture `days` days of the expert in one town (seed 20_000 + seed) and clone it; the critic learns the
    returns under PPO's discount `gamma`, so that PPO starts from a critic of its own scale."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        capture_rollout(cfg.with_seed(20_000 + seed), Path(tmp), ticks=EPISODE * days)
        data = load_replay(None, Path(tmp))
    bc_cfg = BCConfig(epochs=epochs, batch_size=256, gamma=gamma)
    split = split_rows(data.samples, bc_cfg, seed=seed)  # held out: whole trajectories
    train, holdout = split.train, split.holdout
    torch.manual_seed(seed)
    policy = make_policy(env.metadata(), env.obs_dim, env.n_actions, bc_cfg.hidden)
    recs = BCTrainer(policy, bc_cfg, train, holdout, seed=seed).run(epochs)
    return policy, {
        "rows": float(len(train)),
        "holdout_accuracy": float(recs[-1]["holdout_accuracy"]),
        "seconds": time.perf_counter() - t0,
    }


def train(
    cfg: TownConfig,
    *,
    seed: int,
    minutes: float,
    epochs: int | None,
    num_envs: int,
    bc: tuple[int, int] | None,
    quiet: bool,
    ppo_fields: dict[str, Any],
) -> tuple[ActorCritic, dict[str, Any]]:
    """PPO for `epochs` epochs (learning rate and, with `ent_coef_final`, the entropy coefficient annealed over
    them), or else until `minutes` of wall clock have passed (both annealed over the wall clock instead); BC first
    when `bc` = (days, epochs)."""
    ppo = PPOConfig(
        **{"rollout_ticks": 128, "torch_threads": 1, **ppo_fields},
        num_envs=num_envs,
        episode_ticks=EPISODE,
        anneal_lr=True,
    )
    env = TownTrainEnv(cfg, ppo.num_envs, seed, ppo.episode_ticks)
    t0 = time.perf_counter()
    deadline = t0 + 60 * minutes
    policy, bc_info = None, None
    if bc is not None:
        policy, bc_info = behaviour_clone(cfg, env, days=bc[0], epochs=bc[1], seed=seed, gamma=ppo.gamma)
    trainer = Trainer(env, ppo, seed=seed, policy=policy)
    curve: list[tuple[int, float]] = []

    def on_epoch(rec: dict[str, Any]) -> None:
        if rec["episodes"]:
            curve.append((int(rec["steps"]), float(rec["episode_return_mean"])))
        if not quiet and int(rec["epoch"]) % 25 == 0:
            last = f"{curve[-1][1]:8.2f}" if curve else "     n/a"
            print(f"  seed {seed} epoch {rec['epoch']:5d}  steps {rec['steps']:>10,}  return {last}", flush=True)

    if epochs is not None:
        trainer.run(epochs, on_epoch=on_epoch)
    while epochs is None and time.perf_counter() < deadline:
        # One more epoch (run() trains to an epoch target), its schedules following the share of the budget spent
        # in place of the share of the epochs: the learning rate falls linearly to 0 at the deadline, as it does
        # over `epochs`, and so does the entropy coefficient towards its final value.
        trainer.run(
            trainer.epoch + 1,
            on_epoch=on_epoch,
            spent=lambda _epoch: min(1.0, (time.perf_counter() - t0) / (60 * minutes)),
        )
    info: dict[str, Any] = {
        "minutes": (time.perf_counter() - t0) / 60,
        "epochs": trainer.epoch,
        "steps": trainer.steps,
        "curve": curve,
    }
    if bc_info is not None:
        info["bc"] = bc_info
    return trainer.policy.eval(), info


def goals_met(score: PolicyScore, expert: PolicyScore) -> dict[str, bool]:
    kpis = score.kpis
    return {
        "return": score.return_ >= expert.return_,
        "on_time_rate": kpis.on_time_rate >= ON_TIME_GOAL,
        "self_sufficiency": kpis.self_sufficiency >= expert.kpis.self_sufficiency,
        "relationship_coverage": kpis.relationship_coverage >= expert.kpis.relationship_coverage,
    }


def score_run(seed: int, score: PolicyScore, expert: PolicyScore, info: dict[str, Any]) -> dict[str, Any]:
    kpis, met = score.kpis, goals_met(score, expert)
    ratio = score.return_ / expert.return_ if expert.return_ else float("nan")
    return {"seed": seed, "return": score.return_, "ratio": ratio, "kpis": kpis.model_dump(), "met": met, **info}


def verdicts(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per goal: met by every run, and by how many."""
    out: dict[str, dict[str, Any]] = {}
    for goal in GOALS:
        hits = sum(bool(r["met"][goal]) for r in runs)
        out[goal] = {"met": bool(runs) and hits == len(runs), "runs": f"{hits}/{len(runs)}"}
    return out


def scratch_ppo(args: argparse.Namespace) -> dict[str, Any]:
    """The `ppo` keys PPO from scratch runs with: `SCRATCH_PPO` under `--set`."""
    return {**SCRATCH_PPO, **args.ppo_fields}


def bc_ppo(args: argparse.Namespace) -> dict[str, Any]:
    """The `ppo` keys PPO after BC runs with: `BC_OVERLAP`, `BC_KICKSTART_ON`, `BC_KICKSTART_FINAL` and
    `BC_ENT_COEF_FINAL` unless `--set`, then the `--bc-*` flags."""
    return {
        "overlap": BC_OVERLAP,
        "kickstart_on": BC_KICKSTART_ON,
        "kickstart_final": BC_KICKSTART_FINAL,
        "ent_coef_final": BC_ENT_COEF_FINAL,
        **args.ppo_fields,
        "gamma": args.bc_gamma,
        "kickstart_coef": args.bc_kickstart,
        "kickstart_until": args.bc_kickstart_until,
    }


def run_seed(
    cfg: TownConfig, args: argparse.Namespace, seed: int, expert: PolicyScore, *, bc: tuple[int, int] | None
) -> dict[str, Any]:
    minutes, epochs = (args.bc_minutes, args.bc_ppo_epochs) if bc else (args.minutes, args.epochs)
    ppo_fields = bc_ppo(args) if bc else scratch_ppo(args)
    policy, info = train(
        cfg,
        seed=seed,
        minutes=minutes,
        epochs=epochs,
        num_envs=args.num_envs,
        bc=bc,
        quiet=args.json,
        ppo_fields=ppo_fields,
    )
    actor = greedy_actor(policy)
    report = evaluate(cfg, {"trained": actor, "sampled": SampledActor(policy)}, seeds=args.eval_seeds)
    score = report.policies["trained"]
    info["reward_parts"] = reward_parts(cfg, actor)
    sampled = report.policies["sampled"]
    info["sampled"] = {**sampled.model_dump(exclude={"per_seed"}), "met": goals_met(sampled, expert)}
    return score_run(seed, score, expert, info)


def print_table(out: dict[str, Any], expert: PolicyScore) -> None:
    k = expert.kpis
    print(f"\nexpert: return {expert.return_:.2f}  on-time {k.on_time_rate:.2f}  self-sufficiency "
          f"{k.self_sufficiency:.2f}  coverage {k.relationship_coverage:.2f}  faints {k.faints:.2f}")  # fmt: skip
    print(f"random: return {out['random']['return']:.2f}")
    print("run       seed  min  epochs   steps       return  ratio  on-time  self-suff  coverage  faints  all goals")
    for name, group in (("scratch", out["runs"]), ("bc->ppo", out["bc_runs"])):
        for r in group:
            kp = r["kpis"]
            missed = [m for m, ok in r["met"].items() if not ok]
            verdict = "no: " + ", ".join(missed) if missed else "yes"
            print(
                f"{name:9s} {r['seed']:4d} {r['minutes']:4.1f} {r['epochs']:6d} {r['steps']:>11,} {r['return']:8.2f} "
                f"{r['ratio']:6.2f} {kp['on_time_rate']:8.2f} {kp['self_sufficiency']:10.2f} "
                f"{kp['relationship_coverage']:9.2f} {kp['faints']:7.2f}  {verdict}"
            )
            sp, sk = r["sampled"], r["sampled"]["kpis"]
            missed = [m for m, ok in sp["met"].items() if not ok]
            print(
                f"  sampled {'':38s} {sp['return']:8.2f} {sp['return'] / expert.return_:6.2f} "
                f"{sk['on_time_rate']:8.2f} "
                f"{sk['self_sufficiency']:10.2f} {sk['relationship_coverage']:9.2f} {sk['faints']:7.2f}  "
                f"{'no: ' + ', '.join(missed) if missed else 'yes'}"
            )
    goals = out["goals"]
    for name, group in (("scratch", "runs"), ("bc->ppo", "bc_runs")):
        if not out[group]:
            continue
        for goal, v in out["verdicts"][group].items():
            g = goals["ratio" if goal == "return" else goal]
            shown = "ratio" if goal == "return" else goal
            met = "MET" if v["met"] else "NOT MET"
            print(f"goal {name:7s} {shown:21s} {g['op']} {g['value']:.3f}: {met} ({v['runs']} runs)")


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget of a run from scratch")
    p.add_argument("--bc-minutes", type=float, default=5.0, help="wall-clock budget of a BC -> PPO run")
    p.add_argument("--epochs", type=int, help="train from scratch for exactly N epochs instead of --minutes")
    p.add_argument("--bc-ppo-epochs", type=int, help="PPO epochs after BC instead of --bc-minutes")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--no-bc", action="store_true", help="skip the BC -> PPO runs")
    p.add_argument("--no-scratch", action="store_true", help="skip the runs from scratch")
    p.add_argument("--bc-days", type=int, default=8, help="days of the expert captured for BC")
    p.add_argument("--bc-epochs", type=int, default=10, help="BC epochs over them")
    p.add_argument(
        "--bc-gamma",
        type=float,
        default=BC_GAMMA,
        help=f"PPO's discount after BC, and BC's critic's (default {BC_GAMMA}; from scratch: ppo.gamma)",
    )
    p.add_argument(
        "--bc-kickstart",
        type=float,
        default=BC_KICKSTART,
        help=(
            f"kickstarting's weight after BC (default {BC_KICKSTART}, held at ppo.kickstart_final; 0: off; "
            "ppo.kickstart_coef)"
        ),
    )
    p.add_argument(
        "--bc-kickstart-until",
        type=float,
        default=BC_KICKSTART_UNTIL,
        help=(
            f"the share of a BC -> PPO run by which kickstarting's weight is 0 (default {BC_KICKSTART_UNTIL}; "
            "ppo.kickstart_until)"
        ),
    )
    p.add_argument("--eval-seeds", type=int, default=3)
    p.add_argument("--config", type=Path, default=CONFIG, help="the town")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config key")
    args = p.parse_args()
    for flag in ("epochs", "bc_ppo_epochs", "bc_days", "bc_epochs"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1")
    if not 0 <= args.bc_gamma <= 1:
        p.error("--bc-gamma must be in [0, 1]")
    if not args.bc_kickstart >= 0:
        p.error("--bc-kickstart must be >= 0")
    if not 0 < args.bc_kickstart_until <= 1:
        p.error("--bc-kickstart-until must be in (0, 1]")
    args.ppo_fields, world_sets = ppo_overrides(args.set)
    cfg = with_overrides(load_config(args.config), world_sets)

    base = evaluate(cfg, {"expert": expert_actor(), "random": random_actor(0)}, seeds=args.eval_seeds)
    expert = base.policies["expert"]
    runs = [] if args.no_scratch else [run_seed(cfg, args, seed, expert, bc=None) for seed in args.seeds]
    bc = None if args.no_bc else (args.bc_days, args.bc_epochs)
    bc_runs = [run_seed(cfg, args, seed, expert, bc=bc) for seed in args.seeds] if bc else []
    goals = {
        "ratio": {"value": 1.0, "op": ">="},
        "on_time_rate": {"value": ON_TIME_GOAL, "op": ">="},
        "self_sufficiency": {"value": expert.kpis.self_sufficiency, "op": ">="},
        "relationship_coverage": {"value": expert.kpis.relationship_coverage, "op": ">="},
    }
    out = {
        "benchmark": "learn_town",
        "config": str(args.config),
        "overrides": args.set,
        "ppo": PPOConfig(**args.ppo_fields).model_dump(include={"ent_coef", "ent_coef_final", "torch_threads"}),
        "scratch_ppo": scratch_ppo(args),
        "expert": {**expert.model_dump(exclude={"per_seed"}), "reward_parts": reward_parts(cfg, expert_actor())},
        "random": base.policies["random"].model_dump(exclude={"per_seed"}),
        "runs": runs,
        "bc_runs": bc_runs,
        "goals": goals,
        "verdicts": {"runs": verdicts(runs), "bc_runs": verdicts(bc_runs)},
        "budget_minutes": {"scratch": args.minutes, "bc": args.bc_minutes},
        "budget_epochs": {"scratch": args.epochs, "bc": args.bc_ppo_epochs},
        "bc": {
            "days": args.bc_days,
            "epochs": args.bc_epochs,
            "gamma": args.bc_gamma,
            "kickstart": args.bc_kickstart,
            "kickstart_until": args.bc_kickstart_until,
            "kickstart_on": bc_ppo(args)["kickstart_on"],
        },
    }
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return
    print_table(out, expert)


if __name__ == "__main__":
    main()
