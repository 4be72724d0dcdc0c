"""Policy checkpoints: self-describing, written atomically, never pickled.

Two encodings of one format (`format_version` 1):
* `X.json` — header and weights together; weights as plain JSON numbers (float32 values survive
  the round trip exactly, since JSON floats are doubles);
* `X.safetensors` + `X.json` sidecar — weights in safetensors, the same header in the sidecar.

The header names the architecture (enough to rebuild the module), each parameter's shape, the
observation/action spec and a compatibility fingerprint over them, the embedded config and its
SHA-256, seed and step counters, library versions, the git commit, and the parent checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import torch

from townlet.clock import utc_stamp
from townlet.errors import UsageError
from townlet.jsonio import atomic_write_bytes, canonical_json
from townlet.training.network import ActorCritic, build_policy

FORMAT = "townlet.checkpoint"
FORMAT_VERSION = 1
#: Prefix of training-state tensors (optimizer moments) inside a safetensors file; "/" cannot occur
#: in a module's parameter names, so they never collide with the policy's.
TRAINING_PREFIX = "_training/"


def fingerprint(spec: dict[str, Any], obs_meta: dict[str, Any]) -> str:
    """SHA-256 over what must match for a checkpoint to drive an env: architecture, observation
    layout and schema, action names and action-space version."""
    keys = ("variant", "map_shape", "map_channels", "feature_names", "obs_dim", "action_names",
            "observation_schema_version", "action_space_version")  # fmt: skip
    payload = {"architecture": spec, "observation": {k: obs_meta.get(k) for k in keys}}
    return hashlib.sha256(canonical_json(payload, indent=None).encode()).hexdigest()


def _git() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, check=True, timeout=5)
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


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
) -> Path:
    """Write `policy` to `path` (.json or .safetensors) with its header, and, when given, the
    training state a resume restores; returns the header path."""
    spec = policy.spec()
    state = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    train_tensors = (
        {k: v.detach().cpu().to(torch.float32).contiguous() for k, v in training.tensors.items()} if training else {}
    )
    config_text = canonical_json(config, indent=None) if config is not None else None
    header: dict[str, Any] = {
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
        "git": _git(),
        "libraries": {"torch": torch.__version__, "numpy": np.__version__},
        "seed": seed,
        "counters": counters,
        "lineage": {"parent_sha256": parent, "note": lineage_note},
    }
    if resumed_from is not None:
        header["lineage"]["resumed_from_sha256"] = resumed_from
    if training is not None:
        header["training"] = {
            "data": training.data,
            "tensors": {k: list(v.shape) for k, v in train_tensors.items()},
        }
    path = Path(path)
    if path.suffix == ".json":
        header["weights"] = {k: v.float().numpy().tolist() for k, v in state.items()}
        if training is not None:
            header["training_weights"] = {k: v.numpy().tolist() for k, v in train_tensors.items()}
        atomic_write_bytes(path, canonical_json(header, indent=None).encode())
        return path
    if path.suffix == ".safetensors":
        from safetensors.torch import save as st_save

        blob = st_save({**state, **{TRAINING_PREFIX + k: v for k, v in train_tensors.items()}})
        header["weights_file"] = path.name
        header["weights_sha256"] = hashlib.sha256(blob).hexdigest()
        atomic_write_bytes(path, blob)
        sidecar = path.with_suffix(".json")
        atomic_write_bytes(sidecar, canonical_json(header).encode())
        return sidecar
    raise UsageError(f"{path}: checkpoint must end in .json or .safetensors")


def parse_header(name: str, raw: bytes) -> dict[str, Any]:
    """The header of a checkpoint (or sidecar) from its bytes: UsageError naming `name` unless it is
    JSON of this format and version. NaN and Infinity are not JSON and are refused."""
    try:
        header = json.loads(raw, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{name}: not a checkpoint (invalid JSON: {exc})") from None
    found = header.get("format") if isinstance(header, dict) else None
    if not isinstance(header, dict) or found != FORMAT:
        raise UsageError(f"{name}: not a Townlet checkpoint (format is {found!r}, expected {FORMAT!r})")
    if header.get("format_version") != FORMAT_VERSION:
        raise UsageError(
            f"{name}: checkpoint format_version {header.get('format_version')!r} is not supported "
            f"(this build reads {FORMAT_VERSION})"
        )
    return header


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def plain_file_name(name: Any) -> TypeGuard[str]:
    """A file name without a folder part: what a sidecar's `weights_file` must be."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name


def load_checkpoint(path: Path) -> Checkpoint:
    """Read and validate a checkpoint (format, version, shapes) without touching any model."""
    path = Path(path)
    header_path = path.with_suffix(".json") if path.suffix == ".safetensors" else path
    try:
        raw = header_path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{header_path}: checkpoint not found") from None
    header = parse_header(str(header_path), raw)
    shapes: dict[str, list[int]] = header.get("parameters", {})
    if not isinstance(shapes, dict):
        raise UsageError(f"{header_path}: parameters must map parameter names to shapes")
    if "weights" in header:
        state = _tensors(header_path, "weights", header.pop("weights"))
        train_state = _tensors(header_path, "training_weights", header.pop("training_weights", {}))
        file_sha = hashlib.sha256(raw).hexdigest()
    else:
        name = header.get("weights_file")
        if not plain_file_name(name):
            raise UsageError(f"{header_path}: weights_file must be a file name next to the header, got {name!r}")
        weights_path = header_path.with_name(name)
        try:
            blob = weights_path.read_bytes()
        except FileNotFoundError:
            raise UsageError(f"{weights_path}: weights file of {header_path} not found") from None
        if hashlib.sha256(blob).hexdigest() != header.get("weights_sha256"):
            raise UsageError(f"{weights_path}: weights do not match the SHA-256 recorded in {header_path}")
        from safetensors.torch import load as st_load

        both = st_load(blob)
        state = {k: v for k, v in both.items() if not k.startswith(TRAINING_PREFIX)}
        train_state = {k[len(TRAINING_PREFIX) :]: v for k, v in both.items() if k.startswith(TRAINING_PREFIX)}
        file_sha = hashlib.sha256(blob).hexdigest()
    for name, shape in shapes.items():
        if name not in state:
            raise UsageError(f"{header_path}: parameter {name!r} is missing from the weights")
        if list(state[name].shape) != list(shape):
            raise UsageError(
                f"{header_path}: parameter {name!r} has shape {list(state[name].shape)}, header says {shape}"
            )
    if set(state) != set(shapes):
        raise UsageError(
            f"{header_path}: weights hold parameters the header does not list: {sorted(set(state) - set(shapes))}"
        )
    training = _training_state(header_path, header.get("training"), train_state)
    header["_file_sha256"] = file_sha
    return Checkpoint(header_path, header, state, training)


def _tensors(where: Path, key: str, table: Any) -> dict[str, torch.Tensor]:
    if not isinstance(table, dict):
        raise UsageError(f"{where}: {key} must map names to numeric arrays")
    try:
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
