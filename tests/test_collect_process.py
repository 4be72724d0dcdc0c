"""`ppo.overlap`'s collector process (training/collect_process.py): the same rows, stats and states as a collector in
this process, errors raised here, and a child that never outlives its trainer."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, _cli_env, wait_exited
from townlet.sim.config import load_config
from townlet.sim.settings import PPOConfig
from townlet.training.collect_process import CollectorError, CollectorProcess
from townlet.training.envs import TownTrainEnv
from townlet.training.ppo import Dataset, RolloutCollector, RolloutStats
from townlet.training.trainer import make_policy

TOWN = REPO_ROOT / "configs/examples/poc_hybrid.yaml"


def small(**update: Any) -> PPOConfig:
    fields = {"num_envs": 2, "rollout_ticks": 24, "episode_ticks": 30, "overlap": True, "kickstart_coef": 0.5}
    return PPOConfig(**{**fields, **update})


Pair = Callable[[PPOConfig, int], tuple[RolloutCollector, CollectorProcess, torch.nn.Module]]


@pytest.fixture
def pair() -> Iterator[Pair]:
    """Makes a collector here and one in a process over the same towns, policy and seed; closes the processes."""
    made: list[CollectorProcess] = []

    def make(ppo: PPOConfig, seed: int) -> tuple[RolloutCollector, CollectorProcess, torch.nn.Module]:
        cfg = load_config(TOWN)
        env = TownTrainEnv(cfg, ppo.num_envs, seed, ppo.episode_ticks)
        torch.manual_seed(seed)
        policy = make_policy(env.metadata(), env.obs_dim, env.n_actions, ppo.hidden)
        here = RolloutCollector(TownTrainEnv(cfg, ppo.num_envs, seed, ppo.episode_ticks), policy, ppo, seed)
        made.append(CollectorProcess(env, policy, ppo, seed))
        return here, made[-1], policy

    yield make
    for process in made:
        process.close()


def same_rows(a: Dataset, b: Dataset) -> None:
    for f in dataclasses.fields(Dataset):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert (x is None) == (y is None), f.name
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), f.name


def untimed(stats: RolloutStats) -> str:
    """The stats as JSON text (floats to the last bit), without the timings."""
    timing = ("env_seconds", "policy_seconds", "inference_seconds")
    return json.dumps({k: v for k, v in dataclasses.asdict(stats).items() if k not in timing})


def test_the_process_collects_what_a_collector_here_does_and_keeps_each_region_until_the_one_after(pair: Pair) -> None:
    ppo = small()
    here, there, policy = pair(ppo, 7)
    kept: list[tuple[Dataset, Dataset]] = []
    for step in range(4):
        want, want_stats = here.collect()
        got, got_stats, before = there.start().result()
        same_rows(want, got)
        assert got.expert_actions is not None and (got.expert_actions >= 0).any()  # kickstarting's column
        assert untimed(got_stats) == untimed(want_stats)
        assert got_stats.env_seconds > 0 and got_stats.inference_seconds > 0  # measured in the child
        assert got_stats.transitions == len(got) > 0
        assert before()["generator"] != here.get_state()["generator"]  # the state from before the rows
        kept.append((copy.deepcopy(want), got))
        with torch.no_grad():  # the next collection acts with other weights: they reach the child
            for p in policy.parameters():
                p.add_(0.01 * (step + 1))
    # The rows of collection 3 still hold after collection 4 (the other region); 4's are whole too.
    for want, got in kept[2:]:
        same_rows(want, got)
    assert there.get_state() == here.get_state()


def test_a_state_set_in_the_process_resumes_there_as_here(pair: Pair) -> None:
    ppo = small(kickstart_coef=0.0)
    here, there, _ = pair(ppo, 3)
    here.collect()
    saved = here.get_state()
    want, _ = here.collect()
    there.set_state(saved)
    got, _, before = there.start().result()
    same_rows(want, got)
    assert before() == saved
    there.close()  # its stdin closes: it reads end-of-file and exits cleanly
    assert there._proc.returncode == 0


def test_the_childs_errors_are_raised_here_and_it_keeps_serving(pair: Pair) -> None:
    ppo = small(kickstart_coef=0.0)
    here, there, _ = pair(ppo, 1)
    state = there.get_state()
    broken = {**state, "episode_returns": [0.0]}
    with pytest.raises(ValueError, match="collector process: saved episode returns have shape"):
        there.set_state(broken)
    want, _ = here.collect()
    got, _, _ = there.start().result()
    same_rows(want, got)
    pending = there.start()
    with pytest.raises(RuntimeError, match="still collecting"):
        there.start()
    same_rows(here.collect()[0], pending.result()[0])


def test_a_dead_child_is_one_clear_error(pair: Pair) -> None:
    ppo = small(kickstart_coef=0.0)
    _, there, _ = pair(ppo, 2)
    there.collect()
    there._proc.kill()
    there._proc.wait()
    with pytest.raises(CollectorError, match=r"the collector process exited \(code -9\)"):
        there.start().result()
    assert there._proc.poll() is not None


CHILD_OF_A_TRAINER = """
import os, sys
from townlet.sim.config import load_config
from townlet.sim.settings import PPOConfig
from townlet.training.envs import TownTrainEnv
from townlet.training.trainer import Trainer

ppo = PPOConfig(num_envs=1, rollout_ticks=8, episode_ticks=20, overlap=True)
trainer = Trainer(TownTrainEnv(load_config(sys.argv[1]), 1, 0, 20), ppo, seed=0)
trainer.run(2)
print(trainer._process._proc.pid, flush=True)
os._exit(0)  # no cleanup: the child must notice on its own
"""


def test_the_child_exits_when_its_trainer_dies() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD_OF_A_TRAINER, str(TOWN)], env=_cli_env(), capture_output=True, text=True,
        timeout=300, check=True,
    )  # fmt: skip
    pid = int(proc.stdout.strip())
    # Its stdin closed with the trainer: it reads end-of-file and exits (reaped by init).
    assert wait_exited(pid, 120), f"collector process {pid} still running 120 s after its trainer exited"
