"""Tokens: read from a file or the environment, bad files refused in one line that never shows a token,
expired and unknown tokens unauthorized, no token a viewer only where allowed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from townlet.errors import UsageError
from townlet.ops import CommandError, TokenStore

SECRET = "s3cret-token-value"


def write(path: Path, records: object) -> Path:
    path.write_text(json.dumps(records))
    return path


def test_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = [
        {"token": SECRET, "role": "admin", "label": "ada"},
        {"token": "viewer-token-0001", "role": "viewer", "label": "vera"},
        {"token": "old-token-000001", "role": "admin", "label": "old", "expires": "2020-01-01T00:00:00Z"},
    ]
    store = TokenStore.from_file(write(tmp_path / "t.json", records))
    assert (store.authenticate(SECRET).role, store.authenticate(" viewer-token-0001 ").label) == ("admin", "vera")
    with pytest.raises(CommandError, match="token expired") as expired:
        store.authenticate("old-token-000001")
    with pytest.raises(CommandError, match="unknown token") as unknown:
        store.authenticate(SECRET + "x")
    assert expired.value.code == unknown.value.code == "unauthorized"
    with pytest.raises(CommandError, match="token is required"):
        store.authenticate(None)
    assert TokenStore([], allow_anonymous_viewer=True).authenticate(None).role == "viewer"
    assert SECRET not in repr(store)
    monkeypatch.setenv("TOWNLET_TOKENS", json.dumps(records[:1]))
    assert TokenStore.from_env("TOWNLET_TOKENS").authenticate(SECRET).label == "ada"


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ({"token": SECRET}, "expected a JSON list"),
        ([{"token": SECRET, "role": "root", "label": "x"}], "[0].role"),
        ([{"token": "short", "role": "admin", "label": "x"}], "[0].token"),
        ([{"token": SECRET, "role": "admin", "label": "a"}, {"token": SECRET, "role": "viewer", "label": "b"}],
         "[1].token: duplicate token"),
        ([{"token": SECRET, "role": "admin", "label": "x", "extra": 1}], "[0].extra"),
        ([{"token": SECRET, "role": "admin", "label": "x", "expires": "2020-01-01"}], "[0].expires"),
    ],
)  # fmt: skip
def test_bad_token_files_are_one_line_without_the_token(tmp_path: Path, records: object, message: str) -> None:
    with pytest.raises(UsageError) as exc:
        TokenStore.from_file(write(tmp_path / "t.json", records))
    text = str(exc.value)
    assert message in text and str(tmp_path / "t.json") in text and "\n" not in text
    assert SECRET not in text


def test_missing_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="not found"):
        TokenStore.from_file(tmp_path / "none.json")
    monkeypatch.delenv("NO_SUCH_TOKENS", raising=False)
    with pytest.raises(UsageError, match="NO_SUCH_TOKENS is not set"):
        TokenStore.from_env("NO_SUCH_TOKENS")
    monkeypatch.setenv("BAD_TOKENS", "[not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        TokenStore.from_env("BAD_TOKENS")
