"""One writer per folder: an OS lock (``flock``) that the kernel frees when its holder dies.

A study folder (``guided run``) and a search folder (``guided search``) each take ``.guided.lock`` while
they run, so a second process given the same ``--out`` is refused in one line naming the first one's
PID, and a holder killed with SIGKILL leaves nothing that needs cleaning: the next ``--resume`` proceeds.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from guided.errors import UserError

__all__ = ["folder_lock", "LOCK_NAME"]

LOCK_NAME = ".guided.lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "folder") -> Iterator[Path]:
    """Hold ``folder``'s lock for the ``with`` block (the folder must exist); refuse if another process holds it.

    The lock file stays behind (empty of meaning once unlocked) and records the holder's PID for the
    refusal message. Where ``flock`` does not exist (Windows), nothing is locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield Path(folder)
        return
    path = Path(folder) / LOCK_NAME
    fd = _open_regular(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise UserError(
                f"{what} {folder} is in use by another guided process (PID {holder}); wait for it to finish, or "
                "stop it and pass --resume"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield Path(folder)
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _open_regular(path: Path) -> int:
    """Open (or create) the lock file itself: never through a symbolic link, never a FIFO, device or folder."""
    import stat

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        what = "is a symbolic link" if os.path.islink(path) else f"cannot be opened ({exc.strerror})"
        raise UserError(f"lock file {path} {what}; guided locks only a regular file it made: remove it") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"lock file {path} is not a regular file (a FIFO or device); remove it and run again")
    return fd
