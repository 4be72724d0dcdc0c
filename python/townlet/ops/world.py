"""`ShardWorld`: the town a shard runs, with what commands need (agent lookup, possession, toggles) and the
records a restored shard needs to replay identically (the journal of applied commands, the cmd_id history).
Not thread-safe: the `Shard` calls it under its world lock."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from townlet import _core
from townlet.ops import policy_memory
from townlet.ops.envelope import CommandError, ErrorCode
from townlet.sim.config import TownConfig

NEED_NAMES = ("hunger", "hygiene", "energy")
CLIP_COLUMN = list(_core.REWARD_COMPONENTS).index("clip_adjustment")
CLIP_EPS = 1e-6
HISTORY_LIMIT = 512
#: Journal entries kept: past this the oldest are dropped (counted in `journal_dropped`), so a shard that runs for
#: months does not grow without bound. A journal that dropped entries no longer replays from the config alone; the
#: shard's snapshots (autosave) restore without it.
JOURNAL_LIMIT = 10_000
NARRATION_LIMIT = 50
EVENT_LIMIT = 100
#: Events that become narration lines (when narration is on and not throttled).
NARRATED = {
    "chat_success": "{agent} and {other} had a good chat",
    "chat_failure": "{agent} and {other} had an awkward chat",
    "shared_meal": "{agent} shared a meal with {other}",
    "agent_faint": "{agent} fainted",
    "agent_spawned": "{agent} arrived in town",
    "agent_killed": "{agent} was removed by an operator",
    "employment_exit_processed": "{agent} left their job",
    "queue_conflict": "{agent} and {other} argued in a queue",
}


class _TownView:
    """What a checkpoint actor reads from a town (masks, spec), for one `Town`."""

    def __init__(self, town: _core.Town, spec: dict[str, Any]) -> None:
        self.town = town
        self.spec = spec
        self.masks: npt.NDArray[np.bool_] = np.zeros((town.n_agents, len(spec["action_names"])), np.bool_)
        self.obs: npt.NDArray[np.float32] = np.zeros((town.n_agents, int(spec["obs_dim"])), np.float32)

    def observation_metadata(self) -> dict[str, Any]:
        return self.spec

    def action_masks(self) -> npt.NDArray[np.bool_]:
        return self.masks


@dataclass
class TickRecord:
    """One tick as a tick listener sees it: the tick that ran, the observations and masks the policy acted on
    (None when nobody observed), the actions taken, the events drained."""

    tick: int
    obs: npt.NDArray[np.float32] | None
    masks: npt.NDArray[np.bool_] | None
    actions: npt.NDArray[np.int64]
    events: dict[str, npt.NDArray[np.generic]]


TickListener = Callable[["ShardWorld", TickRecord], None]


class ShardWorld:
    def __init__(self, config: TownConfig, *, snapshot_root: Path, policy: str | None = None) -> None:
        self.config = config
        self.snapshot_root = Path(snapshot_root)
        self.town = _core.Town(config.world_json(), 0, True)
        self.policy_path = policy
        self._actor: Any = None
        self._view: _TownView | None = None
        if policy is not None:
            self._load_policy(policy)
        self.action_names: list[str] = list(self.town.action_names())
        self.event_names: list[str] = list(self.town.event_names())
        #: agent index -> the action it takes next tick (None: wait) while an operator possesses it.
        self.possessed: dict[int, int | None] = {}
        self.narration_enabled = True
        self.narration_throttle = 0  # minimum ticks between narration lines
        self.privacy_mode = False
        self.narrations: deque[dict[str, Any]] = deque(maxlen=NARRATION_LIMIT)
        #: The latest world events (all kinds), as the snapshot's `events`.
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENT_LIMIT)
        self._last_narration_tick = -(10**9)
        #: Every applied mutating command in order: {tick, name, args, cmd_id} (+ `auto`: an automatic rollback); the
        #: last JOURNAL_LIMIT of them, `journal_dropped` counts the older ones dropped.
        self.journal: list[dict[str, Any]] = []
        self.journal_dropped = 0
        #: Set while `replay_journal` rebuilds this world: policy commands act but write no files.
        self.replaying = False
        #: How many times a world state was loaded into this one (`load_state`, e.g. `rollback_policy --to`).
        self.restores = 0
        #: Fields a command handler adds to its own journal entry (promote_policy: the installed release).
        self.journal_note: dict[str, Any] = {}
        #: cmd_id -> stored result (bounded, oldest dropped first).
        self.history: OrderedDict[str, dict[str, Any]] = OrderedDict()
        #: Called after each tick (under the shard's world lock), in order: the stability monitor, shadow policies.
        self.tick_listeners: list[TickListener] = []
        #: Observe every tick even while the core's scripted expert acts (a shadow policy needs the observations).
        self.observe_each_tick = False
        #: The last tick's action per agent and its probability under the acting policy (None: an operator's action,
        #: or a policy that reports no distribution); empty before the first tick.
        self.last_actions: list[int] = []
        self.last_probs: list[float | None] = []
        #: Agent-ticks whose reward the clip changed (per-tick or per-episode clip, post-death guard), since start.
        self.reward_clip_events = 0
        #: The policies whose memory a snapshot keeps, by role (ops/policy_memory.py): the acting policy, and the
        #: shadow policy a promotion manager adds.
        self.memories: dict[str, Callable[[], Any]] = {"acting": lambda: self._actor}
        #: What the last `load_state` did with each memory policy's memory (role -> `restored` | `fresh: why`).
        self.memory_restored: dict[str, str] = {}

    def set_actor(self, actor: Any) -> None:
        """The acting policy from the next tick on: `actor(view, obs) -> actions`, or None for the core's scripted
        expert. Called between ticks (a command handler, a tick listener), so a swap lands on a tick boundary."""
        self._actor = actor
        if self._view is None:
            self._view = _TownView(self.town, _core.obs_spec(self.config.world_json()))

    @property
    def actor(self) -> Any:
        return self._actor

    def _load_policy(self, path: str) -> None:
        from townlet.ops.promotion_policy import OneThread
        from townlet.training.evaluate import checkpoint_actor  # torch: only when a policy is asked for

        self._actor = OneThread(checkpoint_actor(Path(path), config=self.config))
        self._view = _TownView(self.town, _core.obs_spec(self.config.world_json()))

    # -- lookups --------------------------------------------------------------------------------

    @property
    def tick(self) -> int:
        return int(self.town.tick)

    def agent_ids(self) -> list[str]:
        return list(self.town.agent_ids())

    def agent(self, agent_id: str) -> int:
        """The slot of `agent_id` (its current id, e.g. `alice#2`, or its base name); not_found otherwise."""
        ids = self.agent_ids()
        if agent_id in ids:
            return ids.index(agent_id)
        base = [i for i, a in enumerate(ids) if a.split("#", 1)[0] == agent_id]
        if len(base) == 1:
            return base[0]
        raise CommandError(ErrorCode.not_found, f"unknown agent {agent_id!r} (agents: {', '.join(ids)})")

    def alive_agent(self, agent_id: str) -> int:
        i = self.agent(agent_id)
        if not bool(self.town.alive()[i]):
            raise CommandError(ErrorCode.conflict, f"agent {agent_id!r} is not alive")
        return i

    def need_index(self, name: str) -> int:
        if name not in NEED_NAMES:
            raise CommandError(ErrorCode.invalid_args, f"unknown need {name!r} (needs: {', '.join(NEED_NAMES)})")
        return NEED_NAMES.index(name)

    def action_index(self, name: str) -> int:
        if name not in self.action_names:
            raise CommandError(
                ErrorCode.invalid_args, f"unknown action {name!r} (actions: {', '.join(self.action_names)})"
            )
        return self.action_names.index(name)

    # -- the tick ---------------------------------------------------------------------------------

    def step(self) -> None:
        """One tick: the acting policy for every agent, the operator's action for the possessed."""
        town = self.town
        tick = int(town.tick)
        if self._view is None and self.observe_each_tick:
            self._view = _TownView(town, _core.obs_spec(self.config.world_json()))
        view = self._view if self._actor is not None or self.observe_each_tick else None
        if view is not None:
            town.observe(view.obs, view.masks)
        probs: list[float | None]
        if self._actor is None:
            if self.possessed:
                town.step_possessed(self._overrides())
            else:
                town.step(1)
            # The scripted expert's behaviour log-probabilities, as the core reports them.
            probs = [float(p) for p in np.exp(town.last_log_probs().astype(np.float64))]
        else:
            assert view is not None
            act = getattr(self._actor, "act", None)
            if callable(act):
                chosen, p = act(view, view.obs)
            else:
                chosen, p = self._actor(view, view.obs), None
            actions = np.asarray(chosen, dtype=np.int64).copy()
            probs = [None] * len(actions) if p is None else [float(x) for x in p]
            for i, a in self._overrides():
                actions[i] = a
            town.step(1, np.ascontiguousarray(actions))
        self.last_actions = [int(a) for a in town.last_actions()]
        for i in self.possessed:
            probs[i] = None  # the operator's action: no policy chose it
        self.last_probs = probs
        # Above float noise: the adjustment is computed as (clipped - raw) in f32.
        self.reward_clip_events += int((np.abs(town.reward_breakdown()[:, CLIP_COLUMN]) > CLIP_EPS).sum())
        for i in list(self.possessed):
            self.possessed[i] = None  # one operator action per command; then the agent waits
        events = town.drain_events()
        self._narrate(events)
        if self.tick_listeners:
            record = TickRecord(
                tick, view.obs if view else None, view.masks if view else None, town.last_actions(), events
            )
            for listener in list(self.tick_listeners):
                listener(self, record)

    def _overrides(self) -> list[tuple[int, int]]:
        return [(i, a if a is not None else 0) for i, a in sorted(self.possessed.items())]

    def _narrate(self, cols: dict[str, npt.NDArray[np.generic]]) -> None:
        ids = self.agent_ids()
        for t, k, a, o in zip(cols["tick"], cols["kind"], cols["agent"], cols["other"], strict=True):
            event = self.event_names[int(k)]
            self.events.append(
                {
                    "tick": int(t),
                    "event": event,
                    "agent": ids[int(a)] if int(a) >= 0 else None,
                    "other": ids[int(o)] if int(o) >= 0 else None,
                }
            )
            if not self.narration_enabled:
                continue
            template = NARRATED.get(event)
            if template is None or int(t) - self._last_narration_tick < self.narration_throttle:
                continue
            if self.privacy_mode:
                agent, other = "an agent", "another agent"
            else:
                agent = ids[int(a)] if int(a) >= 0 else "someone"
                other = ids[int(o)] if int(o) >= 0 else "someone"
            self.narrations.append({"tick": int(t), "event": event, "text": template.format(agent=agent, other=other)})
            self._last_narration_tick = int(t)

    # -- records ------------------------------------------------------------------------------------

    def record_command(self, tick: int, name: str, args: dict[str, Any], cmd_id: str | None, **extra: Any) -> None:
        """Append an applied command to the journal (applied before `tick` ran), dropping the oldest past the limit."""
        self.journal.append({"tick": tick, "name": name, "args": args, "cmd_id": cmd_id, **extra})
        excess = len(self.journal) - JOURNAL_LIMIT
        if excess > 0:
            del self.journal[:excess]
            self.journal_dropped += excess

    def remember(self, cmd_id: str, result: dict[str, Any]) -> None:
        self.history[cmd_id] = result
        self.history.move_to_end(cmd_id)
        while len(self.history) > HISTORY_LIMIT:
            self.history.popitem(last=False)

    def state(self) -> dict[str, Any]:
        """What a shard snapshot keeps beside the town."""
        return {
            "possessed": {str(i): a for i, a in sorted(self.possessed.items())},
            "narration_enabled": self.narration_enabled,
            "narration_throttle": self.narration_throttle,
            "privacy_mode": self.privacy_mode,
            "narrations": list(self.narrations),
            "events": list(self.events),
            "last_narration_tick": self._last_narration_tick,
            "reward_clip_events": self.reward_clip_events,
            "journal": list(self.journal),
            "journal_dropped": self.journal_dropped,
            "history": [[k, v] for k, v in self.history.items()],
            "policy_memory": {
                role: doc for role, get in self.memories.items() if (doc := policy_memory.save(get())) is not None
            },
        }

    def load_state(self, town: _core.Town, state: dict[str, Any]) -> None:
        self.town = town
        if self._view is not None:
            self._view = _TownView(town, self._view.spec)
        self.possessed = {int(k): (None if v is None else int(v)) for k, v in state["possessed"].items()}
        self.narration_enabled = bool(state["narration_enabled"])
        self.narration_throttle = int(state["narration_throttle"])
        self.privacy_mode = bool(state["privacy_mode"])
        self.narrations = deque(state["narrations"], maxlen=NARRATION_LIMIT)
        self.events = deque(state["events"], maxlen=EVENT_LIMIT)
        self._last_narration_tick = int(state["last_narration_tick"])
        self.reward_clip_events = int(state.get("reward_clip_events", 0))
        self.journal = list(state["journal"])
        self.journal_dropped = int(state.get("journal_dropped", 0))
        self.restores += 1
        self.history = OrderedDict((str(k), v) for k, v in state["history"])
        self.restore_memories(state.get("policy_memory"))

    def restore_memories(self, kept: dict[str, Any] | None) -> dict[str, str]:
        """Each memory policy's memory as the snapshot kept it for its role (the same checkpoint), else fresh: the
        memory of the world before is stale in the restored one. The outcome per role, also in `memory_restored`."""
        outcome = {}
        for role, get in self.memories.items():
            said = policy_memory.restore(get(), kept, role)
            if said is not None:
                outcome[role] = said
        self.memory_restored = outcome
        return outcome
