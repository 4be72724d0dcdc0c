"""A trained policy checkpoint acting in a town: `(obs, masks) -> (actions, log-probs, values)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from townlet.artifacts.checkpoint import fingerprint, load_checkpoint
from townlet.errors import UsageError


class CheckpointPolicy:
    """Samples from a checkpointed policy (or takes its argmax with `deterministic`), seeded."""

    def __init__(self, path: Path, *, seed: int = 0, deterministic: bool = False) -> None:
        self.checkpoint = load_checkpoint(path)
        self.net = self.checkpoint.policy()
        self.deterministic = deterministic
        self.gen = torch.Generator().manual_seed(seed)
        self.path = path

    @property
    def name(self) -> str:
        return f"checkpoint:{self.path.name}:{self.checkpoint.sha256[:12]}"

    def check(self, obs_meta: dict[str, Any]) -> None:
        """Refuse to act in an env whose observations or actions differ from the training ones."""
        header = self.checkpoint.header
        want = header.get("fingerprint")
        got = fingerprint(header["architecture"], obs_meta)
        if want != got:
            trained = header.get("observation", {})
            diffs = [
                k
                for k in ("variant", "map_shape", "feature_names", "action_names", "observation_schema_version")
                if trained.get(k) != obs_meta.get(k)
            ]
            raise UsageError(
                f"{self.checkpoint.path}: policy was trained on a different observation/action spec "
                f"(differs in: {', '.join(diffs) or 'architecture'}); use a config with the same variant and manifest"
            )

    @torch.no_grad()
    def __call__(
        self, obs: npt.NDArray[np.float32], masks: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        a, logp, v = self.net.act(
            torch.from_numpy(np.ascontiguousarray(obs)),
            torch.from_numpy(np.ascontiguousarray(masks)),
            deterministic=self.deterministic,
            generator=self.gen,
        )
        return a.numpy().astype(np.int64), logp.numpy().astype(np.float32), v.numpy().astype(np.float32)
