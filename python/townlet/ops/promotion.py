"""Release and shadow policies that really swap (docs/promotion.md).

A `PromotionManager` rides on a `ShardWorld` (`attach`; `manager_for` attaches one with the config's
`ops.promotion` / `ops.stability` on first use). It listens to every tick: the stability monitor tracks the tick,
the shadow policy (a candidate from the shadow folder) acts on the same observations as the release (its actions
are logged, never applied), and during the canary windows after a promotion a breach rolls back at once.

Promotion (`promote`) runs the pre-flight (config id, observation variant, action space, architecture of the
candidate against the release) and, unless it is a `policy_swap`, the readiness check (the monitor's
`candidate_ready`), keeps a snapshot of the world under `snapshots/release/<tick>.json` (with the release it ran,
`<tick>.policy.json`), installs the candidate in the release folder and makes it the acting policy. It runs
between ticks (a command handler or a tick listener), so the swap lands on a tick boundary. `rollback` restores the
previous release (or the release and world of a kept snapshot). Every event goes to `logs/promotion_history.jsonl`
and `ops/rollouts.md`.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from townlet.errors import UsageError
from townlet.jsonio import read_json, write_json
from townlet.ops import policy_memory
from townlet.ops.autosave import Autosave
from townlet.ops.envelope import CommandError, ErrorCode
from townlet.ops.monitor import Alert, StabilityMonitor, sample_of
from townlet.ops.promotion_log import record
from townlet.ops.promotion_policy import (
    MaskedView,
    PolicyRef,
    expert_ref,
    install_release,
    load_candidate,
    preflight,
)
from townlet.ops.store import confine, load_shard_snapshot, save_shard_snapshot
from townlet.ops.world import ShardWorld, TickRecord
from townlet.sim.settings_ops import OpsSection

_MANAGERS: weakref.WeakKeyDictionary[ShardWorld, PromotionManager] = weakref.WeakKeyDictionary()


class PromotionManager:
    def __init__(self, world: ShardWorld, settings: OpsSection | None = None, *, root: Path | None = None) -> None:
        self.world = world
        self.settings = settings or world.config.sections.ops
        p = self.settings.promotion
        #: Relative paths of `ops.promotion` are under `root` (default: the folder holding the snapshot root).
        self.root = Path(root) if root is not None else world.snapshot_root.parent
        self.release_dir = self.root / p.release_dir
        self.shadow_dir = self.root / p.shadow_dir
        self.history_path = self.root / p.history_path
        self.rollouts_path = self.root / p.rollouts_path
        self.monitor = StabilityMonitor(self.settings.stability)
        self.release: PolicyRef = expert_ref(world.config)
        if world.policy_path is not None and world.actor is not None:
            self.release, _ = load_candidate(Path(world.policy_path), world.config)
        #: Earlier releases, the latest last: (reference, actor) as `rollback` restores them.
        self.previous: list[tuple[PolicyRef, Any]] = []
        self.shadow: PolicyRef | None = None
        self._shadow_actor: Any = None
        self._shadow_view: MaskedView | None = None
        self.shadow_ticks = 0
        self.shadow_agree = 0
        self.shadow_actions = 0
        self._shadow_log: IO[str] | None = None
        #: What identifies the shadow's files on disk (path, size, mtime of each), so promoting it skips a reload.
        self._shadow_stamp: tuple[Any, ...] | None = None
        self._last_stamp: tuple[Any, ...] | None = None
        self.state = "monitoring"
        self.canary_until: int | None = None
        self.last_event: dict[str, Any] | None = None
        self.events = 0
        world.tick_listeners.append(self._on_tick)
        world.memories["shadow"] = lambda: self._shadow_actor  # a snapshot keeps the shadow's memory too
        self.autosave = Autosave(self.settings.snapshots)

    # -- the tick ------------------------------------------------------------------------------------

    def _on_tick(self, world: ShardWorld, rec: TickRecord) -> None:
        if world.replaying:  # a replay: the journal holds every policy change, rollbacks included
            return
        self.autosave(world, rec)
        alerts = self.monitor.track(sample_of(world, rec))
        if self._shadow_actor is not None and rec.obs is not None and rec.masks is not None:
            self._shadow_step(rec)
        if self.state == "monitoring" and self.shadow is not None and self.monitor.candidate_ready:
            self.state = "ready"
        if self.canary_until is not None:
            if rec.tick >= self.canary_until:
                self.canary_until = None
            else:
                breach = self._breach(alerts)
                if breach is not None and self.settings.promotion.auto_rollback:
                    reason = f"canary breach: {breach.name}"
                    self.rollback(reason=reason, alert=breach, event_tick=world.tick)
                    # Journalled like an operator's rollback_policy (before the next tick runs), so a replay of the
                    # journal swaps back at the same tick.
                    world.record_command(world.tick, "rollback_policy", {"to": None, "reason": reason}, None, auto=True)

    def _breach(self, alerts: list[Alert]) -> Alert | None:
        wanted = self.settings.promotion.canary_alerts
        for a in self.monitor.disallowed(alerts):
            if wanted is None or a.name in wanted:
                return a
        return None

    def _shadow_step(self, rec: TickRecord) -> None:
        assert rec.obs is not None and rec.masks is not None
        view = self._shadow_view
        assert view is not None
        view.masks = rec.masks
        shadow = np.asarray(self._shadow_actor(view, rec.obs), dtype=np.int64)
        agree = int((shadow == rec.actions).sum())
        self.shadow_ticks += 1
        self.shadow_agree += agree
        self.shadow_actions += len(shadow)
        if self._shadow_log is not None:
            line = {"tick": rec.tick, "release": rec.actions.tolist(), "shadow": shadow.tolist(), "agree": agree}
            self._shadow_log.write(json.dumps(line, separators=(",", ":")) + "\n")
            self._shadow_log.flush()  # a served shard may stop at any tick

    # -- shadow ------------------------------------------------------------------------------------

    def load_shadow(self, path: str | Path) -> dict[str, Any]:
        """Evaluate the checkpoint `path` beside the release from the next tick on (its actions logged, not applied);
        its promotion windows start again."""
        if self.world.replaying:  # the shadow never changes the world: a replay skips it
            return {"shadow": None, "tick": self.world.tick}
        ref, actor = self._candidate(path)
        self.shadow, self._shadow_actor, self._shadow_stamp = ref, actor, self._last_stamp
        self._shadow_view = MaskedView(np.zeros(0, bool), self.world_spec())
        self.shadow_ticks = self.shadow_agree = self.shadow_actions = 0
        self.world.observe_each_tick = True
        log = self.settings.promotion.shadow_log
        if log is not None and self._shadow_log is None:
            target = self.root / log
            target.parent.mkdir(parents=True, exist_ok=True)
            self._shadow_log = open(target, "a", encoding="utf-8")  # noqa: SIM115 - open while the shard serves
        self.monitor.reset_streak()
        self.state = "monitoring"
        return {"shadow": ref.to_json(), "tick": self.world.tick}

    def world_spec(self) -> dict[str, Any]:
        from townlet import _core

        return dict(_core.obs_spec(self.world.config.world_json()))

    def _candidate(self, path: str | Path) -> tuple[PolicyRef, Any]:
        target = Path(path)
        if not target.is_absolute():
            target = self.root / target
        if not target.is_file():
            raise CommandError(ErrorCode.not_found, f"checkpoint {path}: no such file")
        stamp = _stamp(target)
        if self.shadow is not None and self._shadow_stamp == stamp:
            ref, actor = self.shadow, self._shadow_actor  # the shadow, unchanged on disk: no second load
        else:
            ref, actor = load_candidate(target, self.world.config)
        self._last_stamp = stamp
        reasons = preflight(self.release, ref)
        if reasons:
            raise CommandError(ErrorCode.conflict, f"pre-flight refused {path}: " + "; ".join(reasons))
        return ref, actor

    # -- promotion and rollback ----------------------------------------------------------------------

    def promote(self, path: str | Path, *, check_ready: bool = True) -> dict[str, Any]:
        """Make the checkpoint `path` the acting policy from the next tick (`policy_swap` without `check_ready`)."""
        event = "promoted" if check_ready else "policy_swap"
        ref, actor = self._candidate(path)
        m = self.monitor
        if self.world.replaying:  # it passed its checks when it happened; a replay swaps and writes nothing
            return self._swap_only(ref, actor, event)
        if check_ready and (self.shadow is None or self.shadow.sha256 != ref.sha256):
            raise CommandError(
                ErrorCode.conflict,
                f"candidate not ready: {path} has not run in shadow (shadow: "
                f"{self.shadow.name if self.shadow else 'none'}); give it to shadow_policy first",
            )
        if check_ready and not m.candidate_ready:
            raise CommandError(
                ErrorCode.conflict,
                f"candidate not ready: pass streak {m.pass_streak}/{m.s.required_passes} "
                f"(windows of {m.s.window_ticks} ticks; last: {m.windows[-1].to_json() if m.windows else 'none yet'})",
            )
        w = self.world
        tick = w.tick
        snap_rel = f"{self.settings.promotion.release_snapshots}/{tick}.json"
        target = confine(w.snapshot_root, snap_rel)
        save_shard_snapshot(w, target)
        write_json(target.with_suffix(".policy.json"), {"tick": tick, "release": self.release.to_json()})
        installed = install_release(Path(ref.path or ""), self.release_dir, ref.sha256)
        ref = replace(ref, path=str(installed))
        # The journal names the installed copy (never overwritten by other content): a replay acts with these
        # weights even after training has republished the candidate's path.
        w.journal_note = {"release": {"path": str(installed), "sha256": ref.sha256}}
        write_json(self.release_dir / "release.json", {"tick": tick, "release": ref.to_json()})
        self.previous.append((self.release, w.actor))
        before = self.release
        w.set_actor(actor)
        self.release = ref
        if self.shadow is not None and self.shadow.sha256 == ref.sha256:
            self._drop_shadow()
        windows = m.pass_streak
        m.reset_streak()
        if check_ready and self.settings.promotion.canary_windows:
            self.state = "promoted"
            self.canary_until = tick + self.settings.promotion.canary_windows * m.s.window_ticks
        else:
            self.state = "monitoring"
            self.canary_until = None
        return self._log(
            event,
            tick,
            before,
            ref,
            snapshot=snap_rel,
            windows=windows if check_ready else None,
            canary_until=self.canary_until,
        )

    def _swap_only(self, ref: PolicyRef, actor: Any, event: str) -> dict[str, Any]:
        self.previous.append((self.release, self.world.actor))
        before, self.release = self.release, ref
        self.world.set_actor(actor)
        return self._log(event, self.world.tick, before, ref)

    def rollback(
        self,
        *,
        to: str | None = None,
        reason: str | None = None,
        alert: Alert | None = None,
        event_tick: int | None = None,
    ) -> dict[str, Any]:
        """Back to the previous release (and, with `to`, the world and release of that kept snapshot)."""
        w = self.world
        before = self.release
        if to is not None:
            target = confine(w.snapshot_root, to)
            if not target.is_file():
                raise CommandError(ErrorCode.not_found, f"snapshot {to}: no such file")
            side = target.with_suffix(".policy.json")
            try:
                doc = read_json(side, "release record") if side.is_file() else None
                ref, actor = self._restore_ref(doc.get("release") if isinstance(doc, dict) else None)
                town, state = load_shard_snapshot(target, w.config)
            except UsageError as exc:
                raise CommandError(ErrorCode.invalid_args, f"rollback_policy: {exc}") from None
            # The snapshot's release acts in the snapshot's world, with the memories it kept (the release's and the
            # shadow's when they are the same checkpoints, else fresh ones).
            w.set_actor(actor)
            w.load_state(town, state)
            self.previous = [p for p in self.previous if p[0].sha256 != ref.sha256 or p[0].kind != ref.kind]
        else:
            if not self.previous:
                raise CommandError(ErrorCode.conflict, "nothing to roll back to: no earlier release on this shard")
            ref, actor = self.previous.pop()
            policy_memory.forget(actor)  # a memory policy's memory is of the ticks before it was swapped out: stale
            w.set_actor(actor)
        self.release = ref
        self.state = "monitoring"
        self.canary_until = None
        self.monitor.reset_streak()
        entry = self._log(
            "rollback", w.tick if event_tick is None else event_tick, before, ref, snapshot=to, reason=reason,
            alert=alert.to_json() if alert else None,
        )  # fmt: skip
        return {**entry, "policy_memory": w.memory_restored} if to is not None and w.memory_restored else entry

    def _restore_ref(self, doc: dict[str, Any] | None) -> tuple[PolicyRef, Any]:
        if doc is None:
            if self.previous:
                return self.previous[-1]
            return expert_ref(self.world.config), None
        ref = PolicyRef.from_json(doc, self.world.config)
        if ref.kind == "expert":
            return ref, None
        loaded, actor = load_candidate(Path(ref.path or ""), self.world.config)
        return loaded, actor

    def _drop_shadow(self) -> None:
        self.shadow, self._shadow_actor, self._shadow_stamp = None, None, None
        self.world.observe_each_tick = False

    def _log(self, event: str, tick: int, before: PolicyRef, after: PolicyRef, **extra: Any) -> dict[str, Any]:
        entry = {"event": event, "tick": tick, "from": before.name, "to": after.name, "release": after.to_json()}
        entry.update({k: v for k, v in extra.items() if v is not None})
        if self.world.replaying:
            self.last_event = entry  # a replay re-enacts the history; it does not add to it
            return entry
        self.last_event = record(self.history_path, self.rollouts_path, entry)
        self.events += 1
        return self.last_event

    # -- reading -----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "tick": self.world.tick,
            "release": self.release.to_json(),
            "previous": [r.name for r, _ in self.previous],
            "shadow": None
            if self.shadow is None
            else {
                **self.shadow.to_json(),
                "ticks": self.shadow_ticks,
                "agreement": self.shadow_agree / self.shadow_actions if self.shadow_actions else None,
            },
            "canary_until": self.canary_until,
            "autosaves": [p.name for p in self.autosave.saved],
            "monitor": self.monitor.status(),
            "last_event": self.last_event,
            "paths": {
                "release_dir": str(self.release_dir),
                "shadow_dir": str(self.shadow_dir),
                "history": str(self.history_path),
                "rollouts": str(self.rollouts_path),
            },
        }

    def summary(self) -> dict[str, Any]:
        """The snapshot's `promotion` entry: the state at a glance (promotion_status has the whole story)."""
        last = self.last_event
        return {
            "status": self.state,
            "release": self.release.name,
            "shadow": None if self.shadow is None else self.shadow.name,
            "pass_streak": self.monitor.pass_streak,
            "required_passes": self.monitor.s.required_passes,
            "candidate_ready": self.monitor.candidate_ready,
            "canary_until": self.canary_until,
            "last_event": None if last is None else {k: last.get(k) for k in ("event", "tick", "from", "to", "reason")},
        }

    def close(self) -> None:
        if self._shadow_log is not None:
            self._shadow_log.close()
            self._shadow_log = None


def _stamp(path: Path) -> tuple[Any, ...]:
    parts = []
    for part in (path.with_suffix(".json"), path.with_suffix(".safetensors")):
        if part.is_file():
            st = part.stat()
            parts.append((str(part.resolve()), st.st_size, st.st_mtime_ns))
    return tuple(parts)


def attach(world: ShardWorld, settings: OpsSection | None = None, *, root: Path | None = None) -> PromotionManager:
    """The world's promotion manager, made now (replacing any earlier one)."""
    old = _MANAGERS.get(world)
    if old is not None:
        old.close()
        if old._on_tick in world.tick_listeners:
            world.tick_listeners.remove(old._on_tick)
    manager = PromotionManager(world, settings, root=root)
    _MANAGERS[world] = manager
    return manager


def current(world: ShardWorld) -> PromotionManager | None:
    """The world's promotion manager, None when it has none (nothing is attached)."""
    return _MANAGERS.get(world)


def manager_for(world: ShardWorld) -> PromotionManager:
    """The world's promotion manager (attached with the config's `ops` settings on first use)."""
    manager = _MANAGERS.get(world)
    return manager if manager is not None else attach(world)
