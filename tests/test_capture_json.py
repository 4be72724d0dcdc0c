"""`jsonio.canonical_json`'s own walker (indent 2) against the standard library's indented `json.dumps`: the same
text, the same errors."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest

from townlet.jsonio import canonical_json

_STRINGS = ["", "a", "é", "日本", "tab\there", 'quote"back\\slash', "new\nline", "\x00\x1f", "😀", "</script>"]
_FLOATS = [0.0, -0.0, 1.0, -1.5, 0.1, 1e16, 1e-7, 123456789.125, 2.5e-320, 1.7976931348623157e308]


def reference(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, indent=2, allow_nan=False) + "\n"


def _tree(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice(_STRINGS)
    if kind == 1:
        return rng.choice(_FLOATS) * rng.choice([1, -1])
    if kind == 2:
        return rng.choice([0, 1, -7, 2**70, True, False])
    if kind == 3:
        return None
    if kind == 4:
        return [rng.choice(_STRINGS) for _ in range(rng.randrange(4))]
    if kind == 5:
        return rng.choice([[], {}, ()])
    if kind in (6, 7):
        return {rng.choice(_STRINGS) + str(i): _tree(rng, depth + 1) for i in range(rng.randrange(5))}
    return [_tree(rng, depth + 1) for _ in range(rng.randrange(5))]


def test_same_text_as_canonical_json_on_random_trees() -> None:
    rng = random.Random(12)
    for _ in range(2000):
        obj = _tree(rng, 0)
        assert canonical_json(obj) == reference(obj)


@pytest.mark.parametrize("obj", [{1: "a", 2: "b"}, {"a": [1, {None: 2}]}, {"x": (1, 2)}, [True, 3.5, "z"]])
def test_unusual_keys_and_tuples_as_canonical_json(obj: Any) -> None:
    assert canonical_json(obj) == reference(obj)


@pytest.mark.parametrize("bad", [{"x": float("nan")}, [float("inf")], {"x": {1, 2}}, {"a": 1, 2: 3}])
def test_errors_as_canonical_json(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError)) as expected:
        reference(bad)
    with pytest.raises(expected.type, match=re.escape(str(expected.value))):
        canonical_json(bad)
