"""Evaluation: policies side by side on the same towns and seeds.

`evaluate(config, {"trained": checkpoint_actor(path), "expert": expert_actor(), "random": random_actor(0)})`
runs every policy for one fixed-length episode (`ticks`, a day by default: no episode restarts inside it) in
`num_towns` towns, once per evaluation seed (`EVAL_SEED_BASE + k`, k = 0..seeds-1: fixed, and distinct from
the training seeds, which are the config's). Every policy sees the same towns on the same seeds.

Scores, per policy (`EvalReport.policies[name]`):

* `return`: the mean per-agent episode return, i.e. the reward an agent slot earned over the episode (a slot
  whose agent faints keeps its reward and earns nothing while down; a respawned agent adds to the same slot),
  averaged over every slot of every town, then over the seeds.
* `kpis`: the native KPIs at the episode's end (`VecTown.native.kpis(town)`). The rates (`self_sufficiency`,
  `on_time_rate`, `relationship_coverage`) are averaged over towns, then seeds. `faints` and `evictions` are
  counted per town over the episode, then averaged over towns and seeds: events per town per episode.
* `per_seed`: the same figures for each evaluation seed.

An `Actor` maps `(vec, observations)` to one action per agent slot; it may read `vec.action_masks()` and
`vec.expert_actions()`. An actor with a `reset(seed)` method is reset before each episode, so a random one
draws the same actions on every call of `evaluate`. Evaluation is deterministic: the same config, policies
and arguments give the same report (torch runs on one thread here; the towns are deterministic anyway).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from pydantic import BaseModel, ConfigDict, Field

from townlet.errors import UsageError
from townlet.sim.config import TownConfig
from townlet.sim.env import VecTown, observation_spec
from townlet.training.network import ActorCritic
from townlet.training.policy import CheckpointPolicy
from townlet.training.threads import one_torch_thread

Actor = Callable[[VecTown, npt.NDArray[np.float32]], npt.NDArray[np.int64]]

#: Evaluation seed k is `EVAL_SEED_BASE + k`.
EVAL_SEED_BASE = 10_000
#: The KPIs reported, in order: three rates, then two counts per town.
KPI_NAMES = ("self_sufficiency", "on_time_rate", "relationship_coverage", "faints", "evictions")
RATE_KPIS = KPI_NAMES[:3]


class Kpis(BaseModel):
    model_config = ConfigDict(extra="forbid")
    self_sufficiency: float
    on_time_rate: float
    relationship_coverage: float
    faints: float
    evictions: float


class SeedScore(BaseModel):
    model_config = ConfigDict(extra="forbid", serialize_by_alias=True, validate_by_name=True)
    seed: int
    return_: float = Field(alias="return")
    kpis: Kpis


class PolicyScore(BaseModel):
    model_config = ConfigDict(extra="forbid", serialize_by_alias=True, validate_by_name=True)
    return_: float = Field(alias="return")
    kpis: Kpis
    per_seed: list[SeedScore] = Field(default_factory=list)


class EvalReport(BaseModel):
    """`model_dump()`: `{"policies": {name: {"return", "kpis", "per_seed"}}, "seeds", "ticks", "num_towns"}`."""

    model_config = ConfigDict(extra="forbid")
    policies: dict[str, PolicyScore]
    seeds: list[int]
    ticks: int
    num_towns: int

    def policies_json(self) -> dict[str, Any]:
        """`{"policies": {name: {"return", "kpis"}}}`: what `townlet eval --json` prints."""
        return {"policies": {name: s.model_dump(exclude={"per_seed"}) for name, s in self.policies.items()}}


def eval_seeds(seeds: int) -> list[int]:
    """The evaluation seeds: `EVAL_SEED_BASE + k` for k < `seeds`."""
    return [EVAL_SEED_BASE + k for k in range(seeds)]


# -- the actors ------------------------------------------------------------------------------------


def expert_actor() -> Actor:
    """The scripted expert (the core's own policy)."""

    def expert(vec: VecTown, obs: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        return vec.expert_actions()[0].copy()

    return expert


class RandomActor:
    """A uniformly random valid action per agent (among the masked-in ones), from its own generator,
    reseeded from `(seed, episode seed)` at each episode's start."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng([self.seed, seed])

    def __call__(self, vec: VecTown, obs: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        masks = vec.action_masks()
        # Uniform draws on valid actions, zero on masked ones: the argmax is uniform among the valid ones.
        draws = self.rng.random(masks.shape) * masks
        out: npt.NDArray[np.int64] = draws.argmax(axis=1).astype(np.int64)
        return out


def random_actor(seed: int = 0) -> Actor:
    """A uniformly random masked policy (see `RandomActor`)."""
    return RandomActor(seed)


def greedy_actor(policy: ActorCritic) -> Actor:
    """The policy's most likely valid action (argmax of the masked logits)."""
    policy.eval()

    @torch.no_grad()
    def greedy(vec: VecTown, obs: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        masks = torch.from_numpy(np.ascontiguousarray(vec.action_masks()))
        logits, _ = policy(torch.from_numpy(np.ascontiguousarray(obs)), masks)
        out: npt.NDArray[np.int64] = logits.argmax(-1).numpy().astype(np.int64)
        return out

    return greedy


class CheckpointActor:
    """A checkpoint's policy, greedy; `checkpoint` is the loaded checkpoint (header, path, digest)."""

    def __init__(self, path: Path, *, config: TownConfig | None = None) -> None:
        self.loaded = CheckpointPolicy(Path(path), deterministic=True)
        self.checkpoint = self.loaded.checkpoint
        if config is not None:
            self.loaded.check(observation_spec(config))
        self._act = greedy_actor(self.loaded.net)
        self._checked: VecTown | None = None  # the town last checked (kept, so its id is not reused)

    def __call__(self, vec: VecTown, obs: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        if vec is not self._checked:
            self.loaded.check(vec.observation_metadata())
            self._checked = vec
        return self._act(vec, obs)


def checkpoint_actor(path: Path, *, config: TownConfig | None = None) -> CheckpointActor:
    """A checkpoint's policy, greedy. The checkpoint is read and checked now (UsageError naming the file); with
    `config`, its observation and action spec must match the config's now, else on the first town it meets."""
    return CheckpointActor(path, config=config)


# -- the evaluation --------------------------------------------------------------------------------


def run_episode(
    config: TownConfig, actor: Actor, *, seed: int, ticks: int, num_towns: int
) -> tuple[float, dict[str, float]]:
    """One episode of `ticks` ticks in `num_towns` towns seeded `seed`: the mean per-slot return and the KPIs
    (rates averaged over towns, counts per town averaged over towns)."""
    # One tick longer than the evaluation, so no town resets inside it.
    vec = VecTown(config, num_towns, seed, episode_ticks=ticks + 1)
    reset = getattr(actor, "reset", None)
    if callable(reset):
        reset(seed)
    obs, _ = vec.reset(seed)
    total = np.zeros(vec.num_agents, np.float64)
    for _ in range(ticks):
        actions = actor(vec, obs)
        obs, rewards, _, _, _ = vec.step(actions)
        total += rewards
    kpis = [vec.native.kpis(town) for town in range(num_towns)]
    out: dict[str, float] = {}
    for name in KPI_NAMES:
        values = [float(k[name]) for k in kpis if math.isfinite(float(k[name]))]
        out[name] = float(np.mean(values)) if values else 0.0
    return float(total.mean()), out


def evaluate(
    config: TownConfig,
    policies: Mapping[str, Actor],
    *,
    seeds: int = 3,
    ticks: int = 1440,
    num_towns: int = 8,
) -> EvalReport:
    """Every policy on the same `num_towns` towns for `ticks` ticks, once per evaluation seed."""
    if seeds < 1:
        raise UsageError(f"seeds must be >= 1, got {seeds}")
    if ticks < 1:
        raise UsageError(f"ticks must be >= 1, got {ticks}")
    if num_towns < 1:
        raise UsageError(f"num_towns must be >= 1, got {num_towns}")
    if not policies:
        raise UsageError("no policy to evaluate")
    seed_list = eval_seeds(seeds)
    scores: dict[str, PolicyScore] = {}
    with one_torch_thread():  # the same floats (so the same argmax) on any machine; fastest for small batches
        for name, actor in policies.items():
            per_seed = []
            for seed in seed_list:
                ret, kpis = run_episode(config, actor, seed=seed, ticks=ticks, num_towns=num_towns)
                per_seed.append(SeedScore(seed=seed, return_=ret, kpis=Kpis(**kpis)))
            mean_kpis = {k: float(np.mean([getattr(s.kpis, k) for s in per_seed])) for k in KPI_NAMES}
            scores[name] = PolicyScore(
                return_=float(np.mean([s.return_ for s in per_seed])), kpis=Kpis(**mean_kpis), per_seed=per_seed
            )
    return EvalReport(policies=scores, seeds=seed_list, ticks=ticks, num_towns=num_towns)
