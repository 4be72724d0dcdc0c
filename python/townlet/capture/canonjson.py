"""`jsonio.canonical_json` (indented form), byte for byte, without the standard library's pure-Python encoder.

`json.dumps` takes its C encoder only without `indent`; indented, it walks the object with Python generators,
which was most of the time a small capture spends making its JSON files (one sidecar per sample, the metrics
file and the manifest). This walker writes the same text (sorted keys, two-space indent, `": "` and `","`,
`ensure_ascii` strings through the C escaper, `float.__repr__`, a trailing newline) for the plain trees the
capture's models dump to: dicts with string keys, lists, strings, ints, finite floats, bools and None. Anything
else (another key type, a non-finite float, an unknown type) goes to `canonical_json` itself, which writes it or
raises exactly as before. tests/test_capture_json.py holds the two together.
"""

from __future__ import annotations

import json.encoder
import math
from typing import Any

from townlet.jsonio import canonical_json

_escape = json.encoder.encode_basestring_ascii
_float_repr = float.__repr__
_int_repr = int.__repr__
_isfinite = math.isfinite
_INDENT = "  "


class _Unusual(Exception):
    """Something this walker leaves to `canonical_json`."""


def canonical_text(obj: Any) -> str:
    """`canonical_json(obj)` (indent 2), the same characters."""
    out: list[str] = []
    try:
        _walk(obj, "\n", out)
    except (_Unusual, RecursionError):
        return canonical_json(obj)
    out.append("\n")
    return "".join(out)


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
