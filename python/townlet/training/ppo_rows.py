"""The update's rows (training/ppo.py): the rows a pass computes on, each minibatch padded to the update's width
(`pass_order`), and the network's outputs over one of them (`block_logits`); the policy the update starts from
over every row, collecting ahead (`proximal_outputs`); and
where each row's return continues (`successors`), so that the learner recomputes the rows' advantages from its own
critic's values (`_core.gae_rows`; docs/training.md, "PPO details")."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from townlet import _core
from townlet.training.network import MASKED_LOGIT, ActorCritic, pick


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


def pass_order(perm: npt.NDArray[np.int64], sizes: list[int], width: int) -> npt.NDArray[np.int64]:
    """The rows a pass's network computes on (`ActorCritic.pass_input`): each minibatch's rows of `perm` (cut by
    `sizes`), then copies of its first up to `width` (`minibatches`), one minibatch after another."""
    cut = np.split(perm, np.cumsum(sizes[:-1]))
    return np.concatenate([np.concatenate([rows, np.full(width - len(rows), rows[0])]) for rows in cut])


def block_logits(
    policy: ActorCritic, x: torch.Tensor, masks: torch.Tensor, order: torch.Tensor, i: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits (width, A), before the mask where the policy computes them apart from it (`ActorCritic.unmasked`),
    and the values (width,) of the `i`th minibatch of a pass (`x`: its `pass_input` of the rows `order`, from
    `pass_order`): what `ppo_loss.objective` takes. The rows past the minibatch's own are copies of its first,
    whose outputs are dropped."""
    xb = policy.block(x, i, width)
    raw = policy.unmasked(xb)
    return raw if raw is not None else policy(xb, masks.index_select(0, order[i * width : (i + 1) * width]))


def proximal_outputs(
    policy: ActorCritic,
    x: torch.Tensor,
    masks: torch.Tensor,
    actions: torch.Tensor,
    order: torch.Tensor,
    sizes: list[int],
    width: int,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """The log-probabilities (n,) of `actions` and the values (n,) under `policy` as it is, computed over the first
    pass's input (`x`, of the rows `order`) in its minibatches, and the first minibatch's `block_logits` with their
    gradients recorded: the first pass's first minibatch is the same rows under the same weights, so its forward is
    this one (the same bits as without gradients), where the update computed it again."""
    n = len(actions)
    logp, values = torch.empty(n), torch.empty(n)
    first: tuple[torch.Tensor, torch.Tensor] | None = None
    for i, m in enumerate(sizes):
        with torch.set_grad_enabled(i == 0 and torch.is_grad_enabled()):
            out = block_logits(policy, x, masks, order, i, width)
        if i == 0:
            first = out
        rows = order[i * width : i * width + m]
        logits = out[0].detach()[:m].masked_fill(~masks.index_select(0, rows), MASKED_LOGIT)
        logp[rows] = pick(torch.log_softmax(logits, -1), actions.index_select(0, rows))
        values[rows] = out[1].detach()[:m]
    assert first is not None
    return logp, values, first
