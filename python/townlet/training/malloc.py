"""The process's memory, tuned for the trainer: glibc's allocator keeps freed memory for the next
epoch (`keep_freed_memory`), and Python's cyclic collector leaves the long-lived objects alone
(`long_lived_frozen`).

Every PPO minibatch allocates and frees tens of megabytes of tensors. With glibc's defaults the
freed top of the heap goes back to the kernel (and blocks above the adaptive mmap threshold are
mapped and unmapped each time), so the next minibatch pays page faults and the kernel's zeroing of
the same memory again: about a tenth of an epoch's CPU time on the default town. PyTorch's own
performance notes recommend an allocator that keeps memory (jemalloc, tcmalloc); this does the same
with glibc's knobs. The process keeps up to its peak heap; nothing is computed differently.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

#: mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

_done = False


def keep_freed_memory() -> bool:
    """Once per process, on Linux with glibc: never trim the heap's free top, grow it 64 MiB at a
    time, and serve blocks up to 32 MiB (glibc's largest mmap threshold) from the heap. Returns
    whether the allocator was tuned (False elsewhere: nothing to do)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl has no mallopt)
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024) == 1)
    ok = mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1 and ok
    ok = mallopt(M_TOP_PAD, 64 * 1024 * 1024) == 1 and ok
    _done = ok
    return ok


def long_lived_frozen(run: Callable[P, R]) -> Callable[P, R]:
    """`run` (a training loop) with every object Python's cyclic collector tracks when it starts in
    the collector's permanent generation (`gc.freeze`, undone when it returns), so that full
    collections stop walking them. A training loop allocates and frees Python objects by the
    thousand per update (a tensor per torch call), which sets off collections; each full one walked
    everything imported and built before the loop (torch's and numpy's modules, the towns, the
    network): 5-10 % of an epoch's CPU time on the default town (perf: `gc_collect_main` and its
    visitors), about 5 % of the wall clock without `ppo.overlap`. Frozen objects are still freed when
    their last reference goes. Nothing is computed differently."""

    @functools.wraps(run)
    def frozen(*args: P.args, **kwargs: P.kwargs) -> R:
        gc.freeze()
        try:
            return run(*args, **kwargs)
        finally:
            gc.unfreeze()  # at exit, extensions that check for leaks (nanobind's) find their objects freed

    return frozen
