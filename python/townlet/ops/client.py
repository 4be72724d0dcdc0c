"""The console's side of the HTTP API: a `ShardClient` that sends envelopes and reads results, the schema-version
gate (a newer minor version warns; a newer major version refuses mutating commands), and reading a token file.
`townlet console` (cli/console.py) prints; this module never does."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from townlet.errors import TownletError, UsageError
from townlet.jsonio import loads_strict, read_text
from townlet.ops.snapshot import SCHEMA_VERSION

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


class ConsoleError(TownletError):
    """An error result from the shard, or a shard that cannot be reached: exit 1 (2 for usage/invalid_args)."""

    def __init__(self, message: str, code: str = "internal", result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.result = result
        self.exit_code = 2 if code in ("usage", "invalid_args") else 1


def read_token_file(path: Path, label: str | None = None) -> str:
    """The token in `path`: the file's text (one token), a JSON string, `{"token": ...}`, or a tokens list
    (`[{"token", "role", "label"}]`: its one entry, or the entry with `label`)."""
    text = read_text(path, "token file").strip()
    if not text:
        raise UsageError(f"{path}: the token file is empty")
    if text[0] not in '[{"':
        return text.splitlines()[0].strip()
    try:
        data = loads_strict(text)
    except ValueError:
        raise UsageError(f"{path}: not valid JSON (a token file holds a token, or JSON with one)") from None
    if isinstance(data, str):
        return data
    entries = data if isinstance(data, list) else [data]
    if label is not None:
        entries = [e for e in entries if isinstance(e, dict) and e.get("label") == label]
    tokens = [e.get("token") for e in entries if isinstance(e, dict) and isinstance(e.get("token"), str)]
    if len(tokens) != 1:
        which = f" labelled {label!r}" if label is not None else ""
        raise UsageError(f"{path}: expected one token{which}, found {len(tokens)} (give --label to choose)")
    return str(tokens[0])


def parse_version(text: str, where: str) -> tuple[int, int, int]:
    parts = text.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ConsoleError(f"{where}: schema version {text!r} is not MAJOR.MINOR.PATCH", "usage")
    return int(parts[0]), int(parts[1]), int(parts[2])


@dataclass(frozen=True)
class SchemaGate:
    """What the client does about the shard's schema version: a warning to show, and whether mutating commands are
    refused (the shard's major version is newer than the client's)."""

    client: str
    shard: str
    warning: str | None = None
    refuse_mutating: bool = False


def schema_gate(shard_version: str, client_version: str = SCHEMA_VERSION) -> SchemaGate:
    mine = parse_version(client_version, "this client")
    theirs = parse_version(shard_version, "the shard")
    if theirs[0] > mine[0]:
        return SchemaGate(
            client_version,
            shard_version,
            f"the shard reports schema {shard_version}, a newer major version than this client's {client_version}: "
            "upgrade the client (mutating commands are refused)",
            refuse_mutating=True,
        )
    if theirs[0] == mine[0] and theirs[1] > mine[1]:
        return SchemaGate(
            client_version,
            shard_version,
            f"the shard reports schema {shard_version}, newer than this client's {client_version}: upgrade the client",
        )
    return SchemaGate(client_version, shard_version)


def parse_value(text: str) -> Any:
    """A command-line argument: a JSON number, boolean, null, object or list when it is one, else the string."""
    if text[:1] in "{[-0123456789" or text in ("true", "false", "null"):
        try:
            return loads_strict(text, finite=True)
        except ValueError:
            return text
    return text


def build_envelope(
    name: str, words: list[str], *, kwargs_json: str | None = None, cmd_id: str | None = None
) -> dict[str, Any]:
    """The envelope for `name WORDS...`: `key=value` words become kwargs, the rest positional args."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    if kwargs_json is not None:
        try:
            given = loads_strict(kwargs_json, finite=True)
        except ValueError as exc:
            raise UsageError(f"--kwargs: not valid JSON: {exc}") from None
        if not isinstance(given, dict):
            raise UsageError("--kwargs: expected a JSON object")
        kwargs.update(given)
    for word in words:
        if _KEY.match(word):
            key, _, value = word.partition("=")
            kwargs[key] = parse_value(value)
        else:
            args.append(parse_value(word))
    env: dict[str, Any] = {"name": name, "args": args, "kwargs": kwargs}
    if cmd_id is not None:
        env["cmd_id"] = cmd_id
    return env


@dataclass
class ShardClient:
    """Talks to one shard's HTTP API."""

    url: str
    token: str | None = None
    timeout: float = 60.0
    client_schema: str = SCHEMA_VERSION
    _commands: dict[str, dict[str, Any]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise UsageError(f"URL {self.url!r}: expected http://HOST:PORT")
        self._http = httpx.Client(timeout=self.timeout, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self._http.request(method, f"{self.url}{path}", headers=self._headers(), **kw)
        except httpx.HTTPError as exc:
            raise ConsoleError(f"cannot reach the shard at {self.url}: {exc}") from None

    def health(self) -> dict[str, Any]:
        res = self._request("GET", "/v1/health")
        if res.status_code != 200:
            raise ConsoleError(f"{self.url}/v1/health answered HTTP {res.status_code}: is this a Townlet shard?")
        body: dict[str, Any] = res.json()
        return body

    def gate(self) -> SchemaGate:
        return schema_gate(str(self.health().get("schema_version", "0.0.0")), self.client_schema)

    def send(self, envelope: dict[str, Any]) -> dict[str, Any]:
        """POST the envelope; the result object (status ok or error) whatever the HTTP status."""
        res = self._request("POST", "/v1/commands", content=json.dumps(envelope).encode())
        try:
            body = res.json()
        except ValueError:
            raise ConsoleError(f"the shard answered HTTP {res.status_code} without a JSON result") from None
        if not isinstance(body, dict) or "status" not in body:
            raise ConsoleError(f"the shard answered HTTP {res.status_code} without a result object")
        return body

    def commands(self) -> dict[str, dict[str, Any]]:
        """The shard's commands (from `help`): name -> {role, summary, mutates, ...}; empty when refused."""
        if self._commands is None:
            result = self.send({"name": "help"})
            listed = (result.get("result") or {}).get("commands", []) if result.get("status") == "ok" else []
            self._commands = {c["name"]: c for c in listed if isinstance(c, dict) and "name" in c}
        return self._commands

    def mutates(self, name: str) -> bool:
        """Whether `name` changes the world or is an admin override (unknown names count as mutating)."""
        info = self.commands().get(name)
        return True if info is None else bool(info.get("mutates", True)) or info.get("role") == "admin"


def error_of(result: dict[str, Any]) -> ConsoleError:
    err = result.get("error") or {}
    code = str(err.get("code", "internal"))
    return ConsoleError(f"{result.get('name') or 'command'}: {code}: {err.get('message', 'failed')}", code, result)
