"""Crash points: every file a long command writes passes :func:`point` just before the write becomes visible (the
rename of an atomic write, an append), so a test can kill the process at every write in turn and check that the
same command, run again, ends as an uninterrupted run does (``tests/test_crash_anywhere.py``).

Inert unless asked for by the environment: ``NAS_KD_CRASH_AT=N`` ends the process at the N-th point reached as
``kill -9`` would (``os._exit``: no clean-up, no flush; an append is left torn, half written), and
``NAS_KD_CRASH_LOG=FILE`` appends one line per point reached (``N what``) so a test knows how many there are.
"""
from __future__ import annotations

import os
from pathlib import Path

AT, LOG = "NAS_KD_CRASH_AT", "NAS_KD_CRASH_LOG"
KILLED = 137  # the exit status of a process killed by SIGKILL, as a shell reports it
_reached = 0


def point(what: str | Path, torn: tuple[Path, str] | None = None) -> None:
    """A write of ``what`` is about to become visible. ``torn``: (file, text) of an append, of which half is
    written when the process is ended here."""
    global _reached
    at, log = os.environ.get(AT), os.environ.get(LOG)
    if not at and not log:
        return
    _reached += 1
    if log:
        with open(log, "a") as f:
            f.write(f"{_reached} {what}\n")
    if at and _reached == int(at):
        if torn is not None:
            path, text = torn
            with open(path, "a") as f:
                f.write(text[: max(1, len(text) // 2)])
        os._exit(KILLED)
