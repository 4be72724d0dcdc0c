"""The one JSON writer: canonical JSON text and atomic file writes (temp file, fsync, rename)."""

from __future__ import annotations

import contextlib
import json
import json.encoder
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from townlet.errors import UsageError


def canonical_json(obj: Any, *, indent: int | None = 2) -> str:
    """Sorted keys, fixed separators, a trailing newline when indented: the same bytes every time.

    Indented by 2 (the default), plain trees (dicts with string keys, lists, strings, ints, finite floats, bools,
    None) are written by `_walk`, the same characters as `json.dumps(obj, sort_keys=True, indent=2,
    allow_nan=False)` about 1.5x faster: indented, `json.dumps` leaves its C encoder for Python generators, which
    was most of the time a small capture spent on its JSON files. Anything else goes to `json.dumps`, which writes
    it or raises. tests/test_capture_json.py holds the two together."""
    if indent is None:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    if indent == 2:
        out: list[str] = []
        try:
            _walk(obj, "\n", out)
        except (_Unusual, RecursionError):
            pass
        else:
            out.append("\n")
            return "".join(out)
    return json.dumps(obj, sort_keys=True, indent=indent, allow_nan=False) + "\n"


_escape = json.encoder.encode_basestring_ascii
_float_repr = float.__repr__
_int_repr = int.__repr__
_isfinite = math.isfinite
_INDENT = "  "


class _Unusual(Exception):
    """Something `_walk` leaves to `json.dumps`."""


def _walk(o: Any, nl: str, out: list[str]) -> None:
    # `nl` is a newline and the current level's indent; the checks go in `json.encoder`'s order.
    if isinstance(o, str):
        out.append(_escape(o))
    elif o is None:
        out.append("null")
    elif o is True:
        out.append("true")
    elif o is False:
        out.append("false")
    elif isinstance(o, int):
        out.append(_int_repr(o))
    elif isinstance(o, float):
        if not _isfinite(o):
            raise _Unusual
        out.append(_float_repr(o))
    elif isinstance(o, (list, tuple)):
        if not o:
            out.append("[]")
            return
        inner = nl + _INDENT
        if all(type(x) is str for x in o):
            out.append("[" + inner + ("," + inner).join(map(_escape, o)) + nl + "]")
            return
        sep = "[" + inner
        for x in o:
            out.append(sep)
            sep = "," + inner
            _walk(x, inner, out)
        out.append(nl + "]")
    elif isinstance(o, dict):
        if not o:
            out.append("{}")
            return
        if not all(type(k) is str for k in o):
            raise _Unusual
        inner = nl + _INDENT
        parts = []
        for k in sorted(o):
            v = o[k]
            t = type(v)
            # The common leaves inline; anything else (bool, None, containers, subclasses) walks.
            if t is float and _isfinite(v):
                parts.append(_escape(k) + ": " + _float_repr(v))
            elif t is str:
                parts.append(_escape(k) + ": " + _escape(v))
            elif t is int:
                parts.append(_escape(k) + ": " + _int_repr(v))
            else:
                sub: list[str] = []
                _walk(v, inner, sub)
                parts.append(_escape(k) + ": " + "".join(sub))
        out.append("{" + inner + ("," + inner).join(parts) + nl + "}")
    else:
        raise _Unusual


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def fsync_dir(directory: str | Path) -> None:
    """Make renames into `directory` durable (where the platform lets a folder be fsynced)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> None:
    atomic_write_text(path, canonical_json(obj, indent=indent))


def read_bytes(path: Path, what: str = "file") -> bytes:
    """A file's bytes; a missing or unreadable file is a UsageError naming it (and what it is)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a {what}") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None


def read_json(path: Path, what: str = "file", *, finite: bool = False) -> Any:
    """A JSON file, parsed; bad JSON is a UsageError naming the file and line."""
    return parse_json(path, read_bytes(path, what), finite=finite)


class DuplicateKey(ValueError):
    """A JSON object that names one key twice (`json` would keep the last silently)."""

    def __init__(self, key: str, line: int | None = None) -> None:
        super().__init__(f"duplicate key {key!r}" + (f" at line {line}" if line is not None else ""))
        self.key = key
        self.line = line


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # rare: find the repeat only then (this hook runs for every object)
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return obj


def _not_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number (not valid JSON)")


def loads_strict(text: str | bytes, *, finite: bool = False) -> Any:
    """The one JSON parser: `text` parsed, refusing an object that names a key twice (`DuplicateKey`, with the
    line of the repeat) and, with `finite`, the NaN/Infinity literals Python's json accepts (`ValueError`).
    Bytes must be UTF-8 (`UnicodeDecodeError`, also a ValueError)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        return json.loads(text, object_pairs_hook=_unique_object, parse_constant=_not_json_constant if finite else None)
    except DuplicateKey as exc:
        raise DuplicateKey(exc.key, _line_of(text, exc.key)) from None


def _line_of(text: str, key: str) -> int:
    """The line where `key` is named a second time in one object of `text` (valid JSON but for that): a scan of
    strings and brackets, run only when a duplicate was found."""
    containers: list[set[str] | None] = []  # per open bracket: the object's occurrences of `key`, None for arrays
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            end = i + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            after = end + 1
            while after < n and text[after] in " \t\r\n":
                after += 1
            seen = containers[-1] if containers else None  # the enclosing object's, when it is one
            if seen is not None and after < n and text[after] == ":" and json.loads(text[i : end + 1]) == key:
                if key in seen:
                    return text.count("\n", 0, i) + 1
                seen.add(key)
            i = end + 1
            continue
        if ch in "{[":
            containers.append(set() if ch == "{" else None)
        elif ch in "}]" and containers:
            containers.pop()
        i += 1
    return 1


def decode_text(path: Path, raw: bytes) -> str:
    """`raw`, the bytes of `path`, as UTF-8 text; anything else is a UsageError naming the file."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def read_text(path: Path, what: str = "file") -> str:
    """A UTF-8 text file; missing, unreadable or binary is a UsageError naming it."""
    return decode_text(path, read_bytes(path, what))


def parse_json(path: Path, raw: bytes, *, finite: bool = False) -> Any:
    """`raw`, the bytes of `path`, parsed; bad JSON (binary, a syntax error, a duplicate key, with `finite` a
    NaN/Infinity literal) is a UsageError naming the file and line."""
    text = decode_text(path, raw)
    try:
        return loads_strict(text, finite=finite)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except DuplicateKey as exc:
        raise UsageError(f"{path}:{exc.line}: invalid JSON: duplicate key {exc.key!r}") from None
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{path}: invalid JSON: {exc}") from None
