"""Publishing a capture: files written and fsynced in a staging folder inside the output folder,
then renamed into place, the manifest last, so a folder with a manifest is always complete; and the
thread pools the capture writes and fsyncs on.

A capture holds an advisory lock (`flock`) on its staging folder while it lives; the kernel drops
it when the process dies, however it dies. So a staging folder nobody holds was left by a killed
capture: the next capture into the same output removes it (and says so in `Staging.notices`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from townlet.errors import UsageError
from townlet.jsonio import fsync_dir

if TYPE_CHECKING:
    from townlet.capture.npz import SampleWriter

_POOLS: dict[str, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
#: Threads that finish large archives (hashing and deflate release the GIL) and, mostly, wait on fsyncs:
#: every file of a capture is fsynced at once.
IO_THREADS = 32


def pool(kind: str) -> ThreadPoolExecutor:
    """`stream`: one thread, so that a capture's chunks are handled in order; `io`: several."""
    with _POOLS_LOCK:
        found = _POOLS.get(kind)
        if found is None:
            workers = 1 if kind == "stream" else IO_THREADS
            found = _POOLS[kind] = ThreadPoolExecutor(workers, thread_name_prefix=f"townlet-capture-{kind}")
        return found


def _forget_pools() -> None:
    # A forked child has none of its parent's threads (nor, maybe, a usable lock): it starts afresh.
    global _POOLS_LOCK
    _POOLS_LOCK = threading.Lock()
    _POOLS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def wait_all(futures: Iterable[Future[Any]]) -> None:
    """Wait for every future, then raise the first failure (so that no worker still writes)."""
    failure: BaseException | None = None
    for fut in list(futures):
        try:
            fut.result()
        except BaseException as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


class Staging:
    """Files written and fsynced in a staging folder inside `output`, then renamed into it, `last` last,
    so that nothing half-written is ever visible there."""

    def __init__(self, output: Path, names: Sequence[str]) -> None:
        if output.exists() and not output.is_dir():
            raise UsageError(f"{output}: exists and is not a directory (--output must name a folder)")
        self.output = output
        self.names = list(names)
        self.folder: Path | None = None
        self.fds: dict[str, int] = {}
        self._made_output = False
        self._lock = threading.Lock()
        self._open_error: UsageError | None = None
        self._closed = False
        self._lock_fd: int | None = None
        #: Lines a user should read (stale staging folders removed), for the CLI to print.
        self.notices: list[str] = []

    def error(self, exc: OSError) -> UsageError:
        return UsageError(f"{self.output}: cannot write capture output ({exc.strerror or exc})")

    def open(self) -> None:
        """Make the staging folder and files, once, on whichever thread comes first."""
        with self._lock:
            if self._open_error is not None:
                raise self._open_error
            if self.folder is not None or self._closed:
                return
            try:
                if not self.output.exists():
                    self.output.mkdir(parents=True, exist_ok=True)
                    self._made_output = True
                stale = remove_stale(self.output)
                if stale:
                    names = ", ".join(p.name for p in stale)
                    self.notices.append(
                        f"notice: removed {len(stale)} staging folder(s) left in {self.output} by an "
                        f"interrupted capture ({names})"
                    )
                self.folder, self._lock_fd = _locked_folder(self.output)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
                for name in self.names:
                    self.fds[name] = os.open(self.folder / name, flags, 0o666)
            except OSError as exc:
                self._open_error = self.error(exc)
                raise self._open_error from None

    def put(self, name: str, data: bytes) -> None:
        """Write a whole (small) file; not yet fsynced."""
        try:
            pwrite_all(self.fds[name], data, 0)
        except OSError as exc:
            raise self.error(exc) from None

    def write(self, name: str, data: bytes) -> None:
        self.put(name, data)
        self.sync(name)

    def sync(self, name: str) -> None:
        try:
            os.fsync(self.fds[name])
        except OSError as exc:
            raise self.error(exc) from None

    def stream_rows(self, samples: Sequence[SampleWriter], t0: int, t1: int) -> None:
        """Stream rows t0..t1 of every sample into its file (`SampleWriter.stream`)."""
        self.open()
        try:
            for sample in samples:
                sample.stream(self.fds[sample.name], t0, t1)
        except OSError as exc:
            raise self.error(exc) from None

    def finish_sample(self, sample: SampleWriter, digest: Future[str], *, sync: bool = False) -> None:
        """Finish one archive and hand its digest over (the manifest waits for it); then fsync it when `sync`."""
        try:
            digest.set_result(sample.finish(self.fds[sample.name]))
        except OSError as exc:
            err = self.error(exc)
            digest.set_exception(err)
            raise err from None
        except BaseException as exc:
            digest.set_exception(exc)
            raise
        if sync:
            self.sync(sample.name)

    def write_sealed(self, sample: SampleWriter) -> None:
        """Write a sealed archive (`SampleWriter.seal`) into its file; not yet fsynced."""
        try:
            sample.write(self.fds[sample.name])
        except OSError as exc:
            raise self.error(exc) from None

    def _close(self) -> None:
        with self._lock:
            self._closed = True
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = {}

    def _unlock(self) -> None:
        # After the folder is gone: until then, no other capture may take it for stale.
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    def publish(self, last: str) -> list[Path]:
        """Rename every (already fsynced) file into `output`, `last` last."""
        assert self.folder is not None
        self._close()
        try:
            written = []
            for name in sorted(self.names, key=lambda x: x == last):
                os.replace(self.folder / name, self.output / name)
                written.append(self.output / name)
        except OSError as exc:
            raise self.error(exc) from None
        finally:
            try:
                self.folder.rmdir()
            except OSError:
                shutil.rmtree(self.folder, ignore_errors=True)
            self._unlock()
        fsync_dir(self.output)  # the renames themselves survive a crash
        return written

    def abort(self) -> None:
        self._close()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self._unlock()
        if self._made_output:
            with contextlib.suppress(OSError):
                self.output.rmdir()


STAGING_PREFIX = ".capture-"
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _locked_folder(output: Path) -> tuple[Path, int]:
    """A new staging folder in `output`, locked by this process (the lock fd is returned)."""
    while True:
        folder = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=output))
        # Between mkdtemp and the lock another capture may have taken the folder for stale and
        # removed it: then it is locked (by the remover) or gone, and we make another.
        try:
            fd = os.open(folder, _DIR_FLAGS)
        except FileNotFoundError:
            continue
        try:
            if _try_lock(fd) and os.stat(folder).st_ino == os.fstat(fd).st_ino:
                return folder, fd
        except FileNotFoundError:
            pass
        os.close(fd)


def remove_stale(output: Path) -> list[Path]:
    """Remove the staging folders in `output` that no living capture holds; returns them."""
    removed = []
    for entry in sorted(output.glob(f"{STAGING_PREFIX}*")):
        if entry.is_symlink() or not entry.is_dir():
            continue
        try:
            fd = os.open(entry, _DIR_FLAGS)
        except OSError:
            continue
        try:
            if _try_lock(fd):
                shutil.rmtree(entry, ignore_errors=True)
                if not entry.exists():
                    removed.append(entry)
        finally:
            os.close(fd)
    return removed


def publish(output: Path, files: dict[str, bytes], *, last: str) -> list[Path]:
    """Write every file into a staging folder beside them, fsync, then rename into `output`,
    the manifest last, so a folder with a manifest is always complete."""
    staging = Staging(output, list(files))
    try:
        staging.open()
        wait_all([pool("io").submit(staging.write, name, data) for name, data in files.items()])
        return staging.publish(last)
    except BaseException:
        staging.abort()
        raise


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view.nbytes:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done
