"""`Shard`: a live town behind the command bus. Commands are validated and authorised at once (refusals answer
immediately and are audited); accepted world commands are queued and applied between ticks in arrival order,
in one place (`_apply_queued`), and recorded in the journal; reads run at once under the world lock."""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from townlet.errors import UsageError
from townlet.ops import commands as _commands  # noqa: F401 - registers the commands
from townlet.ops.audit import DEFAULT_AUDIT_PATH, AuditLog, audit_record
from townlet.ops.auth import Principal, TokenStore
from townlet.ops.envelope import CommandEnvelope, CommandError, CommandResult, ErrorCode
from townlet.ops.registry import Args, Command, check_role, lookup, parse_args
from townlet.ops.snapshot import telemetry_snapshot
from townlet.ops.store import load_shard_snapshot
from townlet.ops.subscribe import Subscription
from townlet.ops.world import ShardWorld
from townlet.sim.config import TownConfig

_log = logging.getLogger("townlet.ops")


@dataclass
class _Pending:
    env: CommandEnvelope
    cmd: Command
    args: Args
    principal: Principal
    future: Future[CommandResult]
    t0: float


class Shard:
    def __init__(
        self,
        config: TownConfig,
        *,
        tokens: TokenStore,
        policy: str | None = None,
        audit_path: Path = DEFAULT_AUDIT_PATH,
        snapshot_root: Path = Path("snapshots"),
        allow_anonymous_viewer: bool = False,
    ) -> None:
        self.config = config
        self.tokens = tokens
        self.allow_anonymous_viewer = allow_anonymous_viewer or tokens.allow_anonymous_viewer
        self.world = ShardWorld(config, snapshot_root=Path(snapshot_root), policy=policy)
        self.audit = AuditLog(audit_path)
        self._world_lock = threading.RLock()
        self._q_lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._inflight: dict[str, tuple[str, Future[CommandResult]]] = {}
        self._running = False
        self._stop = threading.Event()
        self._subs: list[Subscription] = []
        self._tick_times: deque[float] = deque(maxlen=64)
        self.commands_applied = 0
        self._snapshot = telemetry_snapshot(self.world)
        self._snapshot_stale = False
        self._tick = self.world.tick

    @classmethod
    def from_snapshot(cls, path: str | Path, config: TownConfig, **kwargs: Any) -> Shard:
        """A shard continuing from a shard snapshot (`snapshot_save`): town, journal, cmd_id history, toggles, and the
        acting memory policy's memory when it is the checkpoint the snapshot kept it for (`world.memory_restored` says
        what became of it)."""
        town, state = load_shard_snapshot(Path(path), config)  # first: a refused file opens nothing
        shard = cls(config, **kwargs)
        with shard._world_lock:
            shard.world.load_state(town, state)
            shard._snapshot = telemetry_snapshot(shard.world)
            shard._tick = shard.world.tick
        return shard

    # -- properties ---------------------------------------------------------------------------------

    @property
    def tick(self) -> int:
        # The tick after the last step: read from any thread without touching the Town, which the ticking
        # thread holds during a step (reading it then raises "Already mutably borrowed").
        return self._tick

    @property
    def running(self) -> bool:
        return self._running

    # -- the bus --------------------------------------------------------------------------------------

    def submit(
        self, envelope: dict[str, Any] | CommandEnvelope, token: str | None, *, timeout: float | None = None
    ) -> CommandResult:
        t0 = time.perf_counter()
        try:
            env = envelope if isinstance(envelope, CommandEnvelope) else CommandEnvelope.model_validate(envelope)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "envelope"
            name = envelope.get("name") if isinstance(envelope, dict) else None
            return self._refuse(
                None, str(name)[:64] if name is not None else "", ErrorCode.usage, f"envelope: {key}: {err['msg']}", t0
            )
        try:
            principal = self._authenticate(token)
        except CommandError as exc:
            return self._refuse(env, env.name, exc.code, exc.message, t0)
        try:
            cmd = lookup(env.name)
            check_role(cmd, principal)
            if cmd.reserved:
                raise CommandError(ErrorCode.usage, f"{cmd.name} is reserved for the promotion work: not available yet")
            if cmd.role == "admin" and not env.cmd_id:
                raise CommandError(ErrorCode.usage, f"{cmd.name} is an admin command: give it a cmd_id")
            args = parse_args(cmd, env)
        except CommandError as exc:
            return self._refuse(env, env.name, exc.code, exc.message, t0, principal)
        pending = _Pending(env, cmd, args, principal, Future(), t0)
        with self._q_lock:
            if env.cmd_id is not None:
                stored = self.world.history.get(env.cmd_id)
                if stored is not None:
                    return self._replayed(env, principal, stored, t0)
                flying = self._inflight.get(env.cmd_id)
                if flying is not None and flying[0] != env.name:
                    return self._refuse(
                        env,
                        env.name,
                        ErrorCode.conflict,
                        f"cmd_id {env.cmd_id!r} is in use by {flying[0]}",
                        t0,
                        principal,
                    )
                same = flying[1] if flying is not None else None
                if same is not None:
                    pending.future = same
                else:
                    self._inflight[env.cmd_id] = (env.name, pending.future)
            else:
                same = None
            if same is None and cmd.mutates:
                self._queue.append(pending)
            running = self._running
        if same is not None:
            return self._wait(pending, timeout, replayed=True)
        if not cmd.mutates:
            with self._world_lock:
                self._finish([self._execute(pending)])
        elif not running:
            with self._world_lock:
                self._apply_queued()
        return self._wait(pending, timeout, replayed=False)

    def _authenticate(self, token: str | None) -> Principal:
        if not token and self.allow_anonymous_viewer:
            return Principal("viewer", "anonymous")
        return self.tokens.authenticate(token)

    def _wait(self, p: _Pending, timeout: float | None, *, replayed: bool) -> CommandResult:
        try:
            result = p.future.result(timeout=timeout)
        except FutureTimeout:
            return CommandResult.failure(
                p.env.name,
                ErrorCode.conflict,
                f"not applied within {timeout}s; it stays queued (resubmit with the same cmd_id for its result)",
                cmd_id=p.env.cmd_id,
                issuer=p.principal.label,
                tick=self.tick,
            )
        if replayed:
            self.audit.write(self._audit(p.env, p.principal, result, replayed=True))
        return result.model_copy(update={"latency_ms": round((time.perf_counter() - p.t0) * 1000, 3)})

    def _replayed(self, env: CommandEnvelope, principal: Principal, stored: dict[str, Any], t0: float) -> CommandResult:
        result = CommandResult.model_validate(stored)
        if result.name != env.name:
            return self._refuse(
                env, env.name, ErrorCode.conflict, f"cmd_id {env.cmd_id!r} was used for {result.name}", t0, principal
            )
        self.audit.write(self._audit(env, principal, result, replayed=True))
        return result.model_copy(update={"latency_ms": round((time.perf_counter() - t0) * 1000, 3)})

    def _refuse(
        self,
        env: CommandEnvelope | None,
        name: str,
        code: ErrorCode,
        message: str,
        t0: float,
        principal: Principal | None = None,
    ) -> CommandResult:
        result = CommandResult.failure(
            name,
            code,
            message,
            cmd_id=env.cmd_id if env else None,
            issuer=principal.label if principal else None,
            tick=self.tick,
        )
        result.latency_ms = round((time.perf_counter() - t0) * 1000, 3)
        self.audit.write(
            audit_record(
                cmd_id=result.cmd_id,
                issuer=result.issuer,
                role=principal.role if principal else None,
                name=name,
                args=list(env.args) if env else [],
                kwargs=dict(env.kwargs) if env else {},
                status="error",
                code=code.value,
                tick=result.tick,
            )
        )
        return result

    def _audit(
        self, env: CommandEnvelope, principal: Principal, result: CommandResult, *, replayed: bool = False
    ) -> dict[str, Any]:
        return audit_record(
            cmd_id=env.cmd_id,
            issuer=principal.label,
            role=principal.role,
            name=env.name,
            args=list(env.args),
            kwargs=dict(env.kwargs),
            status=result.status,
            code=result.error.code.value if result.error else None,
            tick=result.tick,
            replayed=replayed,
        )

    # -- applying (under the world lock) ---------------------------------------------------------------

    def _apply_queued(self) -> None:
        """Apply every queued command in arrival order: the one place world commands change the town."""
        with self._q_lock:
            batch, self._queue = self._queue, []
        if batch:
            self._finish([self._execute(p) for p in batch])
            self._snapshot_stale = True

    def _execute(self, p: _Pending) -> tuple[_Pending, CommandResult]:
        w = self.world
        tick, restores = w.tick, w.restores
        w.journal_note = {}
        try:
            value = p.cmd.handler(w, p.args)
            result = CommandResult(
                cmd_id=p.env.cmd_id, name=p.cmd.name, status="ok", result=value, issuer=p.principal.label, tick=tick
            )
            if p.cmd.mutates:
                # A command that restored a world (rollback_policy --to) leaves that world's journal as it was saved:
                # it is the history of the world now running.
                if w.restores == restores:
                    w.record_command(tick, p.cmd.name, p.args.model_dump(mode="json"), p.env.cmd_id, **w.journal_note)
                self.commands_applied += 1
        except CommandError as exc:
            result = CommandResult.failure(
                p.cmd.name, exc.code, exc.message, cmd_id=p.env.cmd_id, issuer=p.principal.label, tick=tick
            )
        except (ValueError, IndexError) as exc:  # the core refused the operation
            result = CommandResult.failure(
                p.cmd.name,
                ErrorCode.invalid_args,
                f"{p.cmd.name}: {exc}",
                cmd_id=p.env.cmd_id,
                issuer=p.principal.label,
                tick=tick,
            )
        except Exception as exc:
            _log.exception("command %s (cmd_id %s) failed inside its handler", p.cmd.name, p.env.cmd_id)
            result = CommandResult.failure(
                p.cmd.name,
                ErrorCode.internal,
                f"{p.cmd.name}: internal error ({type(exc).__name__})",
                cmd_id=p.env.cmd_id,
                issuer=p.principal.label,
                tick=tick,
            )
        return p, result

    def _finish(self, done: list[tuple[_Pending, CommandResult]]) -> None:
        self.audit.write(*(self._audit(p.env, p.principal, r) for p, r in done))
        with self._q_lock:
            for p, r in done:
                if p.env.cmd_id is not None:
                    self.world.remember(p.env.cmd_id, r.model_dump(mode="json"))
                    self._inflight.pop(p.env.cmd_id, None)
        for p, r in done:
            p.future.set_result(r)

    # -- ticking ----------------------------------------------------------------------------------------

    def step(self) -> None:
        """Apply the queued commands, tick once, publish the snapshot to subscribers."""
        with self._world_lock:
            self._apply_queued()
            self.world.step()
            self._tick = self.world.tick
            with self._q_lock:
                subs = list(self._subs)
            # Built when someone reads it: each tick for subscribers, else on the next `snapshot()`.
            if subs:
                snap = telemetry_snapshot(self.world)
                self._snapshot, self._snapshot_stale = snap, False
            else:
                snap, self._snapshot_stale = self._snapshot, True
            tick = self.world.tick
        self._tick_times.append(time.monotonic())
        for sub in subs:
            if not sub.offer(tick, snap):
                with self._q_lock:
                    if sub in self._subs:
                        self._subs.remove(sub)

    def run(
        self, *, tick_limit: int | None = None, tick_rate: float | None = None, stop: threading.Event | None = None
    ) -> None:
        """Tick until `tick_limit` ticks have run, `stop` is set or `close()`; at most `tick_rate` ticks a second."""
        if tick_rate is not None and tick_rate <= 0:
            raise UsageError(f"tick rate must be > 0, got {tick_rate}")
        with self._q_lock:
            if self._running:
                raise UsageError("the shard is already running")
            self._running = True
            self._stop.clear()
        stop_event = stop or self._stop
        try:
            done = 0
            next_at = time.monotonic()
            while (tick_limit is None or done < tick_limit) and not stop_event.is_set() and not self._stop.is_set():
                self.step()
                done += 1
                if tick_rate is not None:
                    next_at += 1.0 / tick_rate
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        stop_event.wait(delay)
                    else:
                        next_at = time.monotonic()
        finally:
            with self._q_lock:
                self._running = False
            with self._world_lock:
                self._apply_queued()

    def stop(self) -> None:
        self._stop.set()

    def prepare_serving(self) -> dict[str, bool]:
        """Before the first served tick: the promotion manager (and so the stability monitor and autosave) is
        attached now, not on the first policy command; torch is imported now when a checkpoint may act (a
        checkpoint policy, or an admin who may give policy commands), not mid-run, where its import (seconds)
        stalls the ticks. What was prepared."""
        from townlet.ops.promotion import current, manager_for

        with self._world_lock:
            attached = current(self.world) is None
            manager_for(self.world)
            self._snapshot_stale = True
        torch_ready = self.world.policy_path is not None or self.tokens.has_role("admin")
        if torch_ready:
            import townlet.training.evaluate  # noqa: F401 - torch and the checkpoint reader, loaded once

        return {"promotion_attached": attached, "torch_imported": torch_ready}

    # -- reading ----------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self._world_lock:
            if self._snapshot_stale:
                self._snapshot, self._snapshot_stale = telemetry_snapshot(self.world), False
            return copy.deepcopy(self._snapshot)

    def subscribe(self, maxsize: int = 64) -> Subscription:
        sub = Subscription(maxsize)
        with self._q_lock:
            self._subs.append(sub)
        return sub

    def world_hash(self) -> str:
        with self._world_lock:
            return str(self.world.town.world_hash())

    def metrics(self) -> dict[str, float]:
        with self._world_lock:
            kpis = self.world.town.kpis()
            alive = int(self.world.town.alive().sum())
            tick = self.world.tick
            clips = self.world.reward_clip_events
        times = list(self._tick_times)
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) >= 2 and times[-1] > times[0] else 0.0
        with self._q_lock:
            queued, subs = len(self._queue), len(self._subs)
        out = {
            "tick": float(tick),
            "ticks_per_sec": rate,
            "agents": float(alive),
            "commands_applied": float(self.commands_applied),
            "commands_queued": float(queued),
            "subscribers": float(subs),
            "reward_clip_events_total": float(clips),
        }
        out.update({f"kpi_{k}": float(v) for k, v in kpis.items()})
        return out

    def close(self) -> None:
        self.stop()
        with self._q_lock:
            subs, self._subs = self._subs, []
        for sub in subs:
            sub.close("the shard closed")
        self.audit.close()
