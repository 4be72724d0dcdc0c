"""Behaviour cloning of memory policies (`lstm`, `gru`, `attention`) on whole per-agent sequences.

A BC dataset's sample is one agent's trajectory through one capture. Each trajectory stays whole, in
tick order: its live ticks (a dead agent acts on nothing) with `starts` marking the ticks whose memory
is reset before acting -- its first live tick, the tick after an episode ended, the first tick after a
respawn (a dead stretch) and every tick the `ctx_reset` feature flags, which is where the policy forgets
its memory when it acts (`MemoryPolicy.forward`). Training is truncated backpropagation through time:
the trajectories are cut into `seq_len`-tick chunks and each chunk is replayed from the memory it starts
with, which every epoch recomputes by running the current weights over the whole trajectories (chunk by
chunk, the memory carried across); minibatches are shuffled chunks, about `batch_size` ticks each.

The loss is BC's (cross-entropy of the masked logits against the captured action, plus `value_coef` x a
value regression on the discounted returns) over the live ticks. The held-out trajectories (whole, chosen
from the seed as for feed-forward BC) are judged by acting through them with the memory carried from tick
to tick exactly as the policy acts in a town, against the majority-action baseline (`training.bc_gate`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from townlet.artifacts.checkpoint import TrainingState
from townlet.sim.settings import ARCH, BCConfig, BCWarmStart, MemorySection, arch_paths, checkpoint_dir
from townlet.training.bc import BCTrainerBase, discounted_returns, holdout_trajectories
from townlet.training.bc_gate import Gate
from townlet.training.network_memory import MemoryPolicy

#: The phase's name: its checkpoints' metadata, its telemetry records, its checkpoint folder.
PHASE = "bc_memory"


class MemoryBCWarmStart(BCWarmStart):
    """Each architecture saves to its own `logs/<config_id>/bc_memory/checkpoints/<arch>_agent_latest.json`."""

    save_path: str = Field(
        f"{checkpoint_dir(PHASE)}/{ARCH}_agent_latest.json",
        description="rewritten whenever the phase saves ({config_id}, {arch}: the config's id, the architecture)",
    )


class MemoryBCConfig(BCConfig):
    """The bc_memory phase's effective section: the `bc:` hyper-parameters with `training.memory`'s
    architecture, `seq_len` and `context` (its warm start is its own: by default none)."""

    arch: str = Field("lstm", pattern="^(lstm|gru|attention)$")
    seq_len: int = Field(16, ge=1)
    context: int = Field(16, ge=1)
    warm_start: MemoryBCWarmStart = MemoryBCWarmStart()

    @model_validator(mode="after")
    def _arch_paths(self) -> Self:
        filled = arch_paths(self.warm_start, self.arch, PHASE)
        if filled is not self.warm_start:
            self.warm_start = filled
        return self

    @staticmethod
    def of(bc: BCConfig, memory: MemorySection) -> MemoryBCConfig:
        """The phase's section of a config (`bc:` and `training.memory`, less their warm starts)."""
        fields = {**bc.model_dump(exclude={"warm_start"}), **memory.model_dump(exclude={"warm_start"})}
        return MemoryBCConfig.model_validate(fields)


@dataclass
class Trajectories:
    """Whole trajectories, padded to a multiple of `seq_len` ticks: (N, T, ...) arrays; `valid` marks the live
    ticks (padding and dead ticks are not), `starts` the ticks acting on a reset memory."""

    obs: torch.Tensor
    masks: torch.Tensor
    actions: torch.Tensor
    returns: torch.Tensor
    valid: torch.Tensor
    starts: torch.Tensor
    #: Which dataset samples these are, in order.
    ids: list[int]

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    @property
    def ticks(self) -> int:
        """Live ticks in all."""
        return int(self.valid.sum())

    def live_actions(self) -> npt.NDArray[np.int64]:
        """The captured action of every live tick, trajectory by trajectory in tick order."""
        out: npt.NDArray[np.int64] = self.actions[self.valid].numpy().astype(np.int64)
        return out


def trajectories(
    samples: list[dict[str, npt.NDArray[Any]]], ids: list[int], *, seq_len: int, gamma: float, ctx_col: int | None
) -> Trajectories:
    """The samples `ids` as whole live-tick sequences (module docstring), padded to a common multiple of `seq_len`."""
    rows: list[dict[str, npt.NDArray[Any]]] = []
    for i in ids:
        s = samples[i]
        alive = s["alive"].astype(bool)
        dones = s["dones"].astype(bool)
        ret = discounted_returns(s["rewards"], dones, alive, gamma)
        live = np.flatnonzero(alive)
        starts = np.zeros(len(live), bool)
        if len(live):
            starts[0] = True
            starts[1:] |= np.diff(live) > 1  # a dead stretch between them: a respawn
            starts[1:] |= dones[live[:-1]]  # the tick after an episode ended
            if ctx_col is not None:
                starts |= s["obs"][live, ctx_col] > 0.5
        rows.append(
            {
                "obs": s["obs"][live].astype(np.float32),
                "masks": s["action_masks"][live].astype(bool),
                "actions": s["actions"][live].astype(np.int64),
                "returns": ret[live].astype(np.float32),
                "starts": starts,
            }
        )
    longest = max((len(r["actions"]) for r in rows), default=0)
    t = max(1, -(-longest // seq_len)) * seq_len
    n = len(rows)
    dim = samples[0]["obs"].shape[1] if samples else 0
    n_actions = samples[0]["action_masks"].shape[1] if samples else 0
    obs = np.zeros((n, t, dim), np.float32)
    masks = np.ones((n, t, n_actions), bool)
    actions = np.zeros((n, t), np.int64)
    returns = np.zeros((n, t), np.float32)
    valid = np.zeros((n, t), bool)
    starts = np.zeros((n, t), bool)
    for k, r in enumerate(rows):
        m = len(r["actions"])
        obs[k, :m], masks[k, :m], actions[k, :m], returns[k, :m] = r["obs"], r["masks"], r["actions"], r["returns"]
        valid[k, :m], starts[k, :m] = True, r["starts"]
    return Trajectories(
        torch.from_numpy(obs), torch.from_numpy(masks), torch.from_numpy(actions), torch.from_numpy(returns),
        torch.from_numpy(valid), torch.from_numpy(starts), ids=list(ids),
    )  # fmt: skip


@dataclass
class SequenceSplit:
    """Whole trajectories for training and for judging: a trajectory goes to one side or the other."""

    train: Trajectories
    holdout: Trajectories


def split_sequences(
    samples: list[dict[str, npt.NDArray[Any]]], cfg: MemoryBCConfig, *, seed: int, ctx_col: int | None
) -> SequenceSplit:
    """`cfg.holdout_fraction` of the trajectories held out whole (the same choice as feed-forward BC's for the
    same seed and samples: `bc.holdout_trajectories`)."""
    held = set(holdout_trajectories(len(samples), cfg.holdout_fraction, seed))
    train_ids = [i for i in range(len(samples)) if i not in held]

    def side(ids: list[int]) -> Trajectories:
        return trajectories(samples, ids, seq_len=cfg.seq_len, gamma=cfg.gamma, ctx_col=ctx_col)

    return SequenceSplit(side(train_ids), side(sorted(held)))


@torch.no_grad()
def replay(policy: MemoryPolicy, traj: Trajectories, seq_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Act through whole trajectories with the memory carried from chunk to chunk (as acting tick by tick does):
    the logits (N, T, A), the values (N, T) and the memory each `seq_len` chunk starts with (N, T / seq_len, S)."""
    n, t = traj.actions.shape
    state = policy.initial_state(n)
    logits, values, states = [], [], []
    for c in range(0, t, seq_len):
        states.append(state)
        sl = slice(c, c + seq_len)
        lg, v, state = policy.sequence(traj.obs[:, sl], traj.masks[:, sl], state, traj.starts[:, sl])
        logits.append(lg)
        values.append(v)
    return torch.cat(logits, 1), torch.cat(values, 1), torch.stack(states, 1)


class RecurrentBCTrainer(BCTrainerBase[MemoryPolicy, MemoryBCConfig, Trajectories]):
    """BC of a `MemoryPolicy` on whole trajectories (module docstring)."""

    phase = PHASE

    def __init__(
        self,
        policy: MemoryPolicy,
        cfg: MemoryBCConfig,
        train: Trajectories,
        holdout: Trajectories,
        *,
        seed: int,
        gate: Gate | None = None,
    ) -> None:
        if train.ticks == 0:
            raise ValueError("no training ticks (every captured agent was dead, or the samples are empty)")
        live = train.valid
        bad = live & ~train.masks.gather(-1, train.actions.unsqueeze(-1)).squeeze(-1)
        if bool(bad.any()):
            raise ValueError(f"{int(bad.sum())} captured actions are masked in their own observation's mask")
        super().__init__(policy, cfg, train, holdout, seed=seed, gate=gate)

    def state_extra(self) -> dict[str, Any]:
        return {"arch": self.policy.architecture}

    def restore(self, training: TrainingState) -> None:
        if training.data.get("arch") != self.policy.architecture:
            raise ValueError(
                f"the training state is of a {training.data.get('arch')} policy, not {self.policy.architecture}"
            )
        super().restore(training)

    def evaluate(self, traj: Trajectories) -> tuple[float, float, npt.NDArray[np.int64] | None]:
        """(accuracy of the argmax action, mean cross-entropy, the argmax actions) over the live ticks of `traj`,
        acted through with the memory carried."""
        if traj.ticks == 0:
            return float("nan"), float("nan"), None
        logits = replay(self.policy, traj, self.cfg.seq_len)[0][traj.valid]
        actions = traj.actions[traj.valid]
        pred: npt.NDArray[np.int64] = logits.argmax(-1).numpy().astype(np.int64)
        loss = float(F.cross_entropy(logits, actions))
        return float((pred == actions.numpy()).mean()), loss, pred

    def run(
        self,
        epochs: int,
        *,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        checkpoint_every: int | None = None,
        save: Callable[[RecurrentBCTrainer], None] | None = None,
        on_best: Callable[[RecurrentBCTrainer], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Train until epoch `epochs` (a restored trainer continues from its epoch)."""
        records = []
        tr, seq = self.train, self.cfg.seq_len
        n, t = tr.actions.shape
        chunks = t // seq

        def cut(a: torch.Tensor) -> torch.Tensor:  # (N, T, ...) -> (N * chunks, seq, ...), trajectory-major
            return a.reshape(n * chunks, seq, *a.shape[2:])

        obs, masks, actions, returns, valid, starts = (cut(a) for a in (tr.obs, tr.masks, tr.actions, tr.returns,
                                                                         tr.valid, tr.starts))  # fmt: skip
        live_chunks = np.flatnonzero(valid.any(1).numpy())
        per_batch = max(1, self.cfg.batch_size // seq)
        for epoch in range(self.epoch + 1, epochs + 1):
            t0 = time.perf_counter()
            self.epoch = epoch
            self.policy.eval()
            initial = replay(self.policy, tr, seq)[2].reshape(n * chunks, -1)  # each chunk's memory, current weights
            self.policy.train()
            perm = live_chunks[self.rng.permutation(len(live_chunks))]
            pol_losses, val_losses, hits = [], [], 0
            for start in range(0, len(perm), per_batch):
                idx = torch.from_numpy(perm[start : start + per_batch])
                logits, values, _ = self.policy.sequence(obs[idx], masks[idx], initial[idx], starts[idx])
                live = valid[idx]
                lg, act = logits[live], actions[idx][live]
                pol = F.cross_entropy(lg, act)
                val = 0.5 * ((values[live] - returns[idx][live]) ** 2).mean()
                loss = pol + self.cfg.value_coef * val
                self.optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                self.optimizer.step()
                pol_losses.append(float(pol.detach()))
                val_losses.append(float(val.detach()))
                hits += int((lg.detach().argmax(-1) == act).sum())
                self.steps += int(live.sum())
            self.policy.eval()
            hold_acc, hold_loss, predicted = self.evaluate(self.holdout)
            held = self.holdout.ticks
            rec: dict[str, Any] = {
                "phase": PHASE,
                "arch": self.policy.architecture,
                "epoch": epoch,
                "steps": self.steps,
                "lr": float(self.optimizer.param_groups[0]["lr"]),
                "loss_policy": float(np.mean(pol_losses)),
                "loss_value": float(np.mean(val_losses)),
                "train_accuracy": hits / tr.ticks,
                "holdout_accuracy": hold_acc if held else None,
                "holdout_loss": hold_loss if held else None,
                "rows_train": tr.ticks,
                "rows_holdout": held,
                "sequences_train": len(live_chunks),
                "seq_len": seq,
                "epoch_duration_sec": time.perf_counter() - t0,
            }
            records.append(self.end_epoch(rec, predicted, epochs, on_epoch=on_epoch,
                                          checkpoint_every=checkpoint_every, save=save, on_best=on_best))  # fmt: skip
        return records
