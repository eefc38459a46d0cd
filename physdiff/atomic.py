"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

One helper for the library (atlas figures, the command's outputs, network checkpoints),
the validation results and the benchmark reports (docs/design.md, "Errors and files").
The new content goes to a temporary file created next to the target (same folder, so
the final rename never crosses a file system), is flushed and ``fsync``-ed, gets the
usual permissions (``0o666`` less the umask, not ``mkstemp``'s ``0o600``) and replaces
the target with :func:`os.replace`, which is atomic on POSIX and Windows. The folder is
then synced too (where the platform allows), so that the rename survives a crash. If
anything fails on the way, a ``KeyboardInterrupt`` included, the temporary file is
removed and the old target is left as it was.

    atomic_write(path, lambda fh: torch.save(state, fh))    # any writer of a binary file
    atomic_write_bytes(path, data)
    atomic_write_text(path, text)
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import InputError

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "output_folder"]

_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
"""The names :func:`atomic_write` gives its temporary files (``mkstemp``'s eight random
characters between ``.<target>.`` and ``.tmp``)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sync_folder(folder: Path) -> None:
    """``fsync`` a folder so that a rename in it is durable (a no-op where folders cannot be
    opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(fh)`` on a binary file opened next to ``path``, then rename it over
    ``path``; returns ``path`` as a :class:`~pathlib.Path`.

    ``write`` receives the open file (``fig.savefig(fh, format="png")``,
    ``torch.save(obj, fh)``, ``np.savez(fh, ...)``, ``fh.write(data)``); it must not close
    it. The parent folder is created if it is missing. On any exception the temporary file
    is deleted and the exception propagates; ``path`` is untouched.
    """
    path = Path(path)
    if path.exists() and path.is_dir():
        raise IsADirectoryError(f"path must name a file, not a folder; got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _sync_folder(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes; got {type(data).__name__}")
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`), encoded as ``encoding``
    (UTF-8 by default); newlines are written as they are."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str; got {type(text).__name__}")
    return atomic_write_bytes(path, text.encode(encoding))


@contextmanager
def output_folder(
    path: str | os.PathLike, *, name: str = "out", log: Callable[[str], Any] | None = None
) -> Iterator[Path]:
    """Hold the folder ``path`` (created if missing) for one writer of a set of files at a
    time, and clear what a killed writer left in it.

    Files written one by one with :func:`atomic_write` are each whole, but two runs writing
    the same set into one folder at once can interleave (a figure from one run, its data
    from the other). Inside ``with output_folder(out):`` the calling process holds an
    exclusive ``flock`` on the folder itself (no lock file is left behind); a second run
    waits for the first to finish (``log`` is told once that it waits) and then writes its
    whole set, so the folder always holds one run's set. A path that is a file raises
    :class:`~physdiff.errors.InputError` naming ``name``. A writer killed with ``SIGKILL``
    cannot remove its temporary file: those (hidden, named by :func:`atomic_write`) are
    removed when the next writer takes the folder, as nobody else can be writing them then.
    The lock is released when the block ends or the process dies. Where ``flock`` is not
    available (Windows) the folder is not locked.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{name} {str(folder)!r} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        fcntl = None
    fd = os.open(folder, os.O_RDONLY) if fcntl is not None else None
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                (log or (lambda msg: print(msg, file=sys.stderr)))(
                    f"waiting for another run that is writing into {str(folder)!r}"
                )
                fcntl.flock(fd, fcntl.LOCK_EX)
        for entry in folder.iterdir():
            if _TEMPORARY.match(entry.name) and entry.is_file():
                entry.unlink(missing_ok=True)
        yield folder
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock
