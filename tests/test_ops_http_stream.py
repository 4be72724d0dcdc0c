"""WS /v1/stream against a real shard: a snapshot, then one diff per tick; a client that never reads is dropped with
a close reason while the shard and the other clients carry on."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from ops_shard import ADMIN, VIEWER, Served, no_proxy, start_shard
from townlet.ops.stream import apply_diff, diff

no_proxy()


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = start_shard(tmp_path_factory.mktemp("stream"), tick_rate=50)
    yield served
    code, err = served.stop()
    assert code == 0, err


def _ws_url(shard: Served, token: str | None = VIEWER) -> str:
    base = shard.url.replace("http://", "ws://") + "/v1/stream"
    return f"{base}?token={token}" if token else base


def test_diff_and_apply_round_trip() -> None:
    old = {"tick": 1, "agents": {"a": {"needs": [0.5], "x/y": 1}, "b": {}}, "gone": True}
    new = {"tick": 2, "agents": {"a": {"needs": [0.4], "x/y": 1}, "c": {"k": None}}, "added": {"z": 1}}
    ops = diff(old, new)
    assert apply_diff(old, ops) == new
    assert diff(new, new) == []
    assert {"op": "remove", "path": "/gone"} in ops


def test_the_stream_sends_a_snapshot_then_diffs(shard: Served) -> None:
    async def run() -> list[dict[str, Any]]:
        async with websockets.connect(_ws_url(shard), max_size=None) as ws:
            return [json.loads(await ws.recv()) for _ in range(6)]

    messages = asyncio.run(run())
    first, diffs = messages[0], messages[1:]
    assert first["type"] == "snapshot" and first["data"]["schema_version"] == "1.1.0"
    doc, tick = first["data"], first["tick"]
    for msg in diffs:
        assert msg["type"] == "diff", msg
        assert msg["from"] == tick and msg["tick"] == tick + 1, (msg["from"], msg["tick"], tick)
        doc = apply_diff(doc, msg["ops"])
        tick = msg["tick"]
        assert doc["tick"] == tick


def test_a_command_shows_in_the_stream(shard: Served) -> None:
    """setneed, then the stream's snapshot of the very next tick shows it (hygiene raised to 1 can only decay)."""

    async def run() -> tuple[float, float]:
        async with websockets.connect(_ws_url(shard), max_size=None) as ws:
            doc = json.loads(await ws.recv())["data"]
            who = min(doc["agents"], key=lambda a: doc["agents"][a]["needs"]["hygiene"])
            before = doc["agents"][who]["needs"]["hygiene"]
            env = {"name": "setneed", "cmd_id": "stream-1", "kwargs": {"agent_id": who, "needs": {"hygiene": 1.0}}}
            res = await asyncio.to_thread(shard.post, env, ADMIN)
            assert res.status_code == 200, res.text
            applied = res.json()["tick"]
            while doc["tick"] <= applied:
                msg = json.loads(await ws.recv())
                doc = apply_diff(doc, msg["ops"]) if msg["type"] == "diff" else msg["data"]
            assert doc["tick"] == applied + 1
            return before, float(doc["agents"][who]["needs"]["hygiene"])

    before, after = asyncio.run(run())
    assert before < 0.95 and after >= 0.99, (before, after)


def test_the_stream_refuses_an_unknown_token(shard: Served) -> None:
    async def run() -> ConnectionClosed:
        async with websockets.connect(_ws_url(shard, "wrong-token-xyz")) as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value

    closed = asyncio.run(run())
    assert closed.rcvd is not None and closed.rcvd.code == 4401, closed
    assert "token" in closed.rcvd.reason


def _raw_stream_client(shard: Served) -> socket.socket:
    """A WebSocket client at the socket level that never reads: a small receive window, the handshake sent, and
    nothing read until the test says so."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window it offers
    sock.connect(("127.0.0.1", int(shard.url.rsplit(":", 1)[1])))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /v1/stream?token={VIEWER} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    return sock


def _close_frame(sock: socket.socket) -> tuple[int, str]:
    """Read everything the server sent (the handshake, the buffered messages) up to its close frame: (code, reason)."""
    sock.settimeout(60)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    buf = data.split(b"\r\n\r\n", 1)[1]

    def need(n: int) -> bytes:
        nonlocal buf
        while len(buf) < n:
            chunk = sock.recv(65536)
            assert chunk, "the connection ended without a close frame"
            buf += chunk
        out, buf = buf[:n], buf[n:]
        return out

    while True:
        head = need(2)
        opcode, size = head[0] & 0x0F, head[1] & 0x7F
        if size == 126:
            size = struct.unpack("!H", need(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", need(8))[0]
        payload = need(size)
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


def test_a_client_that_never_reads_is_dropped_and_stalls_nothing(shard: Served) -> None:
    dropped_before = shard.metrics()["townlet_stream_dropped_total"]
    slow = _raw_stream_client(shard)

    async def read_until_dropped() -> int:
        async with websockets.connect(_ws_url(shard), max_size=None) as reader:
            received = 0
            while True:
                msg = json.loads(await asyncio.wait_for(reader.recv(), 30))  # this client keeps getting ticks
                received += 1
                if received % 10 == 0 and shard.metrics()["townlet_stream_dropped_total"] > dropped_before:
                    return int(msg["tick"])
                assert received < 20_000, "the slow client was never dropped"

    try:
        tick_at_drop = asyncio.run(read_until_dropped())
        code, reason = _close_frame(slow)
    finally:
        slow.close()
    assert code == 1008 and "slow consumer" in reason, (code, reason)
    assert shard.wait_ticks(3) > tick_at_drop  # the shard never stalled


def test_the_demo_checklist_seen_in_the_stream(shard: Served) -> None:
    """Seed 003's demo checklist over HTTP, each command verified in the snapshot of the tick after it applied."""

    async def run() -> None:
        async with websockets.connect(_ws_url(shard), max_size=None) as ws:
            doc = json.loads(await ws.recv())["data"]

            async def send(name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
                nonlocal doc
                env = {"name": name, "cmd_id": f"demo-{name}-{doc['tick']}", "args": list(args), "kwargs": kwargs}
                res = await asyncio.to_thread(shard.post, env, ADMIN)
                assert res.status_code == 200, res.text
                applied = res.json()["tick"]
                while doc["tick"] <= applied:  # the snapshot published after the tick that applied it
                    msg = json.loads(await ws.recv())
                    doc = apply_diff(doc, msg["ops"]) if msg["type"] == "diff" else msg["data"]
                result: dict[str, Any] = res.json()["result"]
                return result

            assert (await send("employment_exit", "approve", "alice"))["agent_id"] == "alice"
            assert not doc["agents"]["alice"]["alive"]  # the exit happened on the next tick
            assert any(e["event"] == "employment_exit_manual_request" for e in doc["events"])

            await send("kill", "bob")
            assert not doc["agents"]["bob"]["alive"]
            spawned = await send("spawn", "bob", 3, 3)
            assert doc["agents"][spawned["agent_id"]]["alive"]

            chats = doc["kpis"]["chat_success"]
            await send("force_chat", "cara", "dan", 0.9)
            assert doc["kpis"]["chat_success"] >= chats + 1

            meet = (await send("arrange_meet", "eve", "hugo", 3, 3))["positions"]
            assert meet["eve"] == [3, 3]
            assert max(abs(a - b) for a, b in zip(meet["eve"], meet["hugo"], strict=True)) == 1
            for name in ("eve", "hugo"):  # there in the world (a tick later, at most one step away)
                seen = doc["agents"][name]["position"]
                assert max(abs(a - b) for a, b in zip(seen, meet[name], strict=True)) <= 1, (name, seen, meet)

    asyncio.run(run())


def test_the_stream_holds_a_subscription_only_while_clients_are_connected(shard: Served) -> None:
    shard.wait_for("no subscription", lambda: shard.metrics()["townlet_subscribers"] == 0)

    async def run() -> float:
        async with websockets.connect(_ws_url(shard), max_size=None) as ws:
            await ws.recv()
            return shard.metrics()["townlet_subscribers"]

    assert asyncio.run(run()) == 1
    shard.wait_for("the subscription released", lambda: shard.metrics()["townlet_subscribers"] == 0)


def test_sigterm_closes_stream_clients_and_stops_cleanly(tmp_path: Path) -> None:
    """Stopping with a reading client and one that never reads: the reader is told why (1001), the stalled one is
    cut off, and the shard exits 0 without running into uvicorn's graceful-shutdown timeout."""
    served = start_shard(tmp_path, tick_rate=50)
    stalled = _raw_stream_client(served)

    async def run() -> ConnectionClosed:
        async with websockets.connect(_ws_url(served), max_size=None) as ws:
            await ws.recv()
            served.proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), 60)
            return info.value

    try:
        closed = asyncio.run(run())
        code, err = served.stop()
    finally:
        stalled.close()
    assert closed.rcvd is not None and closed.rcvd.code == 1001, closed
    assert "stopping" in closed.rcvd.reason
    assert code == 0, err
    assert "graceful shutdown exceeded" not in err and "Traceback" not in err, err
    assert "stopped at tick" in err and "SIGTERM" in err, err
