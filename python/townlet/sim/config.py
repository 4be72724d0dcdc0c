"""The one config loader.

A Townlet config is one YAML file. Its world sections (the town, agents, needs, economy, jobs,
queues, relationships, perturbations, lifecycle, observations, rewards, ...) are validated by the Rust core, which owns
them; the Python-side sections (training, telemetry and others, as they arrive)
are validated here with pydantic. `affordances:` and `perturbations:` may name another YAML file,
which is inlined. Every error names the file, the line where it can be found, and the key path.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from yaml.constructor import SafeConstructor

from townlet import _core
from townlet.errors import ConfigError
from townlet.sim.settings import BCConfig, PPOConfig, TrainingSection, for_config
from townlet.sim.settings_ops import OpsSection

#: Top-level keys owned (and validated) by the Rust world core.
WORLD_KEYS = frozenset(
    {
        "config_id",
        "seed",
        "world",
        "agents",
        "affordances",
        "personalities",
        "needs",
        "economy",
        "jobs",
        "employment",
        "queue_fairness",
        "conflict",
        "relationships",
        "perturbations",
        "lifecycle",
        "identity",
        "behavior",
        "actions",
        "scenario",
        "observations",
        "rewards",
    }
)

#: Keys that may name another YAML file to inline.
INCLUDE_KEYS = ("affordances", "perturbations")


class PythonSections(BaseModel):
    """Sections owned by the Python layer."""

    model_config = ConfigDict(extra="forbid")
    bc: BCConfig = BCConfig()
    ppo: PPOConfig = PPOConfig()
    training: TrainingSection = TrainingSection()
    ops: OpsSection = OpsSection()


PYTHON_KEYS = frozenset(PythonSections.model_fields)


@dataclass(frozen=True)
class SourceText:
    """The exact text of one YAML file a config was loaded from (line endings kept), and its SHA-256
    over the UTF-8 bytes: what a checkpoint embeds so `extract-config` gives the file back byte for byte."""

    path: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TownConfig:
    """A loaded, validated config."""

    path: Path
    raw: dict[str, Any]
    world: dict[str, Any]
    sections: PythonSections
    includes: dict[str, Path] = field(default_factory=dict)
    #: The exact texts read: the config file, and each included file by its key (None when built by hand).
    source: SourceText | None = None
    include_sources: dict[str, SourceText] = field(default_factory=dict)

    @property
    def config_id(self) -> str:
        return str(self.world["config_id"])

    @property
    def seed(self) -> int:
        return int(self.world.get("seed", 0))

    @property
    def scenario_name(self) -> str:
        scenario = self.world.get("scenario") or {}
        return str(scenario.get("name") or self.path.stem)

    @property
    def scenario_ticks(self) -> int | None:
        scenario = self.world.get("scenario") or {}
        ticks = scenario.get("ticks")
        return int(ticks) if ticks is not None else None

    def world_json(self) -> str:
        """The resolved world sections as canonical JSON: what the Rust core receives."""
        return json.dumps(self.world, sort_keys=True, separators=(",", ":"))

    def with_seed(self, seed: int) -> TownConfig:
        world = dict(self.world)
        world["seed"] = seed
        return replace(self, world=world)

    def action_names(self) -> list[str]:
        return list(_core.config_action_names(self.world_json()))


# ---------------------------------------------------------------------------------------------
# YAML with positions


class _Located:
    """Maps key paths (`agents[2].needs.hunger`) to 1-based line numbers of a YAML document."""

    def __init__(self, node: yaml.Node | None) -> None:
        self.node = node

    def line_of(self, path: str) -> int | None:
        node = self.node
        best = node.start_mark.line + 1 if node is not None else None
        for part in _split_path(path):
            if node is None:
                break
            nxt: yaml.Node | None = None
            if isinstance(part, int) and isinstance(node, yaml.SequenceNode):
                if 0 <= part < len(node.value):
                    nxt = node.value[part]
            elif isinstance(part, str) and isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if getattr(key_node, "value", None) == part:
                        nxt = value_node
                        best = key_node.start_mark.line + 1
                        break
            if nxt is None:
                break
            node = nxt
            if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
                best = node.start_mark.line + 1
        return best


def _split_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return parts


def _read_yaml(path: Path, label: str | None = None) -> tuple[Any, _Located, str]:
    """The file's data, its positions and its exact text (decoded without newline translation)."""
    shown = label or str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(shown, "", "file not found") from None
    except IsADirectoryError:
        raise ConfigError(shown, "", "is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(shown, "", f"cannot read: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(shown, "", f"invalid YAML: {problem}", line=line) from None
    _reject_duplicate_keys(node, shown, "", set())
    _reject_non_finite_and_dates(node, shown, "", set())
    return data, _Located(node), text


def _reject_duplicate_keys(node: yaml.Node | None, file: str, path: str, seen: set[int]) -> None:
    """PyYAML silently keeps the last of two equal keys; a config must not say one thing twice."""
    if node is None or id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key = str(getattr(key_node, "value", ""))
            sub = f"{path}.{key}" if path else key
            if key in keys and key != "<<":
                line = key_node.start_mark.line + 1
                raise ConfigError(file, sub, "duplicate key (already given earlier in this mapping)", line=line)
            keys.add(key)
            _reject_duplicate_keys(value_node, file, sub, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _reject_duplicate_keys(item, file, f"{path}[{i}]", seen)


_FLOAT_TAG = "tag:yaml.org,2002:float"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


def _reject_non_finite_and_dates(node: yaml.Node | None, file: str, path: str, seen: set[int]) -> None:
    """Refuse what JSON and the Rust core cannot carry, at the line that says it.

    `.nan`/`.inf` (or a float too large, `1.0e400`) would reach the world as NaN/inf; an unquoted
    `2024-01-01` is a YAML date, not a string. Both are refused in every section and included file.
    """
    if node is None or id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        line = node.start_mark.line + 1
        if node.tag == _FLOAT_TAG and not math.isfinite(SafeConstructor().construct_yaml_float(node)):
            raise ConfigError(
                file, path, f"not a finite number ({node.value}); configs hold finite numbers only", line=line
            )
        if node.tag == _TIMESTAMP_TAG:
            raise ConfigError(file, path, f"a YAML date/time ({node.value}); quote it if a string is meant", line=line)
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            sub = f"{path}.{getattr(key_node, 'value', '')}" if path else str(getattr(key_node, "value", ""))
            _reject_non_finite_and_dates(key_node, file, sub, seen)
            _reject_non_finite_and_dates(value_node, file, sub, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _reject_non_finite_and_dates(item, file, f"{path}[{i}]", seen)


def _first_non_finite(value: Any, path: str) -> str | None:
    """The key path of the first NaN/inf in a validated model dump (a quoted "nan" or "1e400" parses to one)."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, dict):
        for key, item in value.items():
            found = _first_non_finite(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _first_non_finite(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _resolve_include(value: str, base: Path, file: str, key: str, line: int | None) -> Path:
    candidate = Path(value)
    if candidate.is_absolute():
        if candidate.is_file():
            return candidate
    else:
        # Relative to the including file, then to each of its parents (repository-relative paths).
        for root in [base, *base.parents]:
            if (root / candidate).is_file():
                return root / candidate
        if candidate.is_file():
            return candidate
    raise ConfigError(file, key, f"included file {value!r} not found", line=line)


def load_config(path: str | Path, *, seed: int | None = None) -> TownConfig:
    """Load and validate a config; raise ConfigError (one line: file, line, key, message)."""
    path = Path(path)
    shown = str(path)
    data, located, text = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(shown, "", "expected a mapping of config sections at the top level")

    raw: dict[str, Any] = dict(data)
    includes: dict[str, Path] = {}
    include_located: dict[str, tuple[str, _Located]] = {}
    include_sources: dict[str, SourceText] = {}
    for key in INCLUDE_KEYS:
        value = raw.get(key)
        if isinstance(value, str):
            inc = _resolve_include(value, path.parent, shown, key, located.line_of(key))
            inc_data, inc_located, inc_text = _read_yaml(inc)
            if not isinstance(inc_data, dict):
                raise ConfigError(str(inc), "", f"expected a mapping (included as `{key}` from {shown})")
            raw[key] = inc_data
            includes[key] = inc
            include_located[key] = (str(inc), inc_located)
            include_sources[key] = SourceText(str(inc), inc_text)

    for key in raw:
        if not isinstance(key, str) or (key not in WORLD_KEYS and key not in PYTHON_KEYS):
            known = ", ".join(sorted(WORLD_KEYS | PYTHON_KEYS))
            raise ConfigError(
                shown, str(key), f"unknown top-level key (known: {known})", line=located.line_of(str(key))
            )

    try:
        sections = PythonSections.model_validate({k: raw[k] for k in PYTHON_KEYS if k in raw})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(shown, key, _pydantic_message(first), line=located.line_of(key)) from None
    bad = _first_non_finite(sections.model_dump(exclude_unset=True), "")
    if bad is not None:
        raise ConfigError(
            shown, bad, "not a finite number; configs hold finite numbers only", line=located.line_of(bad)
        )

    world = {k: raw[k] for k in WORLD_KEYS if k in raw}
    if seed is not None:
        world["seed"] = seed
    try:
        world_json = json.dumps(world, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(shown, "", f"config holds a value JSON cannot carry: {exc}") from None
    try:
        _core.validate_config(world_json)
    except _core.ConfigError as exc:
        key = str(getattr(exc, "path", ""))
        detail = str(getattr(exc, "detail", exc))
        top = key.split(".", 1)[0].split("[", 1)[0]
        if top in include_located:
            file, loc = include_located[top]
            inner = key[len(top) :].lstrip(".")
            raise ConfigError(file, inner, detail, line=loc.line_of(inner)) from None
        raise ConfigError(shown, key, detail, line=located.line_of(key)) from None
    return TownConfig(
        path=path,
        raw=raw,
        world=world,
        sections=for_config(sections, str(world["config_id"])),  # logs/<config_id>/<phase>/... (SPEC §8)
        includes=includes,
        source=SourceText(str(path), text),
        include_sources=include_sources,
    )


def _pydantic_message(err: Any) -> str:
    kind = err.get("type", "")
    given = err.get("input")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"expected one of {expected}, got {json.dumps(given)}"
    return f"{err.get('msg', 'invalid value')}, got {json.dumps(given, default=str)}"
