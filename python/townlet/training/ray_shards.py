"""The shards as Ray Core actors (`--backend ray`): one `ShardActor` (a `TownShard`) per shard, one CPU each.

Each epoch the learner puts the weights in the object store once, asks every shard to collect, and takes the
blocks in shard order (never arrival order). Every block carries its shard's state after it; the learner keeps
the last one, so a shard whose process dies is recollected exactly: Ray restarts the actor (`max_restarts`),
the learner gives it back the state the epoch started from and asks again. A shard that dies more often than
that stops the run with one clear line (the last checkpoint stays as it was; resume from it).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from townlet.errors import TownletError
from townlet.sim.config import TownConfig
from townlet.sim.settings import PPOConfig
from townlet.training.ray_cluster import RayClusterError, connect
from townlet.training.shards import Block, TownShard, split_towns

#: How long the learner waits for one shard's block (a shard that hangs this long stops the run).
COLLECT_TIMEOUT_S = 600.0
#: How often the learner asks a restarting actor whether it is back.
RETRY_S = 0.1


class ShardDiedError(TownletError):
    """A shard actor died more often than it may be restarted."""


class RayShards:
    """`shards` Ray actors over the run's towns; the cluster at `address`, or a private one in this process."""

    def __init__(
        self,
        config: TownConfig,
        ppo: PPOConfig,
        meta: dict[str, Any],
        seed: int,
        towns: int,
        shards: int,
        *,
        address: str | None = None,
        max_restarts: int = 2,
    ) -> None:
        self.towns = split_towns(towns, shards)
        self.max_restarts = max_restarts
        #: Actor restarts the run needed (each one recollected its shard's epoch).
        self.restarts = 0
        self.ray = ray = connect(address, num_cpus=shards)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < shards:  # the actors would wait for room forever
            raise RayClusterError(
                f"the Ray cluster{f' at {address}' if address else ''} has {cpus} CPUs; --shards {shards} needs "
                f"{shards} (one per shard)"
            )
        actor = ray.remote(num_cpus=1, max_restarts=max_restarts, max_task_retries=0)(TownShard)
        self.actors = [actor.remote(config, ppo, meta, seed, r) for r in self.towns]
        self._states: list[list[dict[str, Any]]] = self._get_all([a.get_state.remote() for a in self.actors])

    def _get_all(self, refs: list[Any]) -> list[Any]:
        out = []
        for k, ref in enumerate(refs):
            try:
                out.append(self.ray.get(ref, timeout=COLLECT_TIMEOUT_S))
            except self.ray.exceptions.GetTimeoutError:
                raise ShardDiedError(f"{self._where(k)} did not answer within {COLLECT_TIMEOUT_S:.0f}s") from None
            except self.ray.exceptions.RayTaskError as exc:
                raise _cause(exc) from None
            except self.ray.exceptions.RayActorError as exc:
                raise ShardDiedError(f"{self._where(k)}: its actor died ({_first_line(exc)})") from None
        return out

    def pids(self) -> list[int]:
        """Each shard actor's process id (tests kill one)."""
        return list(self._get_all([a.pid.remote() for a in self.actors]))

    def collect(self, weights: dict[str, torch.Tensor]) -> list[Block]:
        ref = self.ray.put({k: v.detach().clone() for k, v in weights.items()})
        pending = [a.collect.remote(ref) for a in self.actors]
        blocks = [self._block(k, pending[k], ref) for k in range(len(self.actors))]  # shard order
        self._states = [b.state for b in blocks]
        return blocks

    def _where(self, k: int) -> str:
        return f"shard {k} (towns {self.towns[k].start}-{self.towns[k].stop - 1})"

    def _block(self, k: int, pending: Any, weights: Any) -> Block:
        """Shard `k`'s block; when its actor died, wait for Ray to restart it, give it back the state the
        epoch started from and collect again."""
        while True:
            try:
                block: Block = self.ray.get(pending, timeout=COLLECT_TIMEOUT_S)
                return block
            except self.ray.exceptions.GetTimeoutError:
                raise ShardDiedError(
                    f"{self._where(k)} did not answer within {COLLECT_TIMEOUT_S:.0f}s; the run stopped "
                    "(resume from its last checkpoint)"
                ) from None
            except self.ray.exceptions.RayTaskError as exc:  # the shard raised: as if it ran here
                raise _cause(exc) from None
            except self.ray.exceptions.RayActorError:
                self._restarted(k)
                actor = self.actors[k]
                actor.set_state.remote(self._states[k])  # an actor runs its calls in order
                pending = actor.collect.remote(weights)

    def _restarted(self, k: int) -> None:
        """Return once shard `k`'s actor answers again (Ray restarted it); ShardDiedError when Ray gave it up
        (more deaths than `max_restarts`) or it is not back within the timeout."""
        deadline = time.monotonic() + COLLECT_TIMEOUT_S
        while True:
            try:
                self.ray.get(self.actors[k].pid.remote(), timeout=COLLECT_TIMEOUT_S)
                self.restarts += 1
                return
            except self.ray.exceptions.ActorUnavailableError:  # restarting: calls are refused meanwhile
                if time.monotonic() > deadline:
                    break
                time.sleep(RETRY_S)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.GetTimeoutError):
                break
        raise ShardDiedError(
            f"{self._where(k)} died and Ray could not restart it (max restarts {self.max_restarts}); the run "
            "stopped (resume from its last checkpoint)"
        )

    def get_state(self) -> list[dict[str, Any]]:
        return [st for shard in self._states for st in shard]

    def set_state(self, states: list[dict[str, Any]]) -> None:
        parts = [states[r.start : r.stop] for r in self.towns]
        self._get_all([a.set_state.remote(p) for a, p in zip(self.actors, parts, strict=True)])
        self._states = parts

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a, no_restart=True)
        self.actors = []


def _cause(exc: Any) -> BaseException:
    """What a shard's method raised (Ray wraps it in a RayTaskError), so errors read as with --backend local."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
