"""Locks on the directories commands write (a run directory, an ``--out``): one command at a time in each.

An exclusive ``flock`` of a file beside the directory (``.<name>.lock``, so taking it makes no directory that a
refused command would leave behind). A second process asking for a held lock is refused at once with the holder's
PID and command; the kernel drops a lock with its holder, so a killed command's lock is taken over by the next.
"""
from __future__ import annotations

import fcntl
import functools
import inspect
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from nas_kd.errors import RunDirError
from nas_kd.provenance import command_line

T = TypeVar("T")
_HELD: dict[str, list[int]] = {}  # resolved directory -> [descriptor of its lock file, depth] (this process)


def lock_file(path: str | Path) -> Path:
    """The file whose ``flock`` is ``path``'s lock: beside it (``.<name>.lock``), so that taking the lock makes no
    directory a refused command would leave behind."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


def lock_dir(path: str | Path) -> None:
    """Take ``path``'s lock for this process (an exclusive ``flock`` of :func:`lock_file`): a second process that asks
    for it while this one holds it is refused at once, naming this one's PID and command; the kernel drops the lock
    when the holder dies, so a killed command's lock is taken over by the next. Re-entrant within a process (each
    call is undone by one :func:`unlock_dir`)."""
    path = Path(path)
    key = str(path.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 500).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise RunDirError(f"{path} is in use by {holder}: wait for it to end (or stop it), then run the same "
                          "command again") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"process {os.getpid()} (`{command_line()}`)\n".encode())
    _HELD[key] = [fd, 1]


def unlock_dir(path: str | Path) -> None:
    """Undo one :func:`lock_dir` of ``path`` by this process (the lock is released with the last)."""
    key = str(Path(path).resolve())
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        os.close(held[0])  # releases the flock; the file stays (removing it would race a waiting process)
        del _HELD[key]


@contextmanager
def dir_locked(path: str | Path) -> Iterator[None]:
    """``path`` locked (:func:`lock_dir`) for the block."""
    lock_dir(path)
    try:
        yield
    finally:
        unlock_dir(path)


def holding(argument: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator: the function runs with the directory given as its ``argument`` locked (a command's ``--out``)."""
    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args: Any, **kwargs: Any) -> T:
            with dir_locked(signature.bind(*args, **kwargs).arguments[argument]):
                return fn(*args, **kwargs)
        return locked
    return wrap
