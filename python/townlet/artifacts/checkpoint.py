"""Policy checkpoints: self-describing, written atomically, never pickled (save and load, with torch).

The format itself (constants, the header model, the fingerprint, header parsing) lives in
`checkpoint_format`, which does not import torch; its names are re-exported here.

The header names the architecture (enough to rebuild the module), each parameter's shape, the
observation/action spec and a compatibility fingerprint over them, the embedded config and its
SHA-256, the exact YAML text the config was read from (`config_yaml`, with any included files), seed
and step counters, library versions, the git commit, and the parent checkpoint.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from townlet.artifacts.checkpoint_format import (
    FORMAT,
    FORMAT_VERSION,
    TRAINING_PREFIX,
    CheckpointHeader,
    ConfigYaml,
    Lineage,
    SourceFile,
    TrainingBlock,
    fingerprint,
    git_info,
    header_path,
    parse_header,
    plain_file_name,
)
from townlet.clock import utc_stamp
from townlet.errors import UsageError
from townlet.jsonio import atomic_write_bytes, canonical_json, read_bytes
from townlet.sim.config import SourceText, TownConfig
from townlet.training.network import ActorCritic, build_policy

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "TRAINING_PREFIX",
    "Checkpoint",
    "TrainingState",
    "config_yaml_of",
    "fingerprint",
    "load_checkpoint",
    "parse_header",
    "plain_file_name",
    "save_checkpoint",
]


@dataclass
class TrainingState:
    """What a resume needs besides the weights: JSON-compatible `data` (counters, RNG states, the
    towns' state, optimizer hyper-parameters) and float32 `tensors` (optimizer moments)."""

    data: dict[str, Any]
    tensors: dict[str, torch.Tensor]


@dataclass
class Checkpoint:
    path: Path
    header: dict[str, Any]
    state: dict[str, torch.Tensor]
    training: TrainingState | None = None

    def policy(self) -> ActorCritic:
        net = build_policy(self.header["architecture"])
        net.load_state_dict(self.state)
        net.eval()
        return net

    @property
    def sha256(self) -> str:
        return str(self.header.get("_file_sha256", ""))


def _source_file(source: SourceText) -> SourceFile:
    return SourceFile(path=source.path, text=source.text, sha256=source.sha256)


def config_yaml_of(config: TownConfig) -> ConfigYaml | None:
    """The `config_yaml` block of a loaded config: its file's exact text and its included files' (None
    for a config not read from a file)."""
    if config.source is None:
        return None
    includes = {key: _source_file(src) for key, src in sorted(config.include_sources.items())}
    return ConfigYaml(**_source_file(config.source).model_dump(), includes=includes)


def save_checkpoint(
    path: Path,
    policy: ActorCritic,
    *,
    obs_meta: dict[str, Any],
    config: dict[str, Any] | None,
    seed: int,
    counters: dict[str, int],
    metadata: dict[str, Any] | None = None,
    parent: str | None = None,
    lineage_note: str | None = None,
    training: TrainingState | None = None,
    resumed_from: str | None = None,
    config_yaml: ConfigYaml | None = None,
    lineage_extra: dict[str, Any] | None = None,
) -> Path:
    """Write `policy` to `path` (.json or .safetensors) with its header, and, when given, the
    training state a resume restores and the config's exact YAML text; returns the header path.
    `lineage_extra`: more lineage fields (the memory phase's warm-start mapping)."""
    spec = policy.spec()
    state = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    train_tensors = (
        {k: v.detach().cpu().to(torch.float32).contiguous() for k, v in training.tensors.items()} if training else {}
    )
    config_text = canonical_json(config, indent=None) if config is not None else None
    resumed = {"resumed_from_sha256": resumed_from} if resumed_from is not None else {}
    lineage = Lineage(parent_sha256=parent, note=lineage_note, **resumed, **(lineage_extra or {}))
    fields: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "policy_class": type(policy).__name__,
        "architecture": spec,
        "parameters": {k: list(v.shape) for k, v in state.items()},
        "created_utc": utc_stamp(),
        "metadata": metadata or {},
        "observation": obs_meta,
        "fingerprint": fingerprint(spec, obs_meta),
        "config": config,
        "config_sha256": hashlib.sha256(config_text.encode()).hexdigest() if config_text else None,
        "git": git_info(),
        "libraries": {"torch": torch.__version__, "numpy": np.__version__},
        "seed": seed,
        "counters": counters,
        "lineage": lineage,
    }
    if config_yaml is not None:
        fields["config_yaml"] = config_yaml
    if training is not None:
        fields["training"] = TrainingBlock(
            data=training.data, tensors={k: list(v.shape) for k, v in train_tensors.items()}
        )
    path = Path(path)
    if path.suffix == ".json":
        fields["weights"] = {k: v.float().numpy().tolist() for k, v in state.items()}
        if training is not None:
            fields["training_weights"] = {k: v.numpy().tolist() for k, v in train_tensors.items()}
        header = CheckpointHeader(**fields).model_dump(exclude_unset=True)
        atomic_write_bytes(path, canonical_json(header, indent=None).encode())
        return path
    if path.suffix == ".safetensors":
        blob = st_save({**state, **{TRAINING_PREFIX + k: v for k, v in train_tensors.items()}})
        fields["weights_file"] = path.name
        fields["weights_sha256"] = hashlib.sha256(blob).hexdigest()
        header = CheckpointHeader(**fields).model_dump(exclude_unset=True)
        atomic_write_bytes(path, blob)
        sidecar = path.with_suffix(".json")
        atomic_write_bytes(sidecar, canonical_json(header).encode())
        return sidecar
    raise UsageError(f"{path}: checkpoint must end in .json or .safetensors")


def load_checkpoint(path: Path) -> Checkpoint:
    """Read and validate a checkpoint (format, version, digest, shapes, finite values) without touching any
    model: whatever fails, nothing has been loaded anywhere."""
    header_file = header_path(Path(path))
    raw = read_bytes(header_file, "checkpoint")
    header = parse_header(str(header_file), raw)
    shapes: dict[str, list[int]] = header.get("parameters", {})
    if not isinstance(shapes, dict):
        raise UsageError(f"{header_file}: parameters must map parameter names to shapes")
    if "weights" in header:
        state = _tensors(header_file, "weights", header.pop("weights"))
        train_state = _tensors(header_file, "training_weights", header.pop("training_weights", {}))
        file_sha = hashlib.sha256(raw).hexdigest()
        weights_where = header_file
    else:
        name = header.get("weights_file")
        if not plain_file_name(name):
            raise UsageError(f"{header_file}: weights_file must be a file name next to the header, got {name!r}")
        weights_path = header_file.with_name(name)
        blob = read_bytes(weights_path, f"weights file of {header_file}")
        if hashlib.sha256(blob).hexdigest() != header.get("weights_sha256"):
            raise UsageError(f"{weights_path}: weights do not match the SHA-256 recorded in {header_file}")
        both = st_load(blob)
        state = {k: v for k, v in both.items() if not k.startswith(TRAINING_PREFIX)}
        train_state = {k[len(TRAINING_PREFIX) :]: v for k, v in both.items() if k.startswith(TRAINING_PREFIX)}
        file_sha = hashlib.sha256(blob).hexdigest()
        weights_where = weights_path
    _refuse_non_finite(weights_where, "parameter", state)
    _refuse_non_finite(weights_where, "training tensor", train_state)
    for name, shape in shapes.items():
        if name not in state:
            raise UsageError(f"{header_file}: parameter {name!r} is missing from the weights")
        if list(state[name].shape) != list(shape):
            raise UsageError(
                f"{header_file}: parameter {name!r} has shape {list(state[name].shape)}, header says {shape}"
            )
    if set(state) != set(shapes):
        raise UsageError(
            f"{header_file}: weights hold parameters the header does not list: {sorted(set(state) - set(shapes))}"
        )
    training = _training_state(header_file, header.get("training"), train_state)
    header["_file_sha256"] = file_sha
    return Checkpoint(header_file, header, state, training)


def _refuse_non_finite(where: Path, kind: str, tensors: dict[str, torch.Tensor]) -> None:
    """NaN/inf weights would load silently and poison every action and gradient: refuse them by name."""
    for name in sorted(tensors):
        tensor = tensors[name]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UsageError(f"{where}: {kind} {name!r} holds NaN or infinite values")


def _tensors(where: Path, key: str, table: Any) -> dict[str, torch.Tensor]:
    if not isinstance(table, dict):
        raise UsageError(f"{where}: {key} must map names to numeric arrays")
    try:
        with np.errstate(over="ignore"):  # a number beyond float32 becomes inf, refused by name afterwards
            return {str(k): torch.tensor(np.asarray(v, dtype=np.float32)) for k, v in table.items()}
    except (AttributeError, TypeError, ValueError) as exc:
        raise UsageError(f"{where}: {key} are not numeric arrays ({exc})") from None


def _training_state(where: Path, block: Any, tensors: dict[str, torch.Tensor]) -> TrainingState | None:
    """The training state of a checkpoint, checked against the shapes its header lists."""
    if block is None:
        if tensors:
            raise UsageError(f"{where}: holds training tensors but no training block")
        return None
    if not isinstance(block, dict) or not isinstance(block.get("data"), dict):
        raise UsageError(f"{where}: training must be an object with a data object")
    shapes = block.get("tensors", {})
    if not isinstance(shapes, dict):
        raise UsageError(f"{where}: training.tensors must map tensor names to shapes")
    if set(shapes) != set(tensors):
        missing, extra = sorted(set(shapes) - set(tensors)), sorted(set(tensors) - set(shapes))
        raise UsageError(f"{where}: training tensors do not match the header (missing {missing}, unlisted {extra})")
    for name, shape in shapes.items():
        if list(tensors[name].shape) != list(shape):
            raise UsageError(
                f"{where}: training tensor {name!r} has shape {list(tensors[name].shape)}, header says {shape}"
            )
    return TrainingState(block["data"], tensors)
