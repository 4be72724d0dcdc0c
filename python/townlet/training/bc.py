"""Behaviour cloning: fit the policy to captured (expert) actions.

The loss is the cross-entropy of the masked policy logits against the captured action, plus
`value_coef` x a value regression on the discounted returns of the capture, so that a PPO run
inheriting these weights starts with a critic that already knows the scale of the returns.
Accuracy is measured on held-out trajectories: `holdout_fraction` of the samples (one agent of one
capture each), chosen from the seed and never seen in training -- ticks of one trajectory are
correlated, so a split of rows would flatter the model. `training.bc_gate` judges the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from townlet import _core
from townlet.artifacts.checkpoint import TrainingState
from townlet.sim.settings import BCConfig
from townlet.training.bc_gate import Gate
from townlet.training.network import ActorCritic
from townlet.training.optim import adam
from townlet.training.state import loop_state, restore_loop

#: What picks the best-known BC checkpoint (training accuracy when nothing is held out).
BEST_METRIC = "holdout_accuracy"


@dataclass
class Rows:
    obs: npt.NDArray[np.float32]
    masks: npt.NDArray[np.bool_]
    actions: npt.NDArray[np.int64]
    returns: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.actions)

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        return Rows(*(np.concatenate([getattr(p, f) for p in parts]) for f in Rows.__dataclass_fields__))


def discounted_returns(
    rewards: npt.NDArray[np.float32], dones: npt.NDArray[np.bool_], alive: npt.NDArray[np.bool_], gamma: float
) -> npt.NDArray[np.float32]:
    """Discounted returns of one agent's trajectory (no bootstrap at the end), via the Rust GAE
    with zero values and lambda 1."""
    t = len(rewards)
    zeros = np.zeros((t, 1), np.float32)
    _, ret = _core.compute_gae(
        rewards.reshape(t, 1).astype(np.float32),
        zeros,
        dones.reshape(t, 1).astype(bool),
        np.zeros((t, 1), bool),
        alive.reshape(t, 1).astype(bool),
        np.zeros((t, 1), np.float32),
        np.zeros(1, np.float32),
        gamma,
        1.0,
    )
    out: npt.NDArray[np.float32] = ret[:, 0]
    return out


@dataclass
class Split:
    """Rows for training and for judging: whole trajectories (samples: one agent of one capture) go to
    one side or the other, never rows of the same trajectory to both."""

    train: Rows
    holdout: Rows
    #: Indices (into the dataset's samples) of the trajectories on each side, ascending.
    train_ids: list[int]
    holdout_ids: list[int]


def holdout_trajectories(n: int, fraction: float, seed: int) -> list[int]:
    """Which of `n` trajectories are held out: round(n x fraction) of them (at least one when the
    fraction is positive and there are two or more, never all), chosen by a permutation seeded with
    `seed`; ascending."""
    if fraction <= 0 or n < 2:
        return []
    k = min(n - 1, max(1, round(n * fraction)))
    chosen = np.random.default_rng(seed).permutation(n)[:k]
    return sorted(int(i) for i in chosen)


def split_rows(samples: list[dict[str, npt.NDArray[Any]]], cfg: BCConfig, *, seed: int) -> Split:
    """(train, held-out) rows where the agent was alive; `cfg.holdout_fraction` of the trajectories
    are held out whole (`holdout_trajectories`)."""
    held = set(holdout_trajectories(len(samples), cfg.holdout_fraction, seed))
    train: list[Rows] = []
    hold: list[Rows] = []
    for i, s in enumerate(samples):
        alive = s["alive"].astype(bool)
        ret = discounted_returns(s["rewards"], s["dones"].astype(bool), alive, cfg.gamma)
        (hold if i in held else train).append(
            Rows(
                obs=s["obs"][alive].astype(np.float32),
                masks=s["action_masks"][alive].astype(bool),
                actions=s["actions"][alive].astype(np.int64),
                returns=ret[alive].astype(np.float32),
            )
        )
    empty = Rows(
        obs=np.zeros((0, samples[0]["obs"].shape[1]), np.float32) if samples else np.zeros((0, 0), np.float32),
        masks=np.zeros((0, samples[0]["action_masks"].shape[1]), bool) if samples else np.zeros((0, 0), bool),
        actions=np.zeros(0, np.int64),
        returns=np.zeros(0, np.float32),
    )
    return Split(
        Rows.concat(train) if train else empty,
        Rows.concat(hold) if hold else empty,
        [i for i in range(len(samples)) if i not in held],
        sorted(held),
    )


PolicyT = TypeVar("PolicyT", bound=ActorCritic)
ConfigT = TypeVar("ConfigT", bound=BCConfig)
DataT = TypeVar("DataT")


class BCTrainerBase(Generic[PolicyT, ConfigT, DataT]):
    """What the feed-forward and memory BC trainers share: the optimizer, the minibatch RNG, the counters, the best
    and latest records, the training state a resume restores, and the end of each epoch (`end_epoch`). A subclass
    checks its rows before calling `__init__`, and trains the epochs (`run`)."""

    #: The phase its training state names.
    phase = "bc"

    def __init__(
        self, policy: PolicyT, cfg: ConfigT, train: DataT, holdout: DataT, *, seed: int, gate: Gate | None
    ) -> None:
        torch.set_num_threads(cfg.torch_threads)
        self.policy = policy
        self.cfg = cfg
        self.train, self.holdout = train, holdout
        #: Judges each epoch on the held-out rows (the record's gate fields); None: no gate fields.
        self.gate = gate
        self.optimizer = adam(policy.parameters(), cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.rng = np.random.default_rng(seed)
        self.epoch = 0
        self.steps = 0
        self.best: dict[str, Any] | None = None
        #: The latest epoch's record (what `on_best` and `save` describe).
        self.last: dict[str, Any] | None = None

    def state_extra(self) -> dict[str, Any]:
        """More fields of the training state (the memory trainer's architecture)."""
        return {}

    def training_state(self, total_epochs: int, dataset: dict[str, Any]) -> TrainingState:
        return loop_state(
            self.phase, epoch=self.epoch, steps=self.steps, total_epochs=total_epochs, optimizer=self.optimizer,
            rng=self.rng, best=self.best, dataset=dataset, **self.state_extra(),
        )  # fmt: skip

    def restore(self, training: TrainingState) -> None:
        self.epoch, self.steps, self.rng, self.best = restore_loop(training, self.optimizer)

    def end_epoch(
        self,
        rec: dict[str, Any],
        predicted: npt.NDArray[np.int64] | None,
        epochs: int,
        *,
        on_epoch: Callable[[dict[str, Any]], None] | None,
        checkpoint_every: int | None,
        save: Callable[[Self], None] | None,
        on_best: Callable[[Self], None] | None,
    ) -> dict[str, Any]:
        """Close epoch `rec["epoch"]` of a run to `epochs`: the gate's verdict on the held-out `predicted` joins
        the record, which becomes `last`; a better score (held-out accuracy, or training accuracy when
        `rec["rows_holdout"]` is 0) becomes `best` and goes to `on_best`; the record goes to `on_epoch`; every
        `checkpoint_every` epochs but the last the trainer goes to `save`. Returns the record."""
        epoch, held = rec["epoch"], bool(rec["rows_holdout"])
        if self.gate is not None:
            rec.update(self.gate.judge(predicted))
        self.last = rec
        score = rec["holdout_accuracy"] if held else rec["train_accuracy"]
        if self.best is None or score > float(self.best["value"]):
            metric = BEST_METRIC if held else "train_accuracy"
            self.best = {"metric": metric, "value": score, "epoch": epoch, "policy_epoch": epoch}
            if on_best is not None:
                on_best(self)
        if on_epoch is not None:
            on_epoch(rec)
        if save is not None and checkpoint_every and epoch % checkpoint_every == 0 and epoch != epochs:
            save(self)
        return rec


class BCTrainer(BCTrainerBase[ActorCritic, BCConfig, Rows]):
    def __init__(
        self, policy: ActorCritic, cfg: BCConfig, train: Rows, holdout: Rows, *, seed: int, gate: Gate | None = None
    ) -> None:
        if len(train) == 0:
            raise ValueError("no training rows (every captured agent was dead, or the samples are empty)")
        bad = ~train.masks[np.arange(len(train)), train.actions]
        if bad.any():
            raise ValueError(f"{int(bad.sum())} captured actions are masked in their own observation's mask")
        super().__init__(policy, cfg, train, holdout, seed=seed, gate=gate)

    @torch.no_grad()
    def evaluate(self, rows: Rows) -> tuple[float, float, npt.NDArray[np.int64] | None]:
        """(accuracy of the argmax action, mean cross-entropy, the argmax actions) over `rows`."""
        if len(rows) == 0:
            return float("nan"), float("nan"), None
        loss = 0.0
        predicted = []
        for start in range(0, len(rows), 4096):
            sl = slice(start, start + 4096)
            obs, mask = torch.from_numpy(rows.obs[sl]), torch.from_numpy(rows.masks[sl])
            actions = torch.from_numpy(rows.actions[sl])
            logits, _ = self.policy(obs, mask)
            predicted.append(logits.argmax(-1).numpy().astype(np.int64))
            loss += float(F.cross_entropy(logits, actions, reduction="sum"))
        pred = np.concatenate(predicted)
        return float((pred == rows.actions).mean()), loss / len(rows), pred

    def run(
        self,
        epochs: int,
        *,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        checkpoint_every: int | None = None,
        save: Callable[[BCTrainer], None] | None = None,
        on_best: Callable[[BCTrainer], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Train until epoch `epochs` (a restored trainer continues from its epoch)."""
        records = []
        tensors = {
            "obs": torch.from_numpy(self.train.obs),
            "masks": torch.from_numpy(self.train.masks),
            "actions": torch.from_numpy(self.train.actions),
            "returns": torch.from_numpy(self.train.returns),
        }
        n, bs = len(self.train), self.cfg.batch_size
        for epoch in range(self.epoch + 1, epochs + 1):
            t0 = time.perf_counter()
            self.epoch = epoch
            perm = self.rng.permutation(n)
            pol_losses, val_losses, hits = [], [], 0
            self.policy.train()
            for start in range(0, n, bs):
                idx = torch.from_numpy(perm[start : start + bs])
                logits, values = self.policy(tensors["obs"][idx], tensors["masks"][idx])
                actions = tensors["actions"][idx]
                pol = F.cross_entropy(logits, actions)
                val = 0.5 * ((values - tensors["returns"][idx]) ** 2).mean()
                loss = pol + self.cfg.value_coef * val
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                pol_losses.append(float(pol.detach()))
                val_losses.append(float(val.detach()))
                hits += int((logits.detach().argmax(-1) == actions).sum())
                self.steps += len(idx)
            self.policy.eval()
            hold_acc, hold_loss, predicted = self.evaluate(self.holdout)
            rec: dict[str, Any] = {
                "phase": "bc",
                "epoch": epoch,
                "steps": self.steps,
                "lr": float(self.optimizer.param_groups[0]["lr"]),
                "loss_policy": float(np.mean(pol_losses)),
                "loss_value": float(np.mean(val_losses)),
                "train_accuracy": hits / n,
                "holdout_accuracy": hold_acc if len(self.holdout) else None,
                "holdout_loss": hold_loss if len(self.holdout) else None,
                "rows_train": n,
                "rows_holdout": len(self.holdout),
                "epoch_duration_sec": time.perf_counter() - t0,
            }
            records.append(self.end_epoch(rec, predicted, epochs, on_epoch=on_epoch,
                                          checkpoint_every=checkpoint_every, save=save, on_best=on_best))  # fmt: skip
        return records
