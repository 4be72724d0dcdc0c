"""Checkpoint tools over the one checkpoint format (`townlet.checkpoint`): list, info, copy,
extract-config and verify.

A checkpoint is either `X.json` (header and weights in one file) or the pair `X.safetensors` +
`X.json` (weights, and the header as a sidecar naming the weights file and its SHA-256). Tools take
either file of a pair. `verify` reports every problem it finds rather than the first; it works on
bytes, so archives check their bundled checkpoints with the same code without extracting them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from safetensors.numpy import load as st_load

from townlet.artifacts.checkpoint_format import (
    FORMAT,
    REQUIRED,
    TRAINING_PREFIX,
    config_yaml_problems,
    fingerprint,
    header_path,
    header_problems,
    parameter_shapes,
    parse_header,
    plain_file_name,
)
from townlet.artifacts.registry import config_sha256, labels
from townlet.errors import TownletError, UsageError
from townlet.jsonio import atomic_write_bytes, canonical_json, read_bytes

__all__ = ["REQUIRED", "Check", "Files", "VerifyFailed", "check_checkpoint", "copy", "info", "list_dir", "verify"]

HEX64 = re.compile(r"^[0-9a-f]{64}$")


class VerifyFailed(TownletError):
    """A checkpoint or archive failed verification (exit 1)."""


@dataclass(frozen=True)
class Files:
    """Where a checkpoint's bytes live: the header (`X.json`) and, for safetensors, the weights."""

    header: Path
    weights: Path | None

    @property
    def kind(self) -> str:
        return "json" if self.weights is None else "safetensors"

    @property
    def paths(self) -> list[Path]:
        return [self.header] if self.weights is None else [self.weights, self.header]


def obj(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (for reading optional header parts)."""
    return value if isinstance(value, dict) else {}


def locate(path: Path) -> tuple[Files, dict[str, Any]]:
    """The checkpoint's files and its parsed header, from either file of a pair."""
    path = Path(path)
    if path.suffix not in (".json", ".safetensors"):
        raise UsageError(f"{path}: a checkpoint ends in .json or .safetensors")
    if path.suffix == ".safetensors" and not path.exists():
        raise UsageError(f"{path}: checkpoint not found")
    header_file = header_path(path)
    raw = read_bytes(header_file, "checkpoint header" if path.suffix == ".safetensors" else "checkpoint")
    header = parse_header(str(header_file), raw)
    if "weights" in header:
        return Files(header_file, None), header
    name = header.get("weights_file")
    if not plain_file_name(name):
        raise UsageError(f"{header_file}: weights_file must be a file name next to the header, got {name!r}")
    if path.suffix == ".safetensors" and name != path.name:
        raise UsageError(f"{header_file}: names weights file {name!r}, not {path.name!r}")
    return Files(header_file, header_file.with_name(name)), header


# ---------------------------------------------------------------------------------------------
# Verification


@dataclass
class Check:
    header: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)
    weights_sha256: str | None = None
    n_params: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def check_checkpoint(name: str, raw: bytes, read_weights: Callable[[str], bytes | None]) -> Check:
    """Every problem of a checkpoint given its header bytes; `read_weights(file_name)` returns the
    bytes of the weights file next to the header (None when missing)."""
    try:
        header = parse_header(name, raw)
    except UsageError as exc:
        return Check(None, [str(exc)])
    check = Check(header, header_problems(name, header))
    problems = check.problems
    params = header.get("parameters")
    shapes = parameter_shapes(params) if isinstance(params, dict) else {}
    arrays = _weights(name, header, read_weights, check)
    if arrays is not None:
        train = {k[len(TRAINING_PREFIX) :]: arrays.pop(k) for k in [k for k in arrays if k.startswith(TRAINING_PREFIX)]}
        if "training_weights" in header:
            train.update(_json_arrays(name, "training_weights", header["training_weights"], problems))
        _check_arrays(name, arrays, shapes, problems)
        _check_training(name, header.get("training"), train, problems)
        check.n_params = int(sum(math.prod(a.shape) for a in arrays.values()))
    check_config(name, header, problems)
    problems.extend(config_yaml_problems(name, header))
    _check_fingerprint(name, header, problems)
    _check_architecture(name, header, shapes, problems)
    return check


def _weights(
    name: str, header: dict[str, Any], read_weights: Callable[[str], bytes | None], check: Check
) -> dict[str, np.ndarray] | None:
    problems = check.problems
    if "weights" in header:
        weights = header["weights"]
        if not isinstance(weights, dict):
            problems.append(f"{name}: weights must be an object of parameter arrays")
            return None
        arrays = _json_arrays(name, "weights", weights, problems)
        try:
            check.weights_sha256 = hashlib.sha256(canonical_json(weights, indent=None).encode()).hexdigest()
        except ValueError:  # a number beyond float64 parsed as inf: reported as non-finite by _check_arrays
            check.weights_sha256 = None
        return arrays
    wfile = header.get("weights_file")
    if wfile is None:
        problems.append(f"{name}: neither 'weights' (a .json checkpoint) nor 'weights_file' (a safetensors sidecar)")
        return None
    if not plain_file_name(wfile):
        problems.append(f"{name}: weights_file must be a file name next to the header, got {wfile!r}")
        return None
    shown = str(PurePosixPath(name).with_name(wfile))  # the weights file, named like the header
    recorded = header.get("weights_sha256")
    if not isinstance(recorded, str) or not HEX64.match(recorded):
        problems.append(f"{name}: weights_sha256 must be a SHA-256 hex digest, got {recorded!r}")
    blob = read_weights(str(wfile))
    if blob is None:
        problems.append(f"{shown}: weights file named by {name} is missing")
        return None
    actual = hashlib.sha256(blob).hexdigest()
    check.weights_sha256 = actual
    if isinstance(recorded, str) and actual != recorded:
        problems.append(f"{shown}: weights sha256 {actual} does not match {recorded} recorded in {name}")
    try:
        return dict(st_load(blob))
    except Exception as exc:  # safetensors raises its own error type for any malformed buffer
        problems.append(f"{shown}: not a readable safetensors file ({exc})")
        return None


def _json_arrays(name: str, key: str, table: Any, problems: list[str]) -> dict[str, np.ndarray]:
    if not isinstance(table, dict):
        problems.append(f"{name}: {key} must be an object of arrays")
        return {}
    arrays: dict[str, np.ndarray] = {}
    for pname, value in table.items():
        try:
            with np.errstate(over="ignore"):  # beyond float32: inf, reported as non-finite below
                arrays[pname] = np.asarray(value, dtype=np.float32)
        except (ValueError, TypeError) as exc:
            problems.append(f"{name}: {key}.{pname}: not a numeric array ({exc})")
    return arrays


def _check_training(name: str, block: Any, arrays: dict[str, np.ndarray], problems: list[str]) -> None:
    """The training state a resume restores: its tensors must be the ones the header lists."""
    if block is None:
        if arrays:
            problems.append(f"{name}: holds training tensors {sorted(arrays)[:3]} but no 'training' block")
        return
    shapes = block.get("tensors") if isinstance(block, dict) else None
    if not isinstance(block, dict) or not isinstance(block.get("data"), dict) or not isinstance(shapes, dict):
        problems.append(f"{name}: training must be an object with 'data' and 'tensors' objects")
        return
    for tname, shape in shapes.items():
        if tname not in arrays:
            problems.append(f"{name}: training tensor {tname!r} is missing")
        elif list(arrays[tname].shape) != shape:
            problems.append(
                f"{name}: training tensor {tname!r} has shape {list(arrays[tname].shape)}, header says {shape}"
            )
    for tname in sorted(set(arrays) - set(shapes)):
        problems.append(f"{name}: holds training tensor {tname!r}, which the header does not list")
    for tname, arr in sorted(arrays.items()):
        if not np.isfinite(arr).all():
            problems.append(f"{name}: training tensor {tname!r} holds NaN or infinite values")


def _check_arrays(name: str, arrays: dict[str, np.ndarray], shapes: dict[str, list[int]], problems: list[str]) -> None:
    for pname, shape in shapes.items():
        if pname not in arrays:
            problems.append(f"{name}: parameter {pname!r} is missing from the weights")
        elif list(arrays[pname].shape) != shape:
            problems.append(f"{name}: parameter {pname!r} has shape {list(arrays[pname].shape)}, header says {shape}")
    for pname in sorted(set(arrays) - set(shapes)):
        problems.append(f"{name}: weights hold parameter {pname!r}, which the header does not list")
    for pname, arr in sorted(arrays.items()):
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            problems.append(f"{name}: parameter {pname!r} holds NaN or infinite values")


def check_config(name: str, header: dict[str, Any], problems: list[str]) -> None:
    config, recorded = header.get("config"), header.get("config_sha256")
    if config is None:
        problems.append(f"{name}: no embedded config, so its config_sha256 cannot be checked")
        return
    if not isinstance(recorded, str) or not HEX64.match(recorded):
        problems.append(f"{name}: config_sha256 must be a SHA-256 hex digest, got {recorded!r}")
        return
    try:
        actual = config_sha256(config)
    except UsageError as exc:
        problems.append(f"{name}: embedded {exc}")
        return
    if actual != recorded:
        problems.append(f"{name}: config_sha256 {recorded} does not match the embedded config (sha256 {actual})")


def _check_fingerprint(name: str, header: dict[str, Any], problems: list[str]) -> None:
    arch, obs, recorded = header.get("architecture"), header.get("observation"), header.get("fingerprint")
    if not isinstance(arch, dict) or not isinstance(obs, dict) or not isinstance(recorded, str):
        return  # already reported as a field problem
    try:
        actual = fingerprint(arch, obs)
    except (TypeError, ValueError) as exc:
        problems.append(f"{name}: fingerprint cannot be recomputed ({exc})")
        return
    if actual != recorded:
        problems.append(
            f"{name}: fingerprint {recorded} does not match the architecture and observation spec (sha256 {actual})"
        )


def _check_architecture(name: str, header: dict[str, Any], shapes: dict[str, list[int]], problems: list[str]) -> None:
    arch = header.get("architecture")
    if not isinstance(arch, dict) or not shapes:
        return
    # torch (about 1.4 s to import) only when a checkpoint is verified: listing, info of a broken
    # header and the CLI's start-up do not pay for it.
    from townlet.training.network import build_policy

    try:
        net = build_policy(arch)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        problems.append(f"{name}: architecture {arch.get('architecture')!r} cannot be built ({exc})")
        return
    expected = {k: list(v.shape) for k, v in net.state_dict().items()}
    if expected != shapes:
        missing = sorted(set(expected) - set(shapes))
        extra = sorted(set(shapes) - set(expected))
        wrong = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
        problems.append(
            f"{name}: parameters do not fit architecture {arch.get('architecture')!r}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
            + (f"; wrong shape {wrong}" if wrong else "")
        )


def verify(path: Path) -> tuple[Files | None, Check]:
    """Check a checkpoint on disk; a missing or unreadable header is a UsageError."""
    path = Path(path)
    header_file = header_path(path)
    if path.suffix not in (".json", ".safetensors"):
        raise UsageError(f"{path}: a checkpoint ends in .json or .safetensors")
    if not path.exists() and not header_file.exists():
        raise UsageError(f"{path}: checkpoint not found")
    raw = read_bytes(header_file, "checkpoint header" if path.suffix == ".safetensors" else "checkpoint")

    def read_weights(fname: str) -> bytes | None:
        try:
            return header_file.with_name(fname).read_bytes()
        except OSError:
            return None

    check = check_checkpoint(str(header_file), raw, read_weights)
    files = None
    if check.header is not None:
        wfile = check.header.get("weights_file")
        if path.suffix == ".safetensors" and "weights" not in check.header and wfile != path.name:
            check.problems.append(f"{header_file}: names weights file {wfile!r}, not {path.name!r}")
        weights = header_file.with_name(wfile) if "weights" not in check.header and plain_file_name(wfile) else None
        files = Files(header_file, weights)
    return files, check


# ---------------------------------------------------------------------------------------------
# list / info


def summary(files: Files, header: dict[str, Any], known: dict[str, str]) -> dict[str, Any]:
    """The header in brief (what `info` and `list` show)."""
    counters, git = obj(header.get("counters")), obj(header.get("git"))
    lineage, metadata = obj(header.get("lineage")), obj(header.get("metadata"))
    return {
        "header": str(files.header),
        "weights": str(files.weights) if files.weights else None,
        "format": files.kind,
        "format_version": header.get("format_version"),
        "policy_class": header.get("policy_class"),
        "architecture": header.get("architecture"),
        "created_utc": header.get("created_utc"),
        "config_sha256": header.get("config_sha256"),
        "config_label": known.get(str(header.get("config_sha256"))),
        "config_id": metadata.get("config_id"),
        "config_yaml": _yaml_brief(header.get("config_yaml")),
        "fingerprint": header.get("fingerprint"),
        "seed": header.get("seed"),
        "counters": counters,
        "git": git,
        "libraries": header.get("libraries"),
        "lineage": lineage,
        "metadata": metadata,
    }


def _yaml_brief(block: Any) -> dict[str, Any] | None:
    """The embedded YAML in brief (file, SHA-256, included keys); None for a checkpoint without it."""
    if not isinstance(block, dict):
        return None
    return {"path": block.get("path"), "sha256": block.get("sha256"), "includes": sorted(obj(block.get("includes")))}


def info(path: Path, registry: Path | None) -> dict[str, Any]:
    """`info`: the header summary plus the verification result."""
    files, check = verify(path)
    if check.header is None or files is None:
        raise UsageError(check.problems[0])
    out = summary(files, check.header, labels(registry))
    out["parameters"] = check.n_params
    out["weights_sha256"] = check.weights_sha256
    out["verified"] = check.ok
    out["problems"] = check.problems
    return out


#: Where the default checkpoints lie below `logs/` (`logs/<config_id>/<phase>/checkpoints/`, SPEC §8), seen from
#: `logs`, `logs/<config_id>` and `logs/<config_id>/<phase>`: `list` looks there without --recursive.
LAYOUT = ("*", "checkpoints/*", "*/checkpoints/*", "*/*/checkpoints/*")


def list_dir(folder: Path, registry: Path | None, *, recursive: bool = False) -> list[dict[str, Any]]:
    """One row per checkpoint in `folder` and in the per-config layout below it (`<config_id>/<phase>/
    checkpoints/`), or anywhere below it with `recursive` (headers only; `verify` checks weights)."""
    if not folder.exists():
        raise UsageError(f"{folder}: directory not found")
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a directory")
    patterns = ("**/*",) if recursive else LAYOUT
    files = sorted(
        {
            p
            for pattern in patterns
            for p in folder.glob(pattern)
            if p.suffix in (".json", ".safetensors") and p.is_file()
        }
    )
    rows: list[dict[str, Any]] = []
    covered: set[Path] = set()
    known = labels(registry)
    for path in files:
        if path in covered or path.name.startswith("."):
            continue
        shown = path.relative_to(folder).as_posix()
        try:
            found, header = locate(path)
        except UsageError as exc:
            if path.suffix == ".json" and _foreign_json(path):
                continue  # some other JSON file: not a checkpoint, not a broken one
            rows.append({"file": shown, "format": "invalid", "problem": str(exc)})
            continue
        covered.update(found.paths)
        if found.weights is not None and found.weights.stem == found.header.stem:
            shown = found.weights.relative_to(folder).as_posix()  # the name a user passes for a pair
        row = summary(found, header, known)
        row["file"] = shown
        if found.weights is not None and not found.weights.exists():
            row["problem"] = f"weights file {found.weights.name} is missing"
        rows.append(row)
    return rows


def _foreign_json(path: Path) -> bool:
    """Valid JSON that does not claim to be a Townlet checkpoint."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return not (isinstance(doc, dict) and doc.get("format") == FORMAT)


# ---------------------------------------------------------------------------------------------
# copy (extract-config: `checkpoint_config`)


def _dest_files(src: Files, dest_arg: str | Path) -> Files:
    """The destination pair: a folder (existing, or named with a final `/`) keeps the source's name."""
    dest = Path(dest_arg)
    if dest.is_dir() or str(dest_arg).endswith(("/", "\\")):
        dest = dest / (src.weights or src.header).name
    if src.weights is None:
        if dest.suffix != ".json":
            raise UsageError(f"{dest}: {src.header} is a .json checkpoint; its copy must end in .json too")
        return Files(dest, None)
    if dest.suffix not in (".json", ".safetensors"):
        raise UsageError(f"{dest}: a safetensors checkpoint's copy ends in .safetensors (or names its .json header)")
    return Files(dest.with_suffix(".json"), dest.with_suffix(".safetensors"))


def copy(src: Path, dest: str | Path, *, overwrite: bool = False) -> tuple[Files, Check]:
    """Copy a checkpoint that verifies: the weights first, then the header, each written atomically.
    The header names the weights and their SHA-256, so a copy cut off between the two never verifies.
    The copy is read back and verified before returning."""
    files, check = verify(src)
    if files is None or check.header is None:
        raise UsageError(check.problems[0])
    if check.problems:
        raise VerifyFailed(f"{src}: refusing to copy a checkpoint that fails verification: {check.problems[0]}")
    target = _dest_files(files, dest)
    same = [p for p, q in zip(files.paths, target.paths, strict=True) if p.resolve() == q.resolve()]
    if same:
        raise UsageError(f"{dest}: source and destination are the same checkpoint")
    existing = [str(p) for p in target.paths if p.exists()]
    if existing and not overwrite:
        verb = "exists" if len(existing) == 1 else "exist"
        raise UsageError(f"{', '.join(existing)}: already {verb} (pass --overwrite to replace)")
    header_raw = files.header.read_bytes()
    try:
        if files.weights is not None and target.weights is not None:
            atomic_write_bytes(target.weights, files.weights.read_bytes())
            if target.weights.name != files.weights.name:
                header = json.loads(header_raw)
                header["weights_file"] = target.weights.name
                header_raw = canonical_json(header).encode()
        atomic_write_bytes(target.header, header_raw)
    except OSError as exc:
        raise UsageError(f"{dest}: cannot write ({exc.strerror or exc})") from None
    _, after = verify(target.header)
    if after.problems or after.weights_sha256 != check.weights_sha256:
        detail = after.problems[0] if after.problems else "weights differ from the source"
        raise VerifyFailed(f"{dest}: the copy does not verify: {detail}")
    return target, after
