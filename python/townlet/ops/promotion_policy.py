"""Policies a shard can act with (the scripted expert, or a checkpoint), what identifies them, and the pre-flight
that refuses a candidate unlike the release (docs/promotion.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from townlet import _core
from townlet.errors import UsageError
from townlet.jsonio import atomic_write_bytes, read_bytes, read_json
from townlet.ops import policy_memory
from townlet.ops.envelope import CommandError, ErrorCode
from townlet.sim.config import TownConfig
from townlet.training.threads import one_torch_thread

EXPERT = "expert"


@dataclass(frozen=True)
class PolicyRef:
    """What a release or candidate is: the scripted expert, or a checkpoint (path, digest, what it was built for)."""

    kind: str  # "expert" | "checkpoint"
    path: str | None
    sha256: str | None
    config_id: str | None
    variant: str | None
    action_names: tuple[str, ...]
    action_space_version: str | None
    architecture: dict[str, Any] | None

    @property
    def name(self) -> str:
        if self.kind == EXPERT:
            return EXPERT
        return f"checkpoint:{Path(self.path or '').name}:{(self.sha256 or '')[:12]}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "path": self.path,
            "sha256": self.sha256,
            "config_id": self.config_id,
            "variant": self.variant,
            "action_space_version": self.action_space_version,
            "architecture": self.architecture,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], config: TownConfig) -> PolicyRef:
        if doc.get("kind") == EXPERT:
            return expert_ref(config)
        return cls(
            kind="checkpoint",
            path=doc.get("path"),
            sha256=doc.get("sha256"),
            config_id=doc.get("config_id"),
            variant=doc.get("variant"),
            action_names=(),
            action_space_version=doc.get("action_space_version"),
            architecture=doc.get("architecture"),
        )


def expert_ref(config: TownConfig) -> PolicyRef:
    spec = _core.obs_spec(config.world_json())
    return PolicyRef(
        kind=EXPERT,
        path=None,
        sha256=None,
        config_id=config.config_id,
        variant=str(spec.get("variant")),
        action_names=tuple(spec.get("action_names", ())),
        action_space_version=spec.get("action_space_version"),
        architecture=None,
    )


def load_candidate(path: Path, config: TownConfig) -> tuple[PolicyRef, Any]:
    """A checkpoint as (reference, greedy actor); invalid_args naming the file when it cannot act in this shard."""
    from townlet.training.evaluate import checkpoint_actor  # torch: only when a checkpoint is asked for

    try:
        actor = checkpoint_actor(path, config=config)
    except UsageError as exc:
        raise CommandError(ErrorCode.invalid_args, str(exc)) from None
    except OSError as exc:
        raise CommandError(ErrorCode.invalid_args, f"{path}: not a readable checkpoint ({exc.strerror})") from None
    header = actor.checkpoint.header
    obs = header.get("observation") or {}
    ref = PolicyRef(
        kind="checkpoint",
        path=str(path),
        sha256=actor.checkpoint.sha256,
        config_id=_config_id(header),
        variant=obs.get("variant"),
        action_names=tuple(obs.get("action_names", ())),
        action_space_version=obs.get("action_space_version"),
        architecture=header.get("architecture"),
    )
    return ref, OneThread(actor)


class OneThread:
    """An actor run on one torch thread (as `evaluate` does): these batches are a few agents, and a thread pool
    on a busy machine made a tick 20-50x slower."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def reset_memory(self) -> None:
        """A policy with memory (an lstm/gru/attention checkpoint) forgets every slot's memory; others: nothing."""
        policy_memory.forget(self.actor)

    def __call__(self, vec: Any, obs: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        with one_torch_thread():
            return np.asarray(self.actor(vec, obs), dtype=np.int64)

    def act(
        self, vec: Any, obs: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64] | None]:
        """The greedy actions (the argmax of the masked logits, as the actor computes them) and each one's
        probability under the policy's distribution, from one forward pass; a non-checkpoint actor: no probabilities."""
        import torch

        inner = self.actor
        loaded = getattr(inner, "loaded", None)
        if loaded is None:
            return self(vec, obs), None
        if getattr(inner, "_checked", None) is not vec:
            loaded.check(vec.observation_metadata())
            inner._checked = vec
        with one_torch_thread(), torch.no_grad():
            masks = torch.from_numpy(np.ascontiguousarray(vec.action_masks()))
            logits, _ = loaded.net(torch.from_numpy(np.ascontiguousarray(obs)), masks)
            actions = logits.argmax(-1)
            probs = torch.softmax(logits.double(), -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        return actions.numpy().astype(np.int64), probs.numpy().astype(np.float64)


def _config_id(header: dict[str, Any]) -> str | None:
    for block in ("metadata", "config", "observation"):
        value = (header.get(block) or {}).get("config_id")
        if isinstance(value, str):
            return value
    return None


def preflight(release: PolicyRef, candidate: PolicyRef) -> list[str]:
    """Why `candidate` may not replace `release` (empty: it may)."""
    reasons = []
    if candidate.config_id != release.config_id:
        reasons.append(f"config id {candidate.config_id!r} differs from the release's {release.config_id!r}")
    if candidate.variant != release.variant:
        reasons.append(f"observation variant {candidate.variant!r} differs from the release's {release.variant!r}")
    if release.action_names and candidate.action_names and candidate.action_names != release.action_names:
        reasons.append("action space (action names) differs from the release's")
    if candidate.action_space_version != release.action_space_version:
        reasons.append(
            f"action space version {candidate.action_space_version!r} differs from the release's "
            f"{release.action_space_version!r}"
        )
    if release.architecture is not None and candidate.architecture != release.architecture:
        reasons.append(
            f"architecture {_arch(candidate.architecture)} differs from the release's {_arch(release.architecture)}"
        )
    return reasons


def _arch(spec: dict[str, Any] | None) -> str:
    if not spec:
        return "none"
    return "/".join(f"{k}={spec[k]}" for k in sorted(spec) if not isinstance(spec[k], (dict, list)))


def candidate_target(checkpoint: Path, shadow_dir: Path, config_id: str) -> Path:
    """Where training publishes `checkpoint` as a candidate: `<shadow_dir>/<config_id>/<its name>` (the name stays: a
    .safetensors header names its weights file), or the checkpoint itself when it is in the shadow folder already."""
    if checkpoint.resolve().is_relative_to(shadow_dir.resolve()):
        return checkpoint
    return shadow_dir / config_id / checkpoint.name


def publish_candidate(checkpoint: Path, target: Path) -> Path | None:
    """A copy of the trained `checkpoint` at `target` (`candidate_target`), written atomically (weights first); None
    when the run left no checkpoint there."""
    if not checkpoint.with_suffix(".json").is_file():
        return None
    return install_release(checkpoint, target.parent) if target != checkpoint else target


def recorded_release(release_dir: Path) -> str | None:
    """The checkpoint the release pointer (`<release_dir>/release.json`, written by each promotion and swap) names;
    None when there is no pointer or the release is the scripted expert. A pointer that cannot be read is an error."""
    pointer = release_dir / "release.json"
    if not pointer.is_file():
        return None
    doc = read_json(pointer, "release pointer")
    release = doc.get("release") if isinstance(doc, dict) else None
    if not isinstance(release, dict) or release.get("kind") not in (EXPERT, "checkpoint"):
        raise UsageError(f"{pointer}: release: expected {{kind: expert|checkpoint, path, ...}}")
    if release["kind"] == EXPERT:
        return None
    path = release.get("path")
    if not isinstance(path, str) or not Path(path).is_file():
        raise UsageError(f"{pointer}: release.path: the checkpoint {path!r} is missing")
    return path


def install_release(path: Path, release_dir: Path, sha256: str | None = None) -> Path:
    """A copy of the checkpoint `path` (and its weights file) in `release_dir`, written atomically; its path. With
    `sha256` (the checkpoint's digest) an installed release is never overwritten by other content of the same name
    (training republishes `ppo_latest.json` each run): that copy goes to `release_dir/<digest[:12]>/` instead, so
    the releases that kept snapshots and the journal name stay as they were."""
    release_dir.mkdir(parents=True, exist_ok=True)
    target = release_dir / path.name
    if sha256 is not None and target.is_file() and path.resolve() != target.resolve() and not _same(path, target):
        release_dir = release_dir / sha256[:12]
        release_dir.mkdir(parents=True, exist_ok=True)
        target = release_dir / path.name
    if path.resolve() != target.resolve():
        # A .safetensors checkpoint is two files (the weights and the .json header): both travel, weights first.
        for part in (path.with_suffix(".safetensors"), path.with_suffix(".json")):
            if part.exists():
                atomic_write_bytes(release_dir / part.name, read_bytes(part, "checkpoint"))
    return target


def _same(a: Path, b: Path) -> bool:
    """Whether two checkpoints hold the same bytes (the header and, for the safetensors form, the weights)."""
    for suffix in (".json", ".safetensors"):
        x, y = a.with_suffix(suffix), b.with_suffix(suffix)
        if x.exists() != y.exists() or (x.exists() and x.read_bytes() != y.read_bytes()):
            return False
    return True


class MaskedView:
    """What an actor reads of a tick it did not act in: the masks and the observation spec of that tick."""

    def __init__(self, masks: npt.NDArray[np.bool_], spec: dict[str, Any]) -> None:
        self.masks = masks
        self.spec = spec

    def action_masks(self) -> npt.NDArray[np.bool_]:
        return self.masks

    def observation_metadata(self) -> dict[str, Any]:
        return self.spec
