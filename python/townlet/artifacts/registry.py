"""The config registry: labels for configs, keyed by the SHA-256 of the canonical resolved config.

`configs/config_registry.json` is one canonical JSON document (`jsonio.canonical_json`: sorted keys,
2-space indent, a trailing newline), so the writer and the validator cannot disagree:

    {"entries": {SHA256: ENTRY, ...}, "format": "townlet.config_registry", "format_version": 1}

ENTRY holds `sha256`, `label`, `notes`, `path` (the config file as registered, relative to the
repository root when inside it), `registered_utc` (`SOURCE_DATE_EPOCH` or the clock) and `config`,
the resolved config itself, so an entry stays checkable and diffable after its file changes.
Relabelling keeps the old labels in `previous_labels`.

The *resolved* config is the file after loading: included files inlined and the Python sections
(`ppo:`, `training:`) with their defaults filled in. It is itself a valid config file, and its hash
ignores comments, key order and formatting. Checkpoints that embed `resolved_config(...)` carry the
same `config_sha256` as the registry entry of their config.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from townlet.clock import utc_stamp
from townlet.errors import TownletError, UsageError
from townlet.jsonio import canonical_json, loads_strict, read_bytes, write_json
from townlet.sim.config import TownConfig, load_config
from townlet.sim.settings import checkpoint_dir

REGISTRY_FORMAT = "townlet.config_registry"
REGISTRY_VERSION = 1
REGISTRY_NAME = Path("configs/config_registry.json")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEX_PREFIX = re.compile(r"^[0-9a-f]{4,64}$")
NonEmpty = Annotated[str, Field(min_length=1, description="a non-empty string")]


class PreviousLabel(BaseModel):
    """A label an entry had until it was relabelled."""

    model_config = ConfigDict(extra="allow", strict=True)

    label: str
    until_utc: str


class RegistryEntry(BaseModel):
    """One registered config. Fields are declared in the order `entry_problems` reports them; each
    field's description is what its problem says is expected."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sha256: str = Field(description="the entry's key")
    label: NonEmpty
    path: NonEmpty
    registered_utc: NonEmpty
    notes: str = Field(description="a string")
    config: dict[str, Any] = Field(description="the resolved config (a JSON object)")
    previous_labels: list[PreviousLabel] = Field([], description="a list of {label, until_utc} objects")


class RegistryDocument(BaseModel):
    """`configs/config_registry.json`; entries are checked one by one (`entry_problems`), so that a
    registry with a damaged entry can still be read, listed and repaired."""

    model_config = ConfigDict(extra="forbid", strict=True)

    entries: dict[str, Any]
    format: Literal["townlet.config_registry"]
    format_version: Literal[1]


#: Keys every entry has (the model's required fields, sorted as in the file).
ENTRY_KEYS = tuple(sorted(name for name, f in RegistryEntry.model_fields.items() if f.is_required()))


class NotFound(TownletError):
    """A lookup found nothing (exit 1: a negative answer, not a usage error)."""


# ---------------------------------------------------------------------------------------------
# Hashing and time


def resolved_config(cfg: TownConfig) -> dict[str, Any]:
    """The config as a run sees it: world sections with includes inlined, Python sections with defaults."""
    sections = cfg.sections.model_dump(mode="json")
    # Where a run loads and saves its policy is not part of what it trains on.
    for phase in ("bc", "ppo"):
        sections.get(phase, {}).pop("warm_start", None)
    sections.pop("ops", None)  # how a shard serves and promotes (ops.*) is not what a run trains on either
    return {**cfg.world, **sections}


def checkpoint_dirs(config: dict[str, Any]) -> dict[str, str]:
    """Phase -> the folder of that phase's default checkpoints for this (resolved) config:
    `logs/<config_id>/<phase>/checkpoints` (SPEC §8); empty without a config id."""
    config_id = config.get("config_id")
    if not isinstance(config_id, str):
        return {}
    return {phase: checkpoint_dir(phase, config_id) for phase in ("bc", "ppo")}


def config_sha256(config: Any) -> str:
    """SHA-256 of the compact canonical JSON of `config` (the checkpoint header's `config_sha256`)."""
    try:
        text = canonical_json(config, indent=None)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"config cannot be hashed as canonical JSON: {exc}") from None
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Locating and reading the registry


def repo_root(start: Path | None = None) -> Path | None:
    """The nearest directory at or above `start` (default: the working directory) holding
    `pyproject.toml` and `configs/`."""
    here = (start or Path.cwd()).resolve()
    for folder in [here, *here.parents]:
        if (folder / "pyproject.toml").is_file() and (folder / "configs").is_dir():
            return folder
    return None


def default_registry() -> Path:
    """`configs/config_registry.json` of the repository around the working directory (else of it)."""
    root = repo_root()
    return (root / REGISTRY_NAME) if root is not None else REGISTRY_NAME


def empty_registry() -> dict[str, Any]:
    return {"entries": {}, "format": REGISTRY_FORMAT, "format_version": REGISTRY_VERSION}


def _parse(path: Path, raw: bytes) -> dict[str, Any]:
    """The registry document; UsageError naming the file for anything that is not one."""
    try:
        doc = loads_strict(raw, finite=True)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, a duplicate key, NaN/Infinity
        raise UsageError(f"{path}: not a config registry (invalid JSON: {exc})") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: not a config registry (expected a JSON object, got {type(doc).__name__})")
    try:
        RegistryDocument.model_validate(doc)
    except ValidationError as exc:
        raise UsageError(_document_problem(path, doc, exc)) from None
    return doc


def _document_problem(path: Path, doc: dict[str, Any], exc: ValidationError) -> str:
    """The first problem of a registry document, in our words (format, version, keys, entries)."""
    failed = {str(err["loc"][0]): str(err["type"]) for err in exc.errors() if err["loc"]}
    if "format" in failed:
        return f"{path}: format: expected {REGISTRY_FORMAT!r}, got {doc.get('format')!r}"
    if "format_version" in failed:
        return (
            f"{path}: format_version: {doc.get('format_version')!r} is not supported (this build reads "
            f"{REGISTRY_VERSION})"
        )
    extra = sorted(key for key, kind in failed.items() if kind == "extra_forbidden")
    if extra:
        return f"{path}: unknown top-level keys {extra}"
    return f"{path}: entries: expected a JSON object mapping SHA-256 to entries"


def read_registry(path: Path, *, missing_ok: bool = False) -> dict[str, Any]:
    """The parsed registry; an empty one when the file is missing and `missing_ok`."""
    if missing_ok and not path.exists():
        return empty_registry()
    return _parse(path, read_bytes(path, "config registry"))


def entry_problems(key: str, entry: Any) -> list[str]:
    """What is wrong with one entry (empty when valid), from `RegistryEntry`."""
    where = f"entries.{key}"
    if not HEX64.match(key):
        return [f"{where}: key is not a lowercase SHA-256 hex digest"]
    if not isinstance(entry, dict):
        return [f"{where}: expected a JSON object, got {type(entry).__name__}"]
    try:
        RegistryEntry.model_validate(entry)
        failed: set[str] = set()
    except ValidationError as exc:
        errors = [(str(err["loc"][0]), str(err["type"])) for err in exc.errors() if err["loc"]]
        missing = [f"{where}: missing {k!r}" for k in ENTRY_KEYS if (k, "missing") in errors]
        unknown = [f"{where}: unknown key {k!r}" for k, kind in sorted(errors) if kind == "extra_forbidden"]
        if missing or unknown:
            return missing + unknown
        failed = {field for field, _ in errors}
    problems = []
    for field, info in RegistryEntry.model_fields.items():
        if field == "sha256":
            if field in failed or entry["sha256"] != key:
                problems.append(f"{where}.sha256: {entry['sha256']!r} differs from {info.description}")
        elif field in failed:
            problems.append(f"{where}.{field}: expected {info.description}")
        elif field == "config":
            problems += _config_hash_problems(where, key, entry["config"])
    return problems


def _config_hash_problems(where: str, key: str, config: dict[str, Any]) -> list[str]:
    try:
        actual = config_sha256(config)
    except UsageError as exc:
        return [f"{where}.config: {exc}"]
    if actual != key:
        return [f"{where}.config: hashes to {actual}, not to the entry's SHA-256 (edited by hand?)"]
    return []


def check_registry(path: Path) -> list[str]:
    """Every problem of the registry file: structure, canonical form, each entry's hash."""
    raw = read_bytes(path, "config registry")
    try:
        doc = _parse(path, raw)
    except UsageError as exc:
        return [str(exc)]
    problems = [f"{path}: {p}" for key, entry in sorted(doc["entries"].items()) for p in entry_problems(key, entry)]
    canonical = canonical_json(doc).encode()
    if raw != canonical:
        have, want = raw.decode("utf-8", "replace").splitlines(), canonical.decode().splitlines()
        line = next((i + 1 for i, (a, b) in enumerate(zip(have, want, strict=False)) if a != b), None)
        if line is None:
            detail = "line count or final newline differs" if len(have) != len(want) else "the final newline differs"
        else:
            detail = f"first difference at line {line}"
        problems.append(
            f"{path}: not in canonical form (sorted keys, 2-space indent, trailing newline; {detail}); "
            "run `tools/config_registry.py fmt`"
        )
    return problems


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the registry's folder, so concurrent registrations do not lose updates."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        raise UsageError(f"{path}: cannot open the registry's folder ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: Path, doc: dict[str, Any]) -> None:
    try:
        write_json(path, doc)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the registry ({exc.strerror or exc})") from None


# ---------------------------------------------------------------------------------------------
# Commands


def _shown_path(config_path: Path) -> str:
    resolved = config_path.resolve()
    root = repo_root()
    if root is not None:
        with contextlib.suppress(ValueError):
            return resolved.relative_to(root).as_posix()
    return resolved.as_posix()


def load_resolved(config_path: Path) -> dict[str, Any]:
    return resolved_config(load_config(config_path))


@dataclass
class Registered:
    entry: dict[str, Any]
    status: str  # "new", "unchanged" or "relabelled"


def register(path: Path, config_path: Path, label: str, *, notes: str = "", relabel: bool = False) -> Registered:
    """Add `config_path` (validated by the config loader) under `label`; idempotent for equal labels."""
    label = label.strip()
    if not label or any(not ch.isprintable() for ch in label):
        raise UsageError(f"--label must be a non-empty printable string, got {label!r}")
    config = load_resolved(config_path)
    sha = config_sha256(config)
    with _locked(path):
        doc = read_registry(path, missing_ok=True)
        old = doc["entries"].get(sha)
        if old is not None and old.get("label") == label:
            if notes and notes != old.get("notes"):
                old["notes"] = notes
                _write(path, doc)
            return Registered(old, "unchanged")
        if old is not None and not relabel:
            raise UsageError(
                f"{config_path}: this config (sha256 {sha[:12]}) is already registered as {old.get('label')!r}; "
                "pass --relabel to change its label"
            )
        now = utc_stamp()
        fields: dict[str, Any] = {
            "config": config,
            "label": label,
            "notes": notes or (old or {}).get("notes", ""),
            "path": _shown_path(config_path),
            "registered_utc": now if old is None else old["registered_utc"],
            "sha256": sha,
        }
        if old is not None:
            fields["previous_labels"] = [*old.get("previous_labels", []), {"label": old["label"], "until_utc": now}]
        try:
            entry = RegistryEntry(**fields).model_dump(exclude_unset=True)
        except ValidationError as exc:
            raise UsageError(
                f"{path}: entries.{sha}: damaged ({exc.errors()[0]['msg']}); run `registry validate`"
            ) from None
        doc["entries"][sha] = entry
        _write(path, doc)
    return Registered(entry, "new" if old is None else "relabelled")


def find(doc: dict[str, Any], query: str, *, path: Path) -> dict[str, Any]:
    """The entry whose SHA-256 is or starts with `query`: NotFound, or UsageError when ambiguous."""
    q = query.strip().lower()
    if not HEX_PREFIX.match(q):
        raise UsageError(f"{query!r} is not a SHA-256 or a prefix of one (4 to 64 hex digits)")
    hits = sorted(k for k in doc["entries"] if k.startswith(q))
    if not hits:
        raise NotFound(f"{path}: no config registered with sha256 {q}{'' if len(q) == 64 else '...'}")
    if len(hits) > 1:
        listed = ", ".join(f"{k[:16]} ({doc['entries'][k].get('label')})" for k in hits)
        raise UsageError(f"prefix {q!r} is ambiguous: it matches {len(hits)} entries: {listed}")
    entry: dict[str, Any] = doc["entries"][hits[0]]
    return entry


def lookup(path: Path, query: str) -> dict[str, Any]:
    return find(read_registry(path), query, path=path)


def labels(path: Path | None) -> dict[str, str]:
    """SHA-256 -> label of every entry; empty when there is no readable registry (labels are a nicety)."""
    if path is None:
        return {}
    try:
        entries = read_registry(path)["entries"]
    except (UsageError, OSError):
        return {}
    return {k: str(e["label"]) for k, e in entries.items() if isinstance(e, dict) and "label" in e}


def fmt_registry(path: Path) -> bool:
    """Rewrite the registry canonically; returns whether the bytes changed."""
    with _locked(path):
        raw = read_bytes(path, "config registry")
        doc = _parse(path, raw)
        canonical = canonical_json(doc).encode()
        if raw == canonical:
            return False
        _write(path, doc)
        return True


# ---------------------------------------------------------------------------------------------
# Key-path diffs


@dataclass(frozen=True)
class Change:
    op: str  # "+" only in B, "-" only in A, "~" both, different
    path: str
    a: Any = None
    b: Any = None

    def render(self, width: int = 100) -> str:
        if self.op == "+":
            return f"+ {self.path}: {_short(self.b, width)}"
        if self.op == "-":
            return f"- {self.path}: {_short(self.a, width)}"
        return f"~ {self.path}: {_short(self.a, width)} -> {_short(self.b, width)}"


def _short(value: Any, width: int) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return text if len(text) <= width else text[: width - 3] + "..."


def key_path_diff(a: Any, b: Any, path: str = "") -> list[Change]:
    """Differences between two JSON values as key paths (`world.agents[0].wallet`). Values of
    different JSON types differ even when Python calls them equal (1 vs 1.0 vs true): their
    canonical JSON, and so their hashes, differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[Change] = []
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in b:
                out.append(Change("-", sub, a=a[key]))
            elif key not in a:
                out.append(Change("+", sub, b=b[key]))
            else:
                out.extend(key_path_diff(a[key], b[key], sub))
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = []
        for i in range(max(len(a), len(b))):
            sub = f"{path}[{i}]"
            if i >= len(b):
                out.append(Change("-", sub, a=a[i]))
            elif i >= len(a):
                out.append(Change("+", sub, b=b[i]))
            else:
                out.extend(key_path_diff(a[i], b[i], sub))
        return out
    if type(a) is not type(b) or a != b:
        return [Change("~", path or "(root)", a=a, b=b)]
    return []


@dataclass(frozen=True)
class Side:
    name: str  # how the side is shown: the file, or "sha256 PREFIX (label)"
    config: dict[str, Any]
    sha256: str


def diff_side(arg: str, registry: Path) -> Side:
    """A diff operand: an existing config file (loaded and resolved), else a registry hash or prefix."""
    path = Path(arg)
    if path.exists():
        config = load_resolved(path)
        return Side(arg, config, config_sha256(config))
    if HEX_PREFIX.match(arg.strip().lower()):
        try:
            entry = lookup(registry, arg)
        except NotFound as exc:  # for diff, a missing operand is a usage error (exit 1 means "differ")
            raise UsageError(str(exc)) from None
        return Side(f"registry entry {entry['label']!r}", entry["config"], entry["sha256"])
    raise UsageError(f"{arg}: neither a config file nor a registered sha256 (or prefix)")
