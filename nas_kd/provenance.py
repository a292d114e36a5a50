"""Where a result came from: the command line, the git commit and the wall time."""
from __future__ import annotations

import functools
import json
import os
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from nas_kd import crash


@functools.cache
def git_commit() -> str:
    """The git commit this process's code came from (with ``-dirty`` if the tree had uncommitted changes),
    or ``unknown``; read once per process, so a long worker keeps naming the code it started with.

    ``$NAS_KD_GIT_COMMIT`` overrides it, for copies of a checkout without (or with a stale) ``.git``.
    """
    if os.environ.get("NAS_KD_GIT_COMMIT"):
        return os.environ["NAS_KD_GIT_COMMIT"]
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def machine() -> dict[str, Any]:
    """The CPU model, torch version and intra-op threads of this process. A CPU training run reproduces bit for bit
    only where all three match: other CPUs pick other kernels, whose float sums round differently."""
    import platform

    import torch

    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
    except OSError:
        names = []
    return {"cpu": names[0] if names else platform.processor() or platform.machine(), "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def command_line() -> str:
    """The command that started this process, as a copyable shell line."""
    prog = Path(sys.argv[0]).name
    if prog in {"__main__.py", "cli.py"}:  # python -m nas_kd / python -m nas_kd.cli: same as the script
        prog = "nas-kd"
    return " ".join([prog, *map(shlex.quote, sys.argv[1:])])


class Stopwatch:
    """Wall-clock timer started at construction."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start


def origin() -> dict[str, str]:
    """``command`` and ``git_commit`` of this process; take it when a run starts, not when it ends."""
    return {"command": command_line(), "git_commit": git_commit()}


def write_result(path: str | Path, payload: dict[str, Any], wall_seconds: float, started: dict[str, str]) -> dict:
    """Write a result JSON: ``payload`` plus ``command``, ``git_commit`` (from ``started``) and ``wall_seconds``.

    Atomic: the text goes to a temp file beside ``path``, renamed over it once complete, so a process killed
    mid-write leaves either the old file or none, never a truncated one that a re-run would trip on."""
    record = {**payload, **started, "wall_seconds": round(wall_seconds, 2)}
    write_json_atomic(path, record)
    return record


def write_json_atomic(path: str | Path, payload: Any) -> None:
    """``payload`` as indented JSON at ``path``, through a temp file beside it renamed over it once complete (a
    process killed mid-write leaves the old file or none)."""
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    """``text`` at ``path``, atomically (:func:`atomic_file`)."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temp file beside ``path`` for the block to write, renamed over ``path`` (a crash point) when the block ends
    without error: a process killed meanwhile leaves the old file or none. A temp file a killed write left behind
    is removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        crash.point(path)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def commit_record(path: Path, attempts: int = 5) -> None:
    """``git commit`` just ``path`` (retrying while another git command holds the index lock), so a long
    experiment's results outlive the session that ran them."""
    for attempt in range(attempts):
        add = subprocess.run(["git", "add", str(path)], capture_output=True, text=True)
        done = add.returncode == 0 and subprocess.run(
            ["git", "commit", "-q", "-m", f"Result record {path.parent.name}/{path.stem}", "--", str(path)],
            capture_output=True, text=True).returncode == 0
        if done:
            return
        time.sleep(2 * (attempt + 1))
    print(f"warning: could not commit {path}; commit it by hand")
