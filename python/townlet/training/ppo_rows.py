"""The update's rows (training/ppo.py): the network's outputs over a minibatch's rows, padded to the update's width
(`minibatch_outputs`); the policy the update starts from over every row, collecting ahead (`proximal_outputs`); and
where each row's return continues (`successors`), so that the learner recomputes the rows' advantages from its own
critic's values (`_core.gae_rows`; docs/training.md, "PPO details")."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from townlet import _core
from townlet.training.network import MASKED_LOGIT, ActorCritic, Scratch, pick


def successors(
    buf: _core.RolloutBuffer, next_values: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """`Dataset.next_row` and `Dataset.end_values` on a filled buffer's (T, agents) grid, `next_values` being
    v(o_T) per agent (row numbers count the live cells in order, as the rows keep them): a cell continues into the
    same slot's next cell where its episode goes on and that cell is live, else from v(final observation) where
    truncated (and not terminated), v(o_T) at the last tick, and 0 where the episode ended or the slot's next step
    was not alive.
    `_core.gae_rows` over the rows then gives `compute_gae`'s advantages."""
    n = len(buf)
    valid = np.asarray(buf.valid, bool)[:n]
    terminated, truncated = np.asarray(buf.terminated, bool)[:n], np.asarray(buf.truncated, bool)[:n]
    ended = terminated | truncated
    row = np.cumsum(valid.reshape(-1)).reshape(valid.shape) - 1
    next_row = np.full(valid.shape, -1, np.int64)
    next_row[:-1] = np.where(~ended[:-1] & valid[1:], row[1:], -1)
    end_values = np.where(truncated & ~terminated, np.asarray(buf.bootstrap, np.float32)[:n], np.float32(0.0))
    end_values[-1] = np.where(ended[-1], end_values[-1], next_values)
    return next_row, end_values.astype(np.float32, copy=False)


@torch.no_grad()
def proximal_outputs(
    policy: ActorCritic,
    obs: torch.Tensor,
    masks: torch.Tensor,
    actions: torch.Tensor,
    sizes: list[int],
    width: int,
    scratch: Scratch | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The log-probabilities (n,) of `actions` and the values (n,) under `policy` as it is, computed in the update's
    cut (`minibatches`: the same row counts, so the same kernels)."""
    logp, values = torch.empty(len(actions)), torch.empty(len(actions))
    for rows in np.split(np.arange(len(actions)), np.cumsum(sizes[:-1])):
        idx = torch.from_numpy(rows)
        logp_all, v = minibatch_outputs(policy, obs, masks, rows, width, scratch)
        logp[idx], values[idx] = pick(logp_all, actions.index_select(0, idx)), v
    return logp, values


def minibatch_logits(
    policy: ActorCritic,
    obs: torch.Tensor,
    masks: torch.Tensor,
    rows: npt.NDArray[np.int64],
    width: int,
    scratch: Scratch | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits (width, A), before the mask where the policy computes them apart from it (`ActorCritic.unmasked`),
    and the values (width,) of a minibatch's `rows` of `obs` (the epoch's observations or their
    `ActorCritic.epoch_input`): what `ppo_loss.objective` takes. The network computes `width` rows: the minibatch's,
    then copies of its first (`minibatches`), whose outputs are dropped; its input gathered in one pass
    (`ActorCritic.minibatch`)."""
    m = len(rows)
    net = torch.from_numpy(rows if m == width else np.concatenate([rows, np.full(width - m, rows[0])]))
    x = policy.minibatch(obs, scratch, net)
    raw = policy.unmasked(x)
    return raw if raw is not None else policy(x, masks.index_select(0, net))


def minibatch_outputs(
    policy: ActorCritic,
    obs: torch.Tensor,
    masks: torch.Tensor,
    rows: npt.NDArray[np.int64],
    width: int,
    scratch: Scratch | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every action's masked log-probability (m, A) and the values (m,) of a minibatch's `rows`
    (`minibatch_logits`, the padding's rows dropped)."""
    m = len(rows)
    logits, values = minibatch_logits(policy, obs, masks, rows, width, scratch)
    allowed = masks.index_select(0, torch.from_numpy(rows))
    return torch.log_softmax(logits[:m].masked_fill(~allowed, MASKED_LOGIT), -1), values[:m]
