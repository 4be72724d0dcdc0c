"""The HTTP API over a `Shard`: `create_app(shard)` -> a FastAPI app.

- `POST /v1/commands`: `Authorization: Bearer TOKEN`, the command envelope as the JSON body -> the command result;
  the HTTP status follows the result's error code (`STATUS`).
- `GET /v1/snapshot`: the `telemetry_snapshot` result (a viewer token, or none when anonymous viewers are allowed).
- `GET /v1/health`: liveness, the tick and the snapshot schema version (no token).
- `GET /metrics`: Prometheus text (tick, ticks/s, agents, KPIs, stream counters; no token).
- `WS /v1/stream`: a snapshot, then a diff per tick (`townlet.ops.stream`); the token as a bearer header or `?token=`.
- `/docs`, `/openapi.json`: the OpenAPI description.
- `GET /`: the web dashboard (static files of `townlet/ui/web`, docs/dashboard.md; no token to load it).

Everything a client can get wrong (a body that is not JSON, too large, not an object; a missing or malformed
`Authorization` header) is answered here with a result-shaped error; everything else is the shard's to judge.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request, WebSocket
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.websockets import WebSocketDisconnect

from townlet.jsonio import loads_strict
from townlet.ops.envelope import CommandEnvelope, CommandResult, ErrorCode
from townlet.ops.snapshot import SCHEMA_VERSION
from townlet.ops.snapshot_schema import TelemetrySnapshot
from townlet.ops.stream import GOING_AWAY, StreamClient, StreamHub

#: The web dashboard's static files (read as files, not imported), served at `/`.
DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "ui" / "web"
#: The largest command body accepted, checked before parsing.
MAX_BODY = 64 * 1024
#: Seconds a command may wait for the tick that applies it.
COMMAND_TIMEOUT = 30.0
#: Seconds a stream client is given to take its close frame when the server stops (a slow consumer: SEND_TIMEOUT).
CLOSE_TIMEOUT = 1.0
#: Seconds one stream message may take to leave before the client counts as gone.
SEND_TIMEOUT = 10.0

STATUS: dict[str, int] = {
    "usage": 400,
    "invalid_args": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "internal": 500,
}
TOO_LARGE = 413

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": CommandResult, "description": desc}
    for code, desc in (
        (400, "usage or invalid_args: a malformed body, an unknown command, bad arguments"),
        (401, "unauthorized: no token, or an unknown one"),
        (403, "forbidden: the token's role may not run the command (or an admin command without a cmd_id)"),
        (404, "not_found: the agent or object named does not exist"),
        (409, "conflict: the command cannot apply to the world as it is"),
        (413, "usage: the body is larger than the limit"),
    )
}


class Health(BaseModel):
    status: str
    tick: int
    schema_version: str
    stream_clients: int


REF = "#/components/schemas/{model}"


def envelope_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The request body's JSON schema: one branch per registered command (its name, its keyword arguments as the
    command's model, the positional form of them); and the component schemas it names."""
    from townlet.ops.registry import REGISTRY

    components: dict[str, Any] = {}
    base = CommandEnvelope.model_json_schema(ref_template=REF)
    components.update(base.pop("$defs", {}))
    branches: list[dict[str, Any]] = []
    for name, cmd in sorted(REGISTRY.items()):
        if cmd.reserved:
            continue
        kwargs = cmd.model.model_json_schema(ref_template=REF)
        components.update(kwargs.pop("$defs", {}))
        props = dict(base["properties"])
        positional = {
            "type": "array",
            "maxItems": len(cmd.positional),
            "description": f"the same arguments by position: {', '.join(cmd.positional) or 'none'}",
        }
        props.update({"name": {"type": "string", "const": name}, "args": positional})
        props["kwargs"] = kwargs
        branches.append(
            {
                "title": f"{name} ({cmd.role})",
                "description": cmd.summary,
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": props,
            }
        )
    return {"anyOf": branches}, components


def _status(result: CommandResult) -> int:
    if result.status == "ok" or result.error is None:
        return 200
    return STATUS.get(ErrorCode(result.error.code).value, 500)


def _error(shard: Any, code: ErrorCode, message: str, *, http: int | None = None, name: str = "") -> JSONResponse:
    result = CommandResult.failure(name, code, message, cmd_id=None, issuer=None, tick=int(shard.tick))
    headers = {"WWW-Authenticate": "Bearer"} if code is ErrorCode.unauthorized else None
    return JSONResponse(result.model_dump(mode="json"), status_code=http or STATUS[code.value], headers=headers)


class BadAuthorization(ValueError):
    pass


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header; None without a header."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise BadAuthorization("the Authorization header must be 'Bearer TOKEN'")
    return token.strip()


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than `limit` (told by Content-Length or found while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def unpaired_surrogate(value: Any, path: str = "body") -> str | None:
    """Where `value` holds a string with an unpaired surrogate (`\\ud800` escapes are valid JSON but not text)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            where = unpaired_surrogate(key, f"{path} key") or unpaired_surrogate(item, f"{path}.{key!a}")
            if where is not None:
                return where
    elif isinstance(value, list):
        for i, item in enumerate(value):
            where = unpaired_surrogate(item, f"{path}[{i}]")
            if where is not None:
                return where
    return None


def _metric_name(key: str) -> str:
    return "townlet_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


def metrics_text(shard: Any, hub: StreamHub) -> str:
    """`GET /metrics`: the shard's metrics and the stream's (clients, dropped clients, the payloads they lost,
    resyncs after the shard dropped the stream's subscription, messages sent)."""
    metrics = dict(shard.metrics())
    metrics["stream_clients"] = hub.clients
    metrics["stream_dropped_total"] = hub.dropped_total
    metrics["stream_payloads_dropped_total"] = hub.payloads_dropped_total
    metrics["stream_resyncs_total"] = hub.resyncs_total
    metrics["stream_messages_total"] = hub.messages_total
    return prometheus_text(metrics)


def prometheus_text(metrics: dict[str, float]) -> str:
    lines: list[str] = []
    for key, value in metrics.items():
        name = _metric_name(key)
        kind = "counter" if name.endswith("_total") else "gauge"
        lines += [f"# TYPE {name} {kind}", f"{name} {float(value)!r}"]
    return "\n".join(lines) + "\n"


def create_app(
    shard: Any,
    *,
    max_body: int = MAX_BODY,
    command_timeout: float = COMMAND_TIMEOUT,
    client_queue: int | None = None,
    max_inflight: int = 128,
) -> FastAPI:
    """The API over `shard` (a `townlet.ops.shard.Shard`, ticking in its own thread or stopped)."""
    hub = StreamHub(shard) if client_queue is None else StreamHub(shard, client_queue=client_queue)
    limiter = anyio.CapacityLimiter(max_inflight)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        hub.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            hub.stop()

    app = FastAPI(
        title="Townlet shard",
        version=SCHEMA_VERSION,
        description="Operator API of a live Townlet shard: the command bus, snapshots, metrics and a live stream.",
        lifespan=lifespan,
    )
    app.state.hub = hub
    body_schema, body_components = envelope_schema()

    async def submit(envelope: dict[str, Any], token: str | None) -> CommandResult:
        call = partial(shard.submit, envelope, token, timeout=command_timeout)
        result: CommandResult = await anyio.to_thread.run_sync(call, limiter=limiter)
        return result

    @app.post(
        "/v1/commands",
        response_model=CommandResult,
        responses=_ERRORS,
        summary="Run one command",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}}},
    )
    async def post_command(request: Request) -> JSONResponse:
        try:
            token = bearer_token(request.headers.get("authorization"))
        except BadAuthorization as exc:
            return _error(shard, ErrorCode.unauthorized, str(exc))
        raw = await _read_body(request, max_body)
        if raw is None:
            return _error(shard, ErrorCode.usage, f"request body larger than {max_body} bytes", http=TOO_LARGE)
        try:
            body = loads_strict(raw, finite=True)
        except ValueError as exc:
            return _error(shard, ErrorCode.usage, f"request body is not valid JSON: {exc}")
        if not isinstance(body, dict):
            return _error(shard, ErrorCode.usage, "request body must be a JSON object (the command envelope)")
        bad = unpaired_surrogate(body)
        if bad is not None:
            return _error(shard, ErrorCode.usage, f"request body is not valid Unicode: an unpaired surrogate in {bad}")
        result = await submit(body, token)
        return JSONResponse(result.model_dump(mode="json"), status_code=_status(result))

    @app.get(
        "/v1/snapshot",
        responses={200: {"model": TelemetrySnapshot, "description": "the telemetry_snapshot result"}, **_ERRORS},
        summary="The latest telemetry_snapshot",
    )
    async def get_snapshot(request: Request) -> JSONResponse:
        try:
            token = bearer_token(request.headers.get("authorization"))
        except BadAuthorization as exc:
            return _error(shard, ErrorCode.unauthorized, str(exc), name="telemetry_snapshot")
        result = await submit({"name": "telemetry_snapshot"}, token)
        if result.status != "ok":
            return JSONResponse(result.model_dump(mode="json"), status_code=_status(result))
        return JSONResponse(result.result)

    @app.get("/v1/health", response_model=Health, summary="Liveness, tick and schema version")
    async def get_health() -> Health:
        return Health(status="ok", tick=int(shard.tick), schema_version=SCHEMA_VERSION, stream_clients=hub.clients)

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def get_metrics() -> PlainTextResponse:
        return PlainTextResponse(metrics_text(shard, hub), media_type="text/plain; version=0.0.4")

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        try:
            token = bearer_token(ws.headers.get("authorization")) or ws.query_params.get("token")
        except BadAuthorization as exc:
            await ws.close(code=4401, reason=str(exc))
            return
        check = await submit({"name": "telemetry_snapshot"}, token)
        if check.status != "ok" or check.error is not None:
            code = 4000 + _status(check)
            await ws.close(code=code, reason=(check.error.message if check.error else "refused")[:120])
            return
        client, first = hub.join()
        hub.serving += 1
        try:
            await _serve_client(ws, client, first, hub)
        finally:
            hub.leave(client)
            hub.serving -= 1

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            spec.setdefault("components", {}).setdefault("schemas", {}).update(body_components)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    if DASHBOARD_DIR.is_dir():  # last: every API route above matches first
        app.mount("/", StaticFiles(directory=DASHBOARD_DIR, html=True), name="dashboard")
    return app


async def _send_loop(ws: WebSocket, client: StreamClient, first: str) -> None:
    # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation that arrives as the send
    # completes, and this loop would then wait on an empty queue for ever.
    text = first
    while not client.gone.is_set():
        async with asyncio.timeout(SEND_TIMEOUT):
            await ws.send_text(text)
        text = await client.queue.get()


async def _receive_loop(ws: WebSocket) -> None:
    """Reads (and ignores) what the client sends, to notice when it goes."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await ws.receive_text()


async def _serve_client(ws: WebSocket, client: StreamClient, first: str, hub: StreamHub) -> None:
    tasks = [
        asyncio.create_task(_send_loop(ws, client, first)),
        asyncio.create_task(_receive_loop(ws)),
        asyncio.create_task(client.gone.wait()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)  # bounded: a task that ignores its cancellation is left
    sender = tasks[0]
    timed_out = sender.done() and not sender.cancelled() and isinstance(sender.exception(), TimeoutError)
    if client.dropped is None and timed_out:
        client.dropped = f"slow consumer: a message took over {SEND_TIMEOUT:g}s to send, dropped"
        hub.dropped_total += 1
        hub.payloads_dropped_total += 1 + client.queue.qsize()
    if client.dropped is not None:
        with contextlib.suppress(Exception):
            wait = CLOSE_TIMEOUT if client.close_code == GOING_AWAY else SEND_TIMEOUT
            async with asyncio.timeout(wait):
                await ws.close(code=client.close_code, reason=client.dropped[:120])
