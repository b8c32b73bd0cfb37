"""The work directory of a run: made (or checked to be a folder) and held by one run at a time.

`claim(workdir)` creates the folder and takes `<workdir>/.lock`, an exclusive `fcntl.flock` held
until the run returns; the operating system releases it when the process dies (SIGKILL included),
so a lock file left by a dead run never blocks the next one. The file holds the pid of the run
that holds it, for the message a second run gets.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from mothernet_jax.train.config import ConfigError

LOCK = ".lock"


def make(workdir: Path) -> None:
    """Create `workdir` (and its parents); a path that is a file, or lies under one, is a
    ConfigError naming it."""
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"work directory {workdir} is a file, not a folder: give a folder (--workdir)")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a parent is a file (NotADirectoryError), no permission, ...
        raise ConfigError(f"cannot create the work directory {workdir}: {error.strerror or error}") from None


@contextlib.contextmanager
def claim(workdir: Path, *, lock: bool = True) -> Iterator[None]:
    """Make `workdir` and (`lock`: on process 0 of a multi-process run only) hold its lock while
    the block runs; a ConfigError (one line naming the folder and the pid holding it) when another
    process holds it, or (one line naming the folder) when it cannot be written."""
    make(workdir)
    if not lock:
        yield
        return
    path = workdir / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:  # a read-only file system, no permission: nothing could be saved there
        raise ConfigError(
            f"the work directory {workdir} cannot be written ({error.strerror or error}): give a folder "
            "this process may write in (--workdir)"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise ConfigError(
                f"the work directory {workdir} is in use by another run (pid {holder}, {path}); wait for "
                "it to finish or give another --workdir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # released: no pid left to mislead
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
