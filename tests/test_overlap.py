"""`ppo.overlap`: the next epoch's rollout is collected in a process of its own while the update learns from this
one, with the weights from before this epoch's update.

* the lag is exactly one update: epochs 1 and 2 are both collected with the initial weights, epoch 3 with
  epoch 1's (checked against a plain collector acting with those weights);
* the same config and seed give the same bytes, and a run killed mid-way and resumed from its checkpoint ends
  where the uninterrupted one does, best checkpoint included (the command line, as a user runs it);
* what it cannot do is refused in one line: `torch_threads: auto`, replay-only or mixed training.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError

from conftest import REPO_ROOT, CliResult, _cli_env, assert_one_line_error, assert_same_checkpoint, kill_once_saved
from townlet.artifacts.checkpoint import load_checkpoint
from townlet.sim.config import load_config
from townlet.sim.settings import MemoryConfig, MemorySection, PPOConfig
from townlet.training.envs import TownTrainEnv
from townlet.training.optim import adam
from townlet.training.ppo import RolloutCollector, ppo_update
from townlet.training.ppo_loss import UpdateStats
from townlet.training.trainer import Trainer

TOWN = REPO_ROOT / "configs/examples/poc_hybrid.yaml"
TIMING = {"epoch_duration_sec", "sps", "time_env_sec", "time_learn_sec", "time_policy_sec"}
TIMING |= {"time_inference_sec", "time_other_sec"}


def small(**update: Any) -> PPOConfig:
    return PPOConfig(**{"num_envs": 2, "rollout_ticks": 16, "episode_ticks": 40, "overlap": True, **update})


def weights(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in policy.state_dict().items()}


def test_each_epoch_is_collected_with_the_weights_from_before_the_last_update() -> None:
    cfg = load_config(TOWN)
    ppo = small()
    trainer = Trainer(TownTrainEnv(cfg, ppo.num_envs, 5, ppo.episode_ticks), ppo, seed=5)
    start = copy.deepcopy(trainer.policy)
    after: list[torch.nn.Module] = []
    rewards: list[float] = []

    def on_epoch(rec: dict[str, Any]) -> None:
        after.append(copy.deepcopy(trainer.policy))
        rewards.append(float(rec["reward_mean"]))

    trainer.run(4, on_epoch=on_epoch)
    assert not weights(after[1]).keys() - weights(start).keys()
    assert any(not v.equal(weights(start)[k]) for k, v in weights(after[0]).items())  # the update moved it

    # The same towns and sampling seed, collected by hand: rollouts 1 and 2 with the initial weights, 3 with
    # epoch 1's, 4 with epoch 2's.
    env = TownTrainEnv(cfg, ppo.num_envs, 5, ppo.episode_ticks)
    acting = copy.deepcopy(start)
    collector = RolloutCollector(env, acting, ppo, 5)
    for epoch, source in enumerate([start, start, after[0], after[1]], start=1):
        acting.load_state_dict(source.state_dict())
        data, _ = collector.collect()
        assert float(data.rewards.mean()) == rewards[epoch - 1], epoch

    # Without overlap each rollout after the first is the latest policy's: other samples (a draw is the inverse CDF at
    # the same uniforms, so one small update may not flip an action; over three it does).
    serial = Trainer(TownTrainEnv(cfg, ppo.num_envs, 5, ppo.episode_ticks), small(overlap=False), seed=5)
    plain = serial.run(4).records
    assert plain[0]["reward_mean"] == rewards[0]
    assert any(r["reward_mean"] != rewards[k] for k, r in enumerate(plain[1:], start=1))


def test_collecting_ahead_the_clip_is_taken_to_the_updates_starting_policy() -> None:
    """Rows acted by an older policy (here: log-probabilities the acting policy gave, shifted by a per-row amount):
    with `overlap` the ratio is taken to the policy the update starts from (the first minibatch's is exactly 1, so
    nothing clips and the KL is 0) and each row's objective is weighted by exp(proximal - acting); without it the
    same rows clip against the acting policy's."""
    cfg = load_config(TOWN)
    ppo = small(overlap=False, precision="fp32", update_epochs=1, num_minibatches=1, norm_adv=False)
    trainer = Trainer(TownTrainEnv(cfg, ppo.num_envs, 5, ppo.episode_ticks), ppo, seed=5)
    data, _ = trainer.collector.collect()  # type: ignore[union-attr]
    shift = np.random.default_rng(0).uniform(0.3, 0.9, len(data)).astype(np.float32)
    lagged = dataclasses.replace(data, log_probs=data.log_probs - shift)
    with trainer.policy.computing_in("fp32"), torch.no_grad():
        obs, masks = torch.from_numpy(lagged.obs), torch.from_numpy(lagged.masks)
        proximal, _, _ = trainer.policy.evaluate(obs, masks, torch.from_numpy(lagged.actions))

    def first_minibatch(overlap: bool) -> UpdateStats:
        policy = copy.deepcopy(trainer.policy)
        update_cfg = ppo.model_copy(update={"overlap": overlap})
        return ppo_update(
            policy, adam(policy.parameters(), 1e-3, eps=1e-5), lagged, update_cfg, np.random.default_rng(1)
        )

    ahead, behind = first_minibatch(True), first_minibatch(False)
    assert ahead.clipfracs == [0.0] and abs(ahead.kls[0]) < 1e-6
    weight = (proximal - torch.from_numpy(lagged.log_probs)).exp()
    expected = -(torch.from_numpy(lagged.advantages) * weight).mean()
    assert ahead.pg_losses[0] == pytest.approx(float(expected), rel=1e-4)
    assert behind.clipfracs[0] > 0.9  # exp(0.3 .. 0.9) is past 1 + clip_coef for every row


def test_collecting_ahead_the_advantages_are_recomputed_from_the_updates_starting_critic() -> None:
    """A collector collecting ahead sends each row's successor (`next_row`, `end_values`), and the update recomputes
    the advantages, returns and clipped-around values from its starting critic: the acting critic's (here replaced by
    noise) change nothing then; without the successors they change every loss."""
    cfg = load_config(TOWN)
    ppo = small(precision="fp32", update_epochs=1, num_minibatches=2)
    trainer = Trainer(
        TownTrainEnv(cfg, ppo.num_envs, 5, ppo.episode_ticks), ppo.model_copy(update={"overlap": False}), seed=5
    )
    collector = RolloutCollector(TownTrainEnv(cfg, ppo.num_envs, 5, ppo.episode_ticks), trainer.policy, ppo, seed=5)
    data, _ = collector.collect()
    assert data.next_row is not None and data.end_values is not None
    assert (data.next_row >= 0).any() and (data.next_row == -1).any()
    noise = np.random.default_rng(0).normal(0, 3, (3, len(data))).astype(np.float32)
    stale = dataclasses.replace(data, values=noise[0], advantages=noise[1], returns=noise[2])

    def losses(rows: Any) -> tuple[list[float], list[float]]:
        policy = copy.deepcopy(trainer.policy)
        st = ppo_update(policy, adam(policy.parameters(), 1e-3, eps=1e-5), rows, ppo, np.random.default_rng(1))
        return st.pg_losses, st.v_losses

    assert losses(stale) == losses(data)
    without = dataclasses.replace(stale, next_row=None, end_values=None)
    assert all(a != b for a, b in zip(losses(without)[1], losses(data)[1], strict=True))


def test_the_same_seed_gives_the_same_bytes_and_the_best_is_the_policy_that_acted() -> None:
    cfg = load_config(TOWN)

    def train() -> tuple[dict[str, torch.Tensor], list[tuple[dict[str, Any], dict[str, torch.Tensor]]], list[Any]]:
        ppo = small()
        trainer = Trainer(TownTrainEnv(cfg, ppo.num_envs, 3, ppo.episode_ticks), ppo, seed=3)
        held = [weights(trainer.policy)]  # after epoch 0, 1, 2, ...
        offered: list[tuple[dict[str, Any], dict[str, torch.Tensor]]] = []
        trainer.run(
            6,
            on_epoch=lambda _rec: held.append(weights(trainer.policy)),
            on_best=lambda t: offered.append((dict(t.best or {}), weights(t.behaviour))),
        )
        return weights(trainer.policy), offered, held

    (a, best_a, held), (b, best_b, _) = train(), train()
    assert all(b[k].equal(v) for k, v in a.items())
    assert [x for x, _ in best_a] == [x for x, _ in best_b] and len(best_a) >= 2
    for best, acted in best_a:
        assert best["policy_epoch"] == max(0, best["epoch"] - 2)
        assert all(acted[k].equal(v) for k, v in held[best["policy_epoch"]].items()), best


def test_what_overlap_cannot_do_is_refused() -> None:
    with pytest.raises(ValidationError, match="overlap: needs a fixed torch_threads"):
        PPOConfig(overlap=True, torch_threads="auto")
    # The memory phase collects sequences on one thread: it drops the flag, as it drops kickstarting.
    assert MemoryConfig.of(small(), MemorySection()).overlap is False
    cfg = load_config(TOWN)
    ppo = small()
    with pytest.raises(ValueError, match="collects ahead from its own env only"):
        # Replay-only training (and rollout shards, which build their trainer so): no env of its own.
        env = TownTrainEnv(cfg, ppo.num_envs, 1, ppo.episode_ticks)
        policy = Trainer(env, small(overlap=False), seed=1).policy
        Trainer(None, ppo, seed=1, policy=policy, replay=lambda p: None)  # type: ignore[arg-type,return-value]
    trainer = Trainer(env, ppo, seed=1)
    with pytest.raises(ValueError, match="in rollout mode only, not mixed"):
        trainer.run(1, data_mode="mixed")


# -- the command line ----------------------------------------------------------------------------------------------


def townlet(cwd: Path, *args: str | Path) -> CliResult:
    argv = [sys.executable, "-m", "townlet", *map(str, args)]
    proc = subprocess.run(argv, cwd=cwd, env=_cli_env(), capture_output=True, text=True, timeout=600)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch directory with a small copy of the default town that trains with `ppo.overlap`."""
    root = tmp_path_factory.mktemp("overlap")
    raw = yaml.safe_load(TOWN.read_text())
    for key in ("affordances", "perturbations"):
        raw[key] = str(REPO_ROOT / raw[key])
    raw["ppo"] = {"episode_ticks": 48, "num_envs": 2, "rollout_ticks": 32, "overlap": True}
    raw["training"] = {"checkpoint_every": 1}
    (root / "town.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


def records(path: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in path.read_text().splitlines()]


def train(work: Path, out: str, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "townlet", "train", "town.yaml", "--epochs", "6", "-q",
            "--warm-start-save", f"{out}/ppo_latest.json", "--ppo-log", f"{out}/train.jsonl", *extra]  # fmt: skip
    return subprocess.Popen(argv, cwd=work, env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_killed_overlapped_run_resumes_identically(town: Path) -> None:
    full = train(town, "full")
    _, err = full.communicate(timeout=600)
    assert full.returncode == 0, err
    done = load_checkpoint(town / "full/ppo_latest.json")
    assert done.training is not None and done.training.data["acting_epoch"] == 5  # epoch 7's rows: epoch 5's weights
    assert any(name.startswith("acting.") for name in done.training.tensors)

    part = train(town, "part")
    header = town / "part/ppo_latest.json"
    killed_at = kill_once_saved(part, header, 2)
    assert 2 <= killed_at < 6, "the run finished before it could be interrupted"

    resumed = train(town, "part", "--warm-start-load", "part/ppo_latest.json")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    again = load_checkpoint(header)
    assert_same_checkpoint(done, again)
    assert records(town / "part/train.jsonl") == records(town / "full/train.jsonl")
    best_full, best_part = load_checkpoint(town / "full/ppo_best.json"), load_checkpoint(town / "part/ppo_best.json")
    assert best_full.header["metadata"]["best"] == best_part.header["metadata"]["best"]
    assert all(best_part.state[k].equal(v) for k, v in best_full.state.items())
    chosen = json.loads(best_full.header["metadata"]["best"])
    assert chosen["value"] == max(r["reward_mean"] for r in records(town / "full/train.jsonl"))
    assert chosen["policy_epoch"] == max(0, chosen["epoch"] - 2)


def test_overlap_with_auto_threads_is_one_line_naming_the_key(town: Path) -> None:
    raw = yaml.safe_load((town / "town.yaml").read_text())
    raw["ppo"]["torch_threads"] = "auto"
    (town / "auto.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    res = townlet(town, "train", "auto.yaml", "--epochs", "1", "-q", "--warm-start-save", "auto_out.json")
    assert_one_line_error(res, "auto.yaml", "overlap", "torch_threads")
    assert not (town / "auto_out.json").exists()
    # The same rule when the flag meets the config's `auto`: the config is named, not a traceback.
    raw["ppo"].pop("overlap")
    (town / "auto_only.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    res = townlet(town, "train", "auto_only.yaml", "--overlap", "--epochs", "1", "-q", "--warm-start-save", "flag.json")
    assert_one_line_error(res, "auto_only.yaml: overlap: needs a fixed torch_threads")
    assert not (town / "flag.json").exists()


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (("--overlap", "--mode", "memory"), "--overlap: PPO options, not used by --mode memory"),
        (("--overlap", "--backend", "local", "--shards", "2"), "--backend: shards already collect in parallel"),
        (("--overlap", "--mode", "replay"), "ppo.overlap: collects rollouts ahead (--mode rollout), not --mode replay"),
    ],
)
def test_the_flag_is_refused_where_nothing_collects_ahead(town: Path, flags: tuple[str, ...], says: str) -> None:
    res = townlet(town, "train", TOWN, "--epochs", "1", "-q", *flags, "--warm-start-save", "refused.json")
    assert_one_line_error(res, says)
    assert not (town / "refused.json").exists()
