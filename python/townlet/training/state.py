"""Training state a resume restores: optimizer moments and hyper-parameters, RNG streams.

Everything is JSON-compatible data plus named float32 tensors (`checkpoint.TrainingState`), so it
travels in `.json` and `.safetensors` checkpoints alike and is never pickled.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import torch

from townlet.artifacts.checkpoint import TrainingState
from townlet.errors import UsageError


def optimizer_state(
    opt: torch.optim.Optimizer, prefix: str = "optim"
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """An optimizer's state_dict split into JSON data and tensors named `<prefix>/<param>/<key>`."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in sd["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                if value.dtype != torch.float32:
                    raise TypeError(f"optimizer state {key!r} has dtype {value.dtype}; only float32 is stored")
                tensors[f"{prefix}/{idx}/{key}"] = value.detach().clone()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return {"param_groups": groups, "scalars": scalars}, tensors


def restore_optimizer(
    opt: torch.optim.Optimizer, data: dict[str, Any], tensors: dict[str, torch.Tensor], prefix: str = "optim"
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        head, _, rest = name.partition("/")
        if head != prefix:
            continue
        idx, _, key = rest.partition("/")
        state.setdefault(int(idx), {})[key] = value.clone()
    for idx, values in data.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in data["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


def torch_generator_state(gen: torch.Generator | None = None) -> str:
    raw = (gen.get_state() if gen is not None else torch.get_rng_state()).numpy().tobytes()
    return base64.b64encode(raw).decode("ascii")


def set_torch_generator_state(text: str, gen: torch.Generator | None = None) -> None:
    raw = torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy())
    if gen is not None:
        gen.set_state(raw)
    else:
        torch.set_rng_state(raw)


def numpy_rng(state: dict[str, Any]) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng


def loop_state(
    phase: str,
    *,
    epoch: int,
    steps: int,
    total_epochs: int,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
    best: dict[str, Any] | None,
    **extra: Any,
) -> TrainingState:
    """What every phase's training loop saves: counters, optimizer, RNG streams, best so far, and
    the phase's `extra` data."""
    optim, tensors = optimizer_state(optimizer)
    data = {
        "phase": phase,
        "epoch": epoch,
        "steps": steps,
        "total_epochs": total_epochs,
        "optimizer": optim,
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch_generator_state(),
        "best": best,
        **extra,
    }
    return TrainingState(data, tensors)


def restore_loop(
    training: TrainingState, optimizer: torch.optim.Optimizer
) -> tuple[int, int, np.random.Generator, dict[str, Any] | None]:
    """Restore the optimizer and the torch RNG from `loop_state` output; returns epoch, steps, the
    minibatch RNG and the best so far."""
    data = training.data
    restore_optimizer(optimizer, data["optimizer"], training.tensors)
    set_torch_generator_state(data["torch_rng"])
    return int(data["epoch"]), int(data["steps"]), numpy_rng(data["numpy_rng"]), data.get("best")


def require(training: TrainingState | None, where: str, phase: str) -> TrainingState:
    """The training state of a checkpoint that a resume of `phase` needs."""
    if training is None:
        raise UsageError(f"{where}: holds weights only (no training state), so it cannot resume a {phase} run")
    if training.data.get("phase") != phase:
        raise UsageError(
            f"{where}: training state is of phase {training.data.get('phase')!r}, cannot resume a {phase} run"
        )
    return training
