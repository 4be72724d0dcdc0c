"""`extract-config`: the config a checkpoint was trained with, back out of its header.

Two forms are embedded. `config_yaml` is the config file exactly as it was read (and each file it
included, by key), so the default extraction gives the YAML back byte for byte. `config` is the
resolved form the registry hashes (`config_sha256`): includes inlined, the phase's effective training
settings (command-line overrides included), warm-start paths left out; `--resolved` extracts that, as
YAML or JSON. Checkpoints written before raw-text embedding hold only the resolved form.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from townlet.artifacts.checkpoint_format import config_yaml_problems
from townlet.artifacts.checkpoint_tools import VerifyFailed, check_config, locate, obj
from townlet.errors import UsageError
from townlet.jsonio import atomic_write_bytes, canonical_json

__all__ = ["Extracted", "extract_config"]

_SUFFIX_FORMAT = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}


@dataclass(frozen=True)
class Extracted:
    """What `extract_config` produced: the text (also written to `output` when one was given)."""

    text: str
    #: "yaml" (the exact text, or the resolved form as YAML) or "json" (the resolved form).
    format: str
    resolved: bool
    #: The file the text came from (`config_yaml.path` or an include's), None for the resolved form.
    source: str | None
    #: SHA-256 of the text's UTF-8 bytes (exact text), or the config_sha256 (resolved form).
    sha256: str | None
    #: Keys of the included files whose exact text is embedded too (extract with `include=`).
    includes: list[str]
    output: Path | None


def extract_config(
    path: Path,
    output: Path | None = None,
    *,
    fmt: str | None = None,
    overwrite: bool = False,
    resolved: bool = False,
    include: str | None = None,
) -> Extracted:
    """The checkpoint's config: the exact YAML text (default; `include=KEY` for an included file's), or with
    `resolved` (implied by JSON) the resolved form. Written atomically to `output` when given, and only
    over an existing file with `overwrite`."""
    if fmt is not None and fmt not in ("yaml", "json"):
        raise UsageError(f"--format must be yaml or json, got {fmt!r}")
    kind = fmt or (_SUFFIX_FORMAT.get(output.suffix) if output is not None else None)
    if kind == "json":
        resolved = True  # the exact text is YAML: JSON can only be the resolved form
    if resolved and include is not None:
        raise UsageError("--include extracts an included file's exact text; it does not go with --resolved or JSON")
    files, header = locate(path)
    name = str(files.header)
    block = obj(header.get("config_yaml"))
    includes = sorted(obj(block.get("includes")))
    if resolved:
        if kind is None and output is not None:
            raise UsageError(f"{output}: pass --format yaml|json (or name the output .yaml, .yml or .json)")
        extracted = _resolved(name, header, kind or "yaml", includes, output)
    else:
        extracted = _exact(name, header, include, includes, output)
    if output is not None:
        if output.exists() and not overwrite:
            raise UsageError(f"{output}: already exists (pass --overwrite to replace it)")
        try:
            atomic_write_bytes(output, extracted.text.encode("utf-8"))
        except OSError as exc:
            raise UsageError(f"{output}: cannot write ({exc.strerror or exc})") from None
    return extracted


def _resolved(name: str, header: dict[str, Any], kind: str, includes: list[str], output: Path | None) -> Extracted:
    config = header.get("config")
    if config is None:
        raise UsageError(f"{name}: no config is embedded in this checkpoint")
    problems: list[str] = []
    check_config(name, header, problems)
    if problems:
        raise VerifyFailed(problems[0])
    if kind == "json":
        text = canonical_json(config)
    else:
        text = yaml.safe_dump(config, sort_keys=True, default_flow_style=False, allow_unicode=True)
    return Extracted(text, kind, True, None, header.get("config_sha256"), includes, output)


def _exact(
    name: str, header: dict[str, Any], include: str | None, includes: list[str], output: Path | None
) -> Extracted:
    if header.get("config_yaml") is None:
        raise UsageError(
            f"{name}: this checkpoint predates raw-text embedding (it holds only the resolved config); "
            "pass --resolved to extract that"
        )
    problems = config_yaml_problems(name, header)
    if problems:
        raise VerifyFailed(problems[0])
    block = header["config_yaml"]
    if include is not None:
        if include not in includes:
            known = ", ".join(includes) or "none"
            raise UsageError(f"{name}: the config includes no {include!r} file (included: {known})")
        block = block["includes"][include]
    return Extracted(block["text"], "yaml", False, block["path"], block["sha256"], includes, output)
