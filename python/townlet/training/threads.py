"""Torch threads for the trainer: how many, per phase, and how OpenMP's idle threads wait.

PyTorch's CPU build runs its parallel kernels on GNU OpenMP. By default an idle OpenMP thread
spins for a while before it sleeps, and every parallel kernel ends at a barrier that waits for all
threads. On a machine whose cores are busy with other work, a barrier waits for a thread that is
not scheduled while the spinning ones hold the cores: measured on a shared 2-core box (load 4-9),
two threads ran 3-75x slower than one. `wait_passively` makes idle threads sleep at once
(`OMP_WAIT_POLICY=PASSIVE`), which libgomp reads when torch loads it; with it two threads ran at
0.6-1.9x the speed of one on that box, by load, and never collapsed. The price: on the same box
when it was quiet, two threads with passive waits ran at 0.73x of one, while spinning ones are
reported at 1.37x there. A user who sets `OMP_WAIT_POLICY` or `GOMP_SPINCOUNT` keeps that choice.

`ppo.torch_threads: auto` (opt-in; the default is one thread, which `auto` did not beat on a quiet
2-core box) lets each phase choose by measurement: collection and
learning each run on one thread or on every CPU this process may use (`usable_cpus`, at most
`AUTO_MOST`), whichever took less time per row in its recent turns, trying the other again after
`PROBE_EVERY` epochs, then after twice as many each time it loses (`ThreadChooser`). That is safe
for determinism only where the bfloat16 path computes the same bytes on any thread count
(tests/test_train_threads.py): true on session 7's Zen 5 box, false on an Intel Xeon with AMX,
whose multi-threaded bfloat16 products split long sums (a weight gradient's, over the minibatch)
by thread. `bf16_is_thread_invariant` tries such products once per process, and where the bytes
would differ `auto` means one thread, as it always does with `precision: fp32` (the convolution's
weight and bias gradients are summed per thread). An integer is a fixed count for both phases: the
same count gives the same bytes, but on such a machine another count does not.
"""

from __future__ import annotations

import functools
import math
import os
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

#: The most threads `auto` uses, whatever the core count: measured only on 2 cores.
AUTO_MOST = 4
#: After how many epochs `auto` first tries again the thread count it is not using (doubling each
#: time that count is still slower).
PROBE_EVERY = 8


def wait_passively() -> None:
    """Make OpenMP's idle threads sleep at once (`OMP_WAIT_POLICY=PASSIVE`) unless the user chose a
    policy (`OMP_WAIT_POLICY` or `GOMP_SPINCOUNT` set). Takes effect only before torch is first
    imported in the process (libgomp reads it when it loads)."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread inside the block, the caller's count restored after: for work whose floats must
    not depend on the machine's core count (a network's initialisation, inference that is compared)."""
    import torch  # not at the top: `wait_passively` must be able to run before torch loads

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


#: The bfloat16 products `bf16_is_thread_invariant` tries, (rows, reduced, cols): the learner's weight gradients
#: reduce over a minibatch's rows (the map layer's over 6 output rows each), the products whose sums a
#: multi-threaded kernel may split (seen on an Intel Xeon with AMX; not on a Zen 5).
INVARIANCE_PROBES = ((132, 27648, 48), (256, 4608, 128), (64, 4608, 288))


@functools.cache
def bf16_is_thread_invariant(threads: int) -> bool:
    """Whether this machine's bfloat16 products give the same bytes on `threads` threads as on one,
    tried on `INVARIANCE_PROBES` (seeded inputs, a few milliseconds). Cached per process."""
    import torch  # not at the top: `wait_passively` must be able to run before torch loads

    if threads <= 1:
        return True
    before = torch.get_num_threads()
    gen = torch.Generator().manual_seed(0)
    try:
        for m, k, n in INVARIANCE_PROBES:
            a = torch.randn(m, k, generator=gen).to(torch.bfloat16)
            b = torch.randn(k, n, generator=gen).to(torch.bfloat16)
            torch.set_num_threads(1)
            one = a @ b
            torch.set_num_threads(threads)
            if not torch.equal(one, a @ b):
                return False
        return True
    finally:
        torch.set_num_threads(before)


def auto_threads(precision: str) -> int:
    """What `torch_threads: auto` may use at most: the usable CPUs up to `AUTO_MOST` where the bytes
    cannot depend on the count, else one thread: fp32 (its convolution gradients are summed per
    thread), and bf16 on a machine whose products split their sums by thread
    (`bf16_is_thread_invariant`)."""
    most = min(usable_cpus(), AUTO_MOST)
    if precision == "fp32" or not bf16_is_thread_invariant(most):
        return 1
    return most


class ThreadChooser:
    """One phase's thread count under `auto`: one thread or `most`, whichever took less time per
    row. Timings on a shared machine are noisy in one direction (other work only slows a phase), so
    each count is judged by the best of its last `WINDOW` turns. The first turn (warm-up:
    allocations, kernel set-up) is not counted; then the counts take turns until each has
    `WINDOW - 1` timings; later the count not in use runs again `probe_every` turns after the last
    such probe, and that interval doubles (up to `MAX_PROBE_EVERY`) each time the probe loses, so a
    count that is much slower on a busy machine is rarely tried."""

    WINDOW = 3
    MAX_PROBE_EVERY = 256

    def __init__(self, most: int, probe_every: int = PROBE_EVERY) -> None:
        self.candidates = (1, most) if most > 1 else (1,)
        self.probe_every = probe_every
        self.interval = probe_every
        self.last_probe = 0
        self.probing: int | None = None
        #: Seconds per row of each count's last `WINDOW` turns.
        self.timings: dict[int, deque[float]] = {t: deque(maxlen=self.WINDOW) for t in self.candidates}
        self.turn = 0

    def cost(self, threads: int) -> float:
        """The count's best recent time per row (infinite before it was timed)."""
        return min(self.timings[threads], default=math.inf)

    def pick(self) -> int:
        self.turn += 1
        self.probing = None
        if self.turn == 1:
            return self.candidates[-1]
        short = [t for t in self.candidates if len(self.timings[t]) < self.WINDOW - 1]
        if short:
            self.last_probe = self.turn
            return min(short, key=lambda t: len(self.timings[t]))
        best = min(self.candidates, key=self.cost)
        if self.turn - self.last_probe >= self.interval:
            self.last_probe = self.turn
            self.probing = next(t for t in self.candidates if t != best)
            return self.probing
        return best

    def record(self, threads: int, seconds: float, rows: int) -> None:
        if self.turn <= 1 or rows <= 0:
            return
        before = min(self.candidates, key=self.cost)
        self.timings[threads].append(seconds / rows)
        if self.probing is not None:
            won = min(self.candidates, key=self.cost) != before
            self.interval = self.probe_every if won else min(2 * self.interval, self.MAX_PROBE_EVERY)


class Threads:
    """The trainer's torch threads per phase ("collect", "learn"): a fixed count, or `auto` (a
    `ThreadChooser` per phase). `use(phase)` sets the count before the phase and returns it;
    `done(phase, seconds, rows)` reports how it went. `torch.set_num_threads` is called only when
    the count changes (it drops oneDNN's cached kernels)."""

    def __init__(self, setting: int | str, precision: str) -> None:
        self.fixed = setting if isinstance(setting, int) else None
        # Only `auto` chooses (and so probes the machine's bfloat16 products: `auto_threads`).
        most = auto_threads(precision) if self.fixed is None else 1
        self.choosers = {phase: ThreadChooser(most) for phase in ("collect", "learn")}
        #: The count each phase last ran on.
        self.last: dict[str, int] = {}

    def use(self, phase: str) -> int:
        import torch  # not at the top: `wait_passively` must be able to run before torch loads

        threads = self.fixed if self.fixed is not None else self.choosers[phase].pick()
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        self.last[phase] = threads
        return threads

    def done(self, phase: str, seconds: float, rows: int) -> None:
        if self.fixed is None:
            self.choosers[phase].record(self.last[phase], seconds, rows)
