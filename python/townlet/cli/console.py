"""`townlet console URL [COMMAND ARGS...]`: the operator console of a live shard (`townlet sim serve`).

With a COMMAND it sends one command and prints the result (Rich, or `--json`), exiting non-zero on an error result;
without one it is interactive: a prompt with history and completion of the shard's command names."""

from __future__ import annotations

import json
import os
import shlex
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from townlet.cli.common import report, stderr_line
from townlet.errors import TownletError, UsageError

HISTORY = Path.home() / ".townlet_console_history"
EXITS = ("exit", "quit", ":q")


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def render(console: Console, result: dict[str, Any]) -> None:
    """A result for people: a header line, then the value as a table where it is one."""
    value = result.get("result")
    where = f" (cmd_id {result['cmd_id']})" if result.get("cmd_id") else ""
    console.print(
        f"[green]ok[/] {escape(str(result.get('name')))}{escape(where)} at tick {result.get('tick')}, "
        f"{float(result.get('latency_ms') or 0):.1f} ms",
        highlight=False,
    )
    if isinstance(value, dict) and isinstance(value.get("commands"), list):
        table = Table("command", "role", "arguments", "summary")
        for cmd in value["commands"]:
            args = " ".join(
                f"{k}" if spec.get("required") else f"[{k}]" for k, spec in (cmd.get("arguments") or {}).items()
            )
            table.add_row(str(cmd.get("name")), str(cmd.get("role")), escape(args), escape(str(cmd.get("summary"))))
        console.print(table)
    elif isinstance(value, dict):
        table = Table("key", "value", show_header=False)
        for key, item in value.items():
            table.add_row(escape(str(key)), escape(_cell(item)))
        console.print(table)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        columns = list(dict.fromkeys(k for v in value for k in v))
        table = Table(*columns)
        for row in value:
            table.add_row(*(escape(_cell(row.get(c, ""))) for c in columns))
        console.print(table)
    elif value is not None:
        console.print(escape(_cell(value)), highlight=False)


def _token(token: str | None, token_file: Path | None, label: str | None) -> str | None:
    from townlet.ops.client import read_token_file

    if token is not None and token_file is not None:
        raise UsageError("give --token or --token-file, not both")
    if token_file is not None:
        return read_token_file(token_file, label)
    return token if token is not None else os.environ.get("TOWNLET_TOKEN") or None


def run_one(
    client: Any,
    gate: Any,
    name: str,
    words: list[str],
    *,
    cmd_id: str | None,
    kwargs_json: str | None,
    as_json: bool,
    console: Console,
) -> dict[str, Any]:
    """Send one command and print its result; raise `ConsoleError` for an error result (after printing JSON)."""
    from townlet.ops.client import ConsoleError, build_envelope, error_of

    envelope = build_envelope(name, words, kwargs_json=kwargs_json, cmd_id=cmd_id)
    if gate.refuse_mutating and client.mutates(name):
        raise ConsoleError(
            f"{name}: refused: the shard's schema {gate.shard} is a newer major version than this client's "
            f"{gate.client}; upgrade the client before issuing mutating commands",
            "usage",
        )
    result: dict[str, Any] = client.send(envelope)
    if as_json:
        typer.echo(json.dumps(result, sort_keys=True))
    if result.get("status") != "ok":
        raise error_of(result)
    if not as_json:
        render(console, result)
    return result


def _split_line(line: str) -> tuple[str, list[str], str | None, str | None, bool]:
    """An interactive line: (command, words, --cmd-id, --kwargs, --json)."""
    words = shlex.split(line)
    cmd_id = kwargs_json = None
    as_json = False
    rest: list[str] = []
    it = iter(words[1:])
    for word in it:
        if word in ("--cmd-id", "--kwargs"):
            value = next(it, None)
            if value is None:
                raise UsageError(f"{word} needs a value")
            if word == "--cmd-id":
                cmd_id = value
            else:
                kwargs_json = value
        elif word == "--json":
            as_json = True
        else:
            rest.append(word)
    return words[0], rest, cmd_id, kwargs_json, as_json


def _reader(names: list[str]) -> Any:
    """A line reader: prompt_toolkit (history, completion) on a terminal, else readline, else plain stdin."""
    if not sys.stdin.isatty():
        return lambda: sys.stdin.readline() or None
    try:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.completion import WordCompleter
        from prompt_toolkit.history import FileHistory

        session: Any = PromptSession(history=FileHistory(str(HISTORY)), completer=WordCompleter([*names, *EXITS]))

        def prompt_line() -> str | None:
            try:
                return str(session.prompt("townlet> "))
            except EOFError:
                return None

        return prompt_line
    except ImportError:
        pass
    import readline

    readline.set_completer(lambda text, i: ([n for n in names if n.startswith(text)] + [None])[i])
    readline.parse_and_bind("tab: complete")
    if HISTORY.exists():
        readline.read_history_file(HISTORY)

    def input_line() -> str | None:
        try:
            line = input("townlet> ")
        except EOFError:
            return None
        readline.write_history_file(HISTORY)
        return line

    return input_line


def interactive(client: Any, gate: Any, console: Console) -> int:
    """Read commands until EOF or `exit`; each error is one line and the session goes on. Mutating commands get a
    fresh cmd_id unless one is given (shown in the result, to retry with). The number of failed commands."""
    names = sorted(client.commands())
    console.print(
        f"connected to {escape(client.url)} (schema {gate.shard}); {len(names)} commands, 'help' lists them, "
        "'exit' leaves",
        highlight=False,
    )
    read = _reader(names)
    failed = 0
    while (line := read()) is not None:
        if not line.strip() or line.strip().startswith("#"):
            continue
        if line.strip() in EXITS:
            break
        try:
            name, words, cmd_id, kwargs_json, as_json = _split_line(line)
            if cmd_id is None and client.mutates(name):
                cmd_id = f"console-{uuid.uuid4().hex[:12]}"
            run_one(client, gate, name, words, cmd_id=cmd_id, kwargs_json=kwargs_json, as_json=as_json, console=console)
        except (TownletError, ValueError) as exc:
            failed += 1
            if isinstance(exc, TownletError):
                report(exc)
            else:
                stderr_line(f"error: {exc}")
    return failed


def console_cmd(
    url: Annotated[str, typer.Argument(help="The shard, e.g. http://127.0.0.1:8765.")],
    command: Annotated[str | None, typer.Argument(help="A command (see 'help'); none: interactive.")] = None,
    words: Annotated[list[str] | None, typer.Argument(help="Its arguments: positional, or key=value.")] = None,
    token: Annotated[str | None, typer.Option("--token", help="Bearer token (default: $TOWNLET_TOKEN).")] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="File holding the token (text, or JSON with one).")
    ] = None,
    label: Annotated[str | None, typer.Option("--label", help="With a tokens-list file: the entry to use.")] = None,
    cmd_id: Annotated[str | None, typer.Option("--cmd-id", help="Idempotency key (admin commands need one).")] = None,
    kwargs_json: Annotated[str | None, typer.Option("--kwargs", help="Keyword arguments as a JSON object.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result object as JSON.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the shard.")] = 60.0,
    client_schema: Annotated[str | None, typer.Option("--client-schema", hidden=True)] = None,
) -> None:
    """Talk to a live shard: one command, or an interactive session when no COMMAND is given."""
    try:
        from townlet.ops.client import ShardClient
    except ImportError as exc:
        raise UsageError(f"townlet console needs the ops extra: pip install 'townlet[ops]' ({exc})") from None

    client = ShardClient(url, _token(token, token_file, label), timeout=timeout)
    if client_schema is not None:
        client.client_schema = client_schema
    try:
        gate = client.gate()
        if gate.warning:
            stderr_line(f"warning: {gate.warning}")
        console = Console(highlight=False)
        if command is None:
            if cmd_id is not None or kwargs_json is not None or words:
                raise UsageError("--cmd-id, --kwargs and arguments need a COMMAND")
            failed = interactive(client, gate, console)
            if failed:
                raise typer.Exit(1)
            return
        run_one(
            client,
            gate,
            command,
            list(words or []),
            cmd_id=cmd_id,
            kwargs_json=kwargs_json,
            as_json=as_json,
            console=console,
        )
    finally:
        client.close()
