"""Serve a shard over HTTP: uvicorn on loopback, the shard ticking in its own thread.

`serve(shard, host, port, ...)` binds first (port 0 picks a free port), calls `on_listening(url)` once the server
accepts connections, and returns after SIGINT/SIGTERM, a `stop` event, or the end of `tick_limit` ticks: the server
stops taking requests, the shard finishes its tick and its thread is joined. An error in the shard's thread is
raised again here after the server has stopped. Before it listens, `shard.prepare_serving()` attaches the
promotion manager and imports torch when a checkpoint may act (no stall at the first policy command).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from townlet.errors import UsageError
from townlet.ops.http import CLOSE_TIMEOUT, create_app
from townlet.ops.stream import StreamHub

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: Kernel send buffer of every connection (accepted sockets inherit the listener's): what a client that stops
#: reading can hold up in the kernel is bounded, so the stream notices it and drops it instead of buffering more.
SEND_BUFFER = 64 * 1024


def parse_listen(text: str, option: str = "--serve") -> tuple[str, int]:
    """`HOST:PORT` (or `:PORT`, or `PORT`) -> (host, port); host defaults to loopback."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    host = host.strip("[]") or DEFAULT_HOST
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"{option} {text!r}: expected HOST:PORT with a port 0-65535")
    return host, int(port_text)


@dataclass
class ServeResult:
    url: str
    ticks: int
    reason: str


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (ours stops the shard too) and with a listening callback."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None], hub: StreamHub) -> None:
        super().__init__(config)
        self._on_started = on_started
        self._hub = hub

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Stream clients were told to go (`close_all`); let their handlers send the close frames. A client that
        # stopped reading keeps its connection open (its close frame cannot leave): abort those instead of waiting
        # out the graceful timeout. Connections that read have nothing left to send by now.
        await self._hub.wait_idle(CLOSE_TIMEOUT + 0.5)
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if isinstance(connection, WebSocketsSansIOProtocol) and transport and transport.get_write_buffer_size():
                transport.abort()
        await super().shutdown(sockets=sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_started()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, so asyncio sets TCP_NODELAY on each accepted connection (it skips sockets of protocol 0);
    # without it a keep-alive client waits out a delayed ACK (~40 ms) on every response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"--serve {host}:{port}: cannot listen: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def serve(
    shard: Any,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    tick_limit: int | None = None,
    tick_rate: float | None = None,
    on_listening: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
    app_options: dict[str, Any] | None = None,
) -> ServeResult:
    """Run the shard and its HTTP API until a signal, `stop`, or `tick_limit` ticks (see the module docstring)."""
    sock = _bind(host, port)
    prepare = getattr(shard, "prepare_serving", None)
    if callable(prepare):
        try:
            prepare()
        except BaseException:
            sock.close()
            raise
    bound_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{bound_port}"
    app = create_app(shard, **(app_options or {}))
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", ws="websockets-sansio", timeout_graceful_shutdown=5
    )
    shard_stop = threading.Event()
    reason = ["stopped"]
    failure: list[BaseException] = []
    server = _Server(config, on_started=lambda: on_listening(url) if on_listening else None, hub=app.state.hub)

    def request_exit(why: str) -> None:
        if not server.should_exit:
            reason[0] = why
            app.state.hub.close_all("the shard is stopping")
        server.should_exit = True
        shard_stop.set()

    def run_shard() -> None:
        try:
            shard.run(tick_limit=tick_limit, tick_rate=tick_rate, stop=shard_stop)
        except BaseException as exc:
            failure.append(exc)
            request_exit("shard failed")
            return
        request_exit("tick limit reached" if not shard_stop.is_set() else reason[0])

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        request_exit(signal.Signals(signum).name)

    def watch_stop() -> None:
        assert stop is not None
        while not stop.wait(0.2):
            if server.should_exit:
                return
        request_exit("stopped")

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for sig in previous:
            signal.signal(sig, on_signal)
    ticker = threading.Thread(target=run_shard, name="townlet-shard", daemon=True)
    watcher = threading.Thread(target=watch_stop, name="townlet-stop", daemon=True) if stop is not None else None
    try:
        ticker.start()
        if watcher is not None:
            watcher.start()
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        request_exit(reason[0])
        ticker.join()
        sock.close()
        if in_main:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if failure:
        raise failure[0]
    return ServeResult(url=url, ticks=int(shard.tick), reason=reason[0])
