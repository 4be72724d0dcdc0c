"""`ppo.overlap`'s collector in a process of its own: the next epoch's rows are collected there while this
process learns, each with a core to itself.

Collecting ahead on a second thread left both threads taking turns at the GIL: on a 2-core box each ran about 1.4x
slower than alone, where two separate processes each run within a few percent of their speed alone (docs/training.md,
"Speed"). So the collector runs a `RolloutCollector` of its own in a child process (`python -m
townlet.training.collect_process`), over towns rebuilt from `TownTrainEnv.spec()` and a policy rebuilt from its
`spec()`, with the same seed: it computes the same bytes as the collector would here.

What crosses, and how (nothing is pickled):
- one shared memory file (`memfd`, handed to the child as an inherited descriptor), laid out by `Layout`: the acting
  weights as raw float32, written here before each collection and read by the child as it starts one; and two
  regions of rows (every `Dataset` column, room for every slot-step), taken in turn, so that the rows one collection
  returns hold while the next is collected into the other region;
- JSON lines on the child's stdin and on a descriptor of its own (its stdout, which it keeps for the replies while
  anything it prints goes to its stderr): commands (`collect`, `state`, `set_state`), and replies (the rows' count
  and the `RolloutStats`, a state, or an error to raise here). Python's floats survive JSON exactly.

The child exits when its stdin closes (`close`, this process's end, or its death).
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import signal
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from townlet.sim.settings import PPOConfig
from townlet.training.envs import TownTrainEnv
from townlet.training.network import ActorCritic
from townlet.training.ppo import Dataset, RolloutStats

#: Bytes each block of the shared file starts on (a cache line).
ALIGN = 64
#: Seconds `close` waits for the child to exit before it is killed.
CLOSE_WAIT = 10.0


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass(frozen=True)
class Block:
    """One array in the shared file: where it starts, its shape and dtype."""

    offset: int
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def view(self, buf: mmap.mmap) -> npt.NDArray[Any]:
        return np.ndarray(self.shape, np.dtype(self.dtype), buffer=buf, offset=self.offset)


@dataclass(frozen=True)
class Layout:
    """The shared file: the weights (by state-dict name, float32) and two regions of rows (by `Dataset` field)."""

    weights: dict[str, Block]
    regions: tuple[dict[str, Block], dict[str, Block]]
    size: int

    @staticmethod
    def plan(policy: ActorCritic, rows: int, obs_dim: int, n_actions: int, expert: bool) -> Layout:
        at = 0

        def block(shape: tuple[int, ...], dtype: str) -> Block:
            nonlocal at
            b = Block(at, shape, dtype)
            at = _aligned(at + b.nbytes)
            return b

        weights = {}
        for name, tensor in policy.state_dict().items():
            if str(tensor.dtype) != "torch.float32":
                raise TypeError(f"the collector process shares float32 weights; {name} is {tensor.dtype}")
            weights[name] = block(tuple(tensor.shape), "float32")
        columns = {
            "obs": ((rows, obs_dim), "float32"),
            "masks": ((rows, n_actions), "bool"),
            "actions": ((rows,), "int64"),
            "log_probs": ((rows,), "float32"),
            "values": ((rows,), "float32"),
            "advantages": ((rows,), "float32"),
            "returns": ((rows,), "float32"),
            "rewards": ((rows,), "float32"),
            "next_row": ((rows,), "int64"),
            "end_values": ((rows,), "float32"),
        }
        if expert:
            columns["expert_actions"] = ((rows,), "int64")
        regions = tuple({name: block(shape, dtype) for name, (shape, dtype) in columns.items()} for _ in range(2))
        return Layout(weights, (regions[0], regions[1]), max(at, ALIGN))

    def to_json(self) -> dict[str, Any]:
        return {"weights": {k: asdict(b) for k, b in self.weights.items()},
                "regions": [{k: asdict(b) for k, b in r.items()} for r in self.regions], "size": self.size}  # fmt: skip

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Layout:
        def blocks(d: dict[str, Any]) -> dict[str, Block]:
            return {k: Block(int(b["offset"]), tuple(b["shape"]), str(b["dtype"])) for k, b in d.items()}

        regions = [blocks(r) for r in raw["regions"]]
        return Layout(blocks(raw["weights"]), (regions[0], regions[1]), int(raw["size"]))


def _stats_to_json(stats: RolloutStats) -> dict[str, Any]:
    return asdict(stats)


def _stats_from_json(raw: dict[str, Any]) -> RolloutStats:
    raw = dict(raw)
    raw["sample_rewards"] = [(float(a), float(b)) for a, b in raw["sample_rewards"]]
    return RolloutStats(**raw)


def _shared_file(size: int) -> int:
    """A descriptor of `size` zeroed bytes in memory: an anonymous memfd where the platform has one, else an
    unlinked temporary file."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("townlet-collect", 0)  # not close-on-exec: the child inherits it
    else:  # pragma: no cover - not Linux
        with tempfile.TemporaryFile(prefix="townlet-collect-") as handle:
            fd = os.dup(handle.fileno())
    os.ftruncate(fd, size)
    return fd


class CollectorError(RuntimeError):
    """The collector process failed: its error, or its exit."""


class Pending:
    """A collection under way in the collector process (what `Future` was to the collector's thread)."""

    def __init__(self, owner: CollectorProcess, region: int, serial: int) -> None:
        self._owner, self._region, self._serial = owner, region, serial
        self._done: tuple[Dataset, RolloutStats, Callable[[], dict[str, Any]]] | None = None
        self._error: BaseException | None = None

    def result(self) -> tuple[Dataset, RolloutStats, Callable[[], dict[str, Any]]]:
        """The rows (views of the shared region, holding until the collection after next), the stats, and the
        collector's state from before this collection (asked of the child when called)."""
        if self._done is None and self._error is None:
            try:
                self._done = self._owner._finish(self._region, self._serial)
            except BaseException as exc:
                self._error = exc
        if self._error is not None:
            raise self._error
        assert self._done is not None
        return self._done

    def exception(self) -> BaseException | None:
        """Wait for the collection; the error it met, or None."""
        with contextlib.suppress(BaseException):
            self.result()
        return self._error


class CollectorProcess:
    """A `RolloutCollector` for `env` (a `TownTrainEnv`) in a child process, acting with the weights `policy`
    holds when each collection starts (see the module docstring)."""

    def __init__(self, env: TownTrainEnv, policy: ActorCritic, cfg: PPOConfig, seed: int) -> None:
        if cfg.torch_threads == "auto":
            raise ValueError("ppo.overlap: needs a fixed torch_threads")
        self.policy = policy
        rows = cfg.rollout_ticks * env.num_agents
        self.layout = Layout.plan(policy, rows, env.obs_dim, env.n_actions, cfg.kickstart_coef > 0)
        fd = _shared_file(self.layout.size)
        try:
            self._buf = mmap.mmap(fd, self.layout.size)
            hello = {
                "fd": fd,
                "layout": self.layout.to_json(),
                "env": env.spec(),
                "policy": policy.spec(),
                "ppo": cfg.model_dump(mode="json"),
                "seed": seed,
            }
            # The child imports the townlet this process imported, wherever that came from.
            root = str(Path(__file__).resolve().parents[2])
            path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "townlet.training.collect_process"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                pass_fds=(fd,),
                env={**os.environ, "PYTHONPATH": path},
                text=True,
                encoding="utf-8",
            )
        finally:
            os.close(fd)  # the mapping (and the child's inherited copy) keep the file
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin: IO[str] = self._proc.stdin
        self._stdout: IO[str] = self._proc.stdout
        self._weights = {k: b.view(self._buf) for k, b in self.layout.weights.items()}
        self._regions = [{k: b.view(self._buf) for k, b in r.items()} for r in self.layout.regions]
        self._next_region = 0
        self._serial = 0
        self._pending: Pending | None = None
        self._ready = False
        self._finalizer = weakref.finalize(self, _shut, self._proc, self._buf)
        self._send(hello)

    # -- collecting --------------------------------------------------------------------------------

    def start(self) -> Pending:
        """Start a collection with the weights `policy` holds now (copied to the child before this returns)."""
        if self._pending is not None and self._pending._done is None and self._pending._error is None:
            raise RuntimeError("the collector process is still collecting: take its result first")
        for name, tensor in self.policy.state_dict().items():
            np.copyto(self._weights[name], tensor.detach().numpy())
        region = self._next_region
        self._next_region ^= 1
        self._serial += 1
        self._send({"op": "collect", "region": region, "serial": self._serial})
        self._pending = Pending(self, region, self._serial)
        return self._pending

    def collect(self) -> tuple[Dataset, RolloutStats]:
        """One collection, waited for (the first epoch's, and the first after a restore)."""
        data, stats, _ = self.start().result()
        return data, stats

    def _finish(self, region: int, serial: int) -> tuple[Dataset, RolloutStats, Callable[[], dict[str, Any]]]:
        reply = self._reply()
        if reply.get("serial") != serial:
            raise CollectorError(f"the collector process answered collection {reply.get('serial')}, not {serial}")
        n = int(reply["rows"])
        views = self._regions[region]
        data = Dataset(
            **{k: v[:n] for k, v in views.items() if k != "expert_actions"},
            expert_actions=views["expert_actions"][:n] if "expert_actions" in views else None,
        )

        def before() -> dict[str, Any]:
            if serial != self._serial:
                raise CollectorError(f"the state from before collection {serial} is gone (now {self._serial})")
            return self._ask({"op": "state", "when": "before"})

        return data, _stats_from_json(reply["stats"]), before

    # -- state -------------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """The collector's state now (no collection under way)."""
        self._idle()
        return self._ask({"op": "state", "when": "now"})

    def set_state(self, state: dict[str, Any]) -> None:
        self._idle()
        self._ask({"op": "set_state", "state": state})

    def _idle(self) -> None:
        if self._pending is not None:
            self._pending.exception()  # a collection under way ends first (its rows are dropped)

    # -- the pipe ----------------------------------------------------------------------------------

    def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        self._send(message)
        answer: dict[str, Any] = self._reply()["state" if message["op"] == "state" else "ok"]
        return answer

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self._stdin.write(json.dumps(message, separators=(",", ":")) + "\n")
            self._stdin.flush()
        except (BrokenPipeError, ValueError):
            raise self._gone() from None

    def _reply(self) -> dict[str, Any]:
        if not self._ready:
            self._ready = True
            self._reply()  # the child's greeting: towns and policy built
        line = self._stdout.readline()
        if not line:
            raise self._gone()
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            kind = {"ValueError": ValueError, "TypeError": TypeError}.get(str(reply.get("kind")), CollectorError)
            raise kind(f"collector process: {reply['error']}")
        return reply

    def _gone(self) -> CollectorError:
        code = self._proc.poll()
        if code is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self._proc.wait(timeout=CLOSE_WAIT)
        return CollectorError(f"the collector process exited (code {code}); its stderr says why")

    def close(self) -> None:
        """End the child (it exits as its stdin closes) and unmap the shared file."""
        self._finalizer()


def _shut(proc: subprocess.Popen[str], buf: mmap.mmap) -> None:
    for stream in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError, ValueError):
            if stream is not None:
                stream.close()
    try:
        proc.wait(timeout=CLOSE_WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    with contextlib.suppress(BufferError):
        buf.close()


# -- the child -------------------------------------------------------------------------------------


def _serve(commands: IO[str], replies: IO[str]) -> None:
    import gc

    import torch

    from townlet.training.malloc import keep_freed_memory
    from townlet.training.network import build_policy
    from townlet.training.ppo import RolloutCollector

    def say(message: dict[str, Any]) -> None:
        replies.write(json.dumps(message, separators=(",", ":")) + "\n")
        replies.flush()

    hello = json.loads(commands.readline())
    layout = Layout.from_json(hello["layout"])
    buf = mmap.mmap(int(hello["fd"]), layout.size)
    cfg = PPOConfig.model_validate(hello["ppo"])
    torch.set_num_threads(int(cfg.torch_threads))
    keep_freed_memory()
    env = TownTrainEnv.from_spec(hello["env"])
    policy = build_policy(hello["policy"])
    weights = {k: torch.from_numpy(b.view(buf)) for k, b in layout.weights.items()}
    params = policy.state_dict()
    regions = [{k: b.view(buf) for k, b in r.items()} for r in layout.regions]
    collector = RolloutCollector(env, policy, cfg, int(hello["seed"]))
    before: Callable[[], dict[str, Any]] | None = None
    gc.freeze()  # what is built so far lives as long as the process: full collections need not walk it
    say({"ready": True})
    for line in commands:
        message = json.loads(line)
        op = message.get("op")
        try:
            if op == "collect":
                with torch.no_grad():
                    for name, tensor in params.items():
                        tensor.copy_(weights[name])
                before = collector.state_later()
                data, stats = collector.collect(into=regions[int(message["region"])])
                say({"serial": message["serial"], "rows": len(data), "stats": _stats_to_json(stats)})
            elif op == "state":
                state = collector.get_state() if message["when"] == "now" or before is None else before()
                say({"state": state})
            elif op == "set_state":
                collector.set_state(message["state"])
                before = None
                say({"ok": {}})
            else:
                say({"error": f"unknown command {op!r}", "kind": "ValueError"})
        except Exception as exc:  # reported to the trainer, which raises it; the child stays up
            say({"error": str(exc), "kind": type(exc).__name__})


def main() -> None:
    """The child's entry point: replies on its stdout's descriptor, anything else it prints on its stderr.
    (`import townlet`, before anything here, set OpenMP's passive waits before torch loaded, as in the trainer.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle; this child ends with it
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        _serve(sys.stdin, replies)
    except BrokenPipeError:  # the trainer went while a reply was on its way: nobody is left to tell
        os._exit(0)


if __name__ == "__main__":
    main()
