"""Run directories: resolved config snapshot, JSONL metrics log, checkpoints, final metrics."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nas_kd.config import Recipe, dump_recipe
from nas_kd.errors import UserError


class RunDirError(UserError):
    """The run directory cannot be used as asked (exists without --resume, or missing with it)."""


class RunDir:
    """``<out_dir>/<name>/`` holding ``config.yaml``, ``metrics.jsonl``, ``checkpoints/`` and ``final.json``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def of(cls, recipe: Recipe) -> "RunDir":
        """The recipe's run directory, without creating or checking anything."""
        return cls(Path(recipe.run.out_dir) / recipe.run.name)

    @classmethod
    def open(cls, recipe: Recipe, resume: bool) -> "RunDir":
        """Create a fresh run directory, or reopen one to resume; never overwrites a run that holds work.

        A directory holding neither a checkpoint nor a final result (a start that failed or was killed
        before its first checkpoint) holds nothing to lose: it is started afresh, with or without ``resume``.
        """
        run = cls.of(recipe)
        has_work = run.last_checkpoint.exists() or (run.path / "final.json").exists()
        if not resume and has_work:
            raise RunDirError(
                f"{run.path} already holds a run: pass --resume to continue it, "
                "or choose another name with --set run.name=NAME"
            )
        if not run.last_checkpoint.exists():
            for stale in ("metrics.jsonl", "final.json"):
                (run.path / stale).unlink(missing_ok=True)
        run.path.mkdir(parents=True, exist_ok=True)
        dump_recipe(recipe, run.path / "config.yaml")
        return run

    @property
    def last_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def log(self, record: dict[str, Any]) -> None:
        """Append one metrics record."""
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        """All metrics records, in order."""
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, epoch: int) -> None:
        """Drop records of epochs >= ``epoch`` (they are redone after a resume)."""
        kept = [r for r in self.metrics() if r.get("epoch", -1) < epoch]
        self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
