"""Output paths checked before any work starts: `check_output` refuses, in one line naming the path
and the option, a file or folder that could not be created (under a regular file, on a read-only or
pseudo file system such as /proc, a name too long), so that a run fails at once rather than after
its work, with a traceback."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from townlet.errors import UsageError

#: Linux's limits, checked before the file system is asked (which then answers with an OSError).
_NAME_MAX = 255
_PATH_MAX = 4096


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _probe(folder: Path) -> str | None:
    """Why nothing can be created in the existing folder `folder` (None when a file can be). Tries
    it: permission bits say nothing to root, nor about /proc or a read-only mount."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".townlet-probe-", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    return None


def check_output(path: Path | str, option: str, *, folder: bool = False) -> None:
    """Refuse an output `path` (given as `option`, e.g. `--ppo-log`) that could not be written: a
    file (or, with `folder`, a folder that holds the outputs) that is the wrong kind of thing, a
    name too long, or missing parent folders that could not be made. Creates nothing."""
    path = Path(path)
    what = "folder" if folder else "file"

    def refuse(why: str) -> UsageError:
        return UsageError(f"{option} {path}: cannot write the {what} here ({why})")

    longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
    if longest > _NAME_MAX or len(os.fsencode(str(path.absolute()))) >= _PATH_MAX:
        raise refuse(f"{os.strerror(errno.ENAMETOOLONG)}: a name of {longest} bytes")
    try:
        if path.exists():
            if folder and not path.is_dir():
                raise refuse("it exists and is not a directory")
            if not folder and path.is_dir():
                raise refuse("it is a folder")
        existing = path if folder and path.is_dir() else path.absolute().parent
        while not existing.exists() and not existing.is_symlink():
            existing = existing.parent
        if not existing.is_dir():
            raise refuse(f"{existing} is not a folder")
        if len(os.fsencode(path.name)) > _name_max(existing):
            raise refuse(f"{os.strerror(errno.ENAMETOOLONG)}: a name of {longest} bytes")
    except OSError as exc:
        raise refuse(exc.strerror or str(exc)) from None
    why = _probe(existing)
    if why is not None:
        raise refuse(f"cannot create files in {existing}: {why}")
