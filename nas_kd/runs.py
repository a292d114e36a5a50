"""Run directories: resolved config snapshot, JSONL metrics log, checkpoints, final metrics."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from nas_kd import crash
from nas_kd.errors import RunDirError, UserError
from nas_kd.job import RunSpec
from nas_kd.locks import lock_dir, unlock_dir
from nas_kd.provenance import write_text_atomic


def write_config(config: dict[str, Any], path: str | Path) -> None:
    """Write a run's config (a resolved recipe, or an API call's options) as YAML, atomically."""
    write_text_atomic(path, yaml.safe_dump(config, sort_keys=False))


class ScalarWriter:
    """TensorBoard scalars in ``directory`` (the ``tensorboard`` extra: pip install 'nas-kd[tensorboard]'): one event
    file for as long as it is open; every write is flushed."""

    def __init__(self, directory: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("run.tensorboard needs the tensorboard package: pip install 'nas-kd[tensorboard]'") from None
        self.writer = SummaryWriter(str(directory))

    def write(self, step: int, values: dict[str, Any]) -> None:
        """The numbers of ``values`` at ``step`` (anything else is skipped)."""
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class RunDir:
    """``<out_dir>/<name>/`` holding ``config.yaml``, ``metrics.jsonl``, ``checkpoints/`` and ``final.json``."""

    def __init__(self, path: str | Path, tensorboard: bool = False) -> None:
        self.path = Path(path)
        self.tensorboard = tensorboard  # every record's numbers also go to TensorBoard (``tensorboard/``)
        self._scalars: ScalarWriter | None = None  # opened by the first record, one event file per process

    @classmethod
    def of(cls, spec: RunSpec) -> "RunDir":
        """The run directory of ``spec``, without creating or checking anything."""
        return cls(spec.path, spec.tensorboard)

    @classmethod
    def finished(cls, spec: RunSpec) -> dict[str, Any] | None:
        """The ``final.json`` of the run at ``spec`` when it finished with ``spec``'s config (a command of several runs,
        killed after this one finished, continues past it), else None."""
        run = cls.of(spec)
        final = run.path / "final.json"
        return json.loads(final.read_text()) if final.exists() and not run.changed_keys(spec.config) else None

    @classmethod
    def open(cls, spec: RunSpec, resume: bool) -> "RunDir":
        """Create a fresh run directory, or reopen one to continue it; never overwrites a run that holds work.

        A directory holding neither a checkpoint nor a final result (a start that failed or was killed before
        its first checkpoint) holds nothing to lose: it is started afresh. One holding a checkpoint of the same
        config (``config.yaml``) is continued, so a killed command run again continues where it stopped; one of
        another config, or a finished one, is refused with what to run instead, unless ``resume`` asks to
        continue it anyway.
        """
        run = cls.of(spec)
        lock_dir(run.path)  # held until the run's loop finishes (or this process ends)
        elsewhere = "choose another run name (--set run.name=NAME; for nas-kd export another --out; out= from Python)"
        if not resume and (run.last_checkpoint.exists() or (run.path / "final.json").exists()):
            changed = run.changed_keys(spec.config)
            refusal = (f"{run.path} holds a run of another recipe ({'; '.join(changed[:3])}): run its own recipe to "
                       f"continue it (a training command: or add --resume), or {elsewhere}" if changed else
                       f"{run.path} holds a finished run (its results are in final.json): {elsewhere} to train again"
                       if (run.path / "final.json").exists() else None)
            if refusal is not None:
                unlock_dir(run.path)
                raise RunDirError(refusal)
        if not run.last_checkpoint.exists():
            for stale in ("metrics.jsonl", "final.json"):
                (run.path / stale).unlink(missing_ok=True)
        run.path.mkdir(parents=True, exist_ok=True)
        write_config(spec.config, run.path / "config.yaml")
        return run

    def changed_keys(self, config: dict[str, Any]) -> list[str]:
        """``key: before -> now`` for every value of ``config`` that differs from the run's ``config.yaml`` (all of
        them, as one entry, when there is no readable one). Only keys both configs hold are compared: a key one lacks
        was added to (or dropped from) the recipes since the run started, and is not the user's change."""
        try:
            before = yaml.safe_load((self.path / "config.yaml").read_text())
        except (OSError, yaml.YAMLError):
            return ["no readable config.yaml"]
        now = yaml.safe_load(yaml.safe_dump(config, sort_keys=False))

        def flat(d: Any, prefix: str = "") -> dict[str, Any]:
            if not isinstance(d, dict):
                return {prefix: d}
            return {k: v for key, value in d.items() for k, v in flat(value, f"{prefix}{key}.").items()} \
                if d else {prefix: d}

        a, b = flat(before), flat(now)
        return [f"{k.rstrip('.')}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]

    @property
    def last_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def log(self, record: dict[str, Any]) -> None:
        """Append one metrics record (and, with ``tensorboard``, its numbers as scalars at step ``epoch``)."""
        line = json.dumps(record) + "\n"
        crash.point(self.metrics_path, torn=(self.metrics_path, line))
        with self.metrics_path.open("a") as f:
            f.write(line)
        if self.tensorboard:
            if self._scalars is None:
                self._scalars = ScalarWriter(self.path / "tensorboard")
            self._scalars.write(record.get("epoch", 0), {k: v for k, v in record.items() if k != "epoch"})

    def metrics(self) -> list[dict[str, Any]]:
        """All metrics records, in order."""
        if not self.metrics_path.exists():
            return []
        text = self.metrics_path.read_text()
        whole = text[: text.rfind("\n") + 1]  # a last line cut by a kill mid-append is not a record
        return [json.loads(line) for line in whole.splitlines() if line.strip()]

    def truncate_metrics(self, epoch: int) -> None:
        """Drop records of epochs >= ``epoch`` (they are redone after a resume)."""
        kept = [r for r in self.metrics() if r.get("epoch", -1) < epoch]
        write_text_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
