"""`Simulation`: one town driven from Python — load a config, step many ticks per call, read
state as numpy arrays, read events and counters, save and restore snapshots."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from townlet import _core
from townlet.errors import UsageError
from townlet.jsonio import atomic_write_text, parse_json
from townlet.sim.config import TownConfig, load_config

NEED_NAMES = ("hunger", "hygiene", "energy")
#: The KPIs a run summary reports, and whether each is a count.
SUMMARY_KPIS = (
    ("self_sufficiency", False),
    ("on_time_rate", False),
    ("relationship_coverage", False),
    ("faints", True),
    ("evictions", True),
    ("queue_conflicts", True),
    ("shifts_scheduled", True),
    ("chat_success", True),
    ("shared_meals", True),
)


class Simulation:
    """One town. The native `Town` does the work; this class adds config and file handling."""

    def __init__(self, config: TownConfig, *, town: int = 0, record_events: bool = False) -> None:
        self.config = config
        self.town = _core.Town(config.world_json(), town, record_events)
        self._event_names: list[str] = list(self.town.event_names())

    @classmethod
    def from_path(cls, path: str | Path, *, seed: int | None = None, record_events: bool = False) -> Simulation:
        return cls(load_config(path, seed=seed), record_events=record_events)

    # -- stepping -------------------------------------------------------------------------------

    def run(self, ticks: int) -> None:
        """Advance `ticks` ticks under the scripted policy (the GIL is released meanwhile)."""
        if ticks < 0:
            raise UsageError(f"tick count must be >= 0, got {ticks}")
        self.town.step(ticks)

    def run_for(
        self,
        ticks: int,
        policy: Any = None,
        *,
        chunk: int | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Advance `ticks` ticks under the scripted expert (or `policy`), `chunk` ticks per native call
        (default: all at once), calling `on_progress(ticks done)` after each; returns the run's summary:
        config, ticks, world hash, KPIs and throughput (what `townlet sim run --json` prints)."""
        start_tick, steps_before = self.tick, self.town.agent_steps
        t0 = time.perf_counter()
        done = 0
        while done < ticks:
            n = min(chunk or ticks, ticks - done)
            self.run(n) if policy is None else self.run_policy(n, policy)
            done += n
            if on_progress is not None:
                on_progress(done)
        elapsed = max(time.perf_counter() - t0, 1e-9)
        agent_steps = self.town.agent_steps - steps_before
        kpis = self.kpis()
        return {
            "config_id": self.config.config_id,
            "config": str(self.config.path),
            "seed": self.config.seed,
            "start_tick": start_tick,
            "ticks": ticks,
            "final_tick": self.tick,
            "agents": self.town.n_agents,
            "agent_ids": self.agent_ids,
            "world_hash": self.world_hash(),
            "manifest_checksum": self.town.manifest_checksum,
            "kpis": {k: int(kpis[k]) if count else kpis[k] for k, count in SUMMARY_KPIS},
            "agent_steps": agent_steps,
            "elapsed_sec": elapsed,
            "agent_steps_per_sec": agent_steps / elapsed,
        }

    def step(self, actions: npt.ArrayLike) -> None:
        """Advance one tick with one action per agent slot."""
        self.town.step(1, np.ascontiguousarray(actions, dtype=np.int64))

    def observation_metadata(self) -> dict[str, Any]:
        """The observation layout (the same record VecTown gives)."""
        return _core.obs_spec(self.config.world_json())

    def run_policy(self, ticks: int, policy: Any) -> None:
        """Advance `ticks` ticks with a policy `(obs, masks) -> (actions, log-probs, values)`."""
        meta = self.observation_metadata()
        n = self.town.n_agents
        obs = np.zeros((n, meta["obs_dim"]), np.float32)
        masks = np.zeros((n, len(meta["action_names"])), np.bool_)
        for _ in range(ticks):
            self.town.observe(obs, masks)
            actions, _, _ = policy(obs, masks)
            self.town.step(1, np.ascontiguousarray(actions, dtype=np.int64))

    # -- state ------------------------------------------------------------------------------------

    @property
    def tick(self) -> int:
        return int(self.town.tick)

    @property
    def agent_ids(self) -> list[str]:
        return list(self.town.agent_ids())

    @property
    def event_names(self) -> list[str]:
        return list(self._event_names)

    def needs(self) -> npt.NDArray[np.float32]:
        return self.town.needs()

    def positions(self) -> npt.NDArray[np.int32]:
        return self.town.positions()

    def wallets(self) -> npt.NDArray[np.float64]:
        return self.town.wallets()

    def event_totals(self) -> dict[str, int]:
        return {n: int(c) for n, c in zip(self._event_names, self.town.event_totals(), strict=True)}

    def event_counts(self) -> dict[str, int]:
        return {n: int(c) for n, c in zip(self._event_names, self.town.event_counts(), strict=True)}

    def drain_events(self) -> list[dict[str, Any]]:
        """Recorded events (needs `record_events=True`) as dicts with names instead of indices."""
        cols = self.town.drain_events()
        ids = self.agent_ids
        objects = list(self.town.object_ids())
        out: list[dict[str, Any]] = []
        for t, k, a, o, obj, v in zip(
            cols["tick"], cols["kind"], cols["agent"], cols["other"], cols["object"], cols["value"], strict=True
        ):
            out.append(
                {
                    "event": self._event_names[int(k)],
                    "tick": int(t),
                    "agent": ids[a] if a >= 0 else None,
                    "other": ids[o] if o >= 0 else None,
                    "object": objects[obj] if obj >= 0 else None,
                    "value": float(v),
                }
            )
        return out

    def kpis(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.town.kpis().items()}

    def world_hash(self) -> str:
        return str(self.town.world_hash())

    # -- snapshots ----------------------------------------------------------------------------------

    def save_snapshot(self, path: str | Path) -> None:
        try:
            atomic_write_text(path, self.town.snapshot())
        except OSError as exc:
            raise UsageError(f"{path}: cannot write snapshot: {exc.strerror or exc}") from None

    @classmethod
    def load_snapshot(cls, path: str | Path, config: TownConfig, *, record_events: bool = False) -> Simulation:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise UsageError(f"{path}: cannot read snapshot: {exc.strerror or exc}") from None
        # The one JSON parser first (binary, syntax errors and duplicate keys named FILE:LINE); whether the
        # document is a snapshot (format, version, checksum, config, sizes) is the core's to say.
        parse_json(Path(path), raw)
        text = raw.decode("utf-8")
        try:
            town = _core.Town.from_snapshot(text, config.world_json(), record_events)
        except _core.SnapshotError as exc:
            raise UsageError(f"{path}: {exc}") from None
        sim = cls.__new__(cls)
        sim.config = config
        sim.town = town
        sim._event_names = list(town.event_names())
        return sim
