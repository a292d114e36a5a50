"""The epoch/step loop every trainer runs: progress bar, checkpoints, exact resume, metrics log."""
from __future__ import annotations

import math
import shutil
import signal
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn
from tqdm import tqdm

from nas_kd.checkpoint import load_checkpoint, save_checkpoint
from nas_kd.data import BatchIterator
from nas_kd.device import model_device, to_memory_format
from nas_kd.errors import Diverged, Stopped
from nas_kd.provenance import Stopwatch, write_result
from nas_kd.locks import unlock_dir
from nas_kd.runs import RunDir
from nas_kd.train import distributed as dist
from nas_kd.train.common import rng_state, set_rng_state

StepFn = Callable[..., dict[str, float]]  # (x, y) or (x, y, index) -> sums of this step; it calls backward
EvalFn = Callable[[int], dict[str, float]]


@dataclass
class LoopState:
    """Where a loop stands: the next (epoch, step), running sums of this epoch, time spent so far."""

    epoch: int = 0
    step: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0


class TrainLoop:
    """The trainer core: runs a training method's ``step_fn`` over every batch of every epoch and its ``eval_fn``
    after each epoch, and owns the ceremony around them.

    Per step: the batch is moved to the model's device, sharded across ``torchrun`` ranks, its images put in
    the memory format (``channels_last``); gradients are zeroed; ``step_fn(x, y[, index])`` computes its losses,
    calls ``backward`` (once or per sub-network) and returns the step's sums; then gradients are averaged
    across ranks and the optimiser and scheduler step. Checkpoints (atomic) hold the model, optimiser,
    scheduler, RNG states, loop position and any ``extra`` state (plus top-level ``meta``, e.g. what rebuilds a
    supernet), written every ``checkpoint_every_steps`` steps (0: never mid-epoch) and at each epoch's end
    (kept as ``epochNNN.pt`` too with ``keep_epoch_checkpoints``). ``resume()`` restores all of it, so a resumed
    run reproduces the uninterrupted one: the data order and augmentation depend only on (seed, epoch, step).
    Under ``torchrun`` only rank 0 writes checkpoints, metrics and results (:meth:`finish`).
    """

    def __init__(
        self,
        run: RunDir,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        batches: BatchIterator,
        epochs: int,
        *,
        checkpoint_every_steps: int = 0,
        extra_state: Callable[[], dict[str, Any]] | None = None,
        load_extra_state: Callable[[dict[str, Any]], None] | None = None,
        on_step: Callable[["TrainLoop"], None] | None = None,
        show_progress: bool = True,
        meta: dict[str, Any] | None = None,
        channels_last: bool = False,
        keep_epoch_checkpoints: bool = False,
    ) -> None:
        self.run, self.model, self.optimizer, self.scheduler = run, model, optimizer, scheduler
        self.batches, self.epochs, self.every = batches, epochs, checkpoint_every_steps
        self.extra_state, self.load_extra_state, self.on_step = extra_state, load_extra_state, on_step
        self.show_progress, self.meta = show_progress, meta or {}
        self.channels_last, self.keep_epoch_checkpoints = channels_last, keep_epoch_checkpoints
        self.state = LoopState()

    def checkpoint(self) -> None:
        """Write ``checkpoints/last.pt`` atomically (rank 0 only)."""
        if not dist.is_main():
            return
        save_checkpoint(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(),
                "loop": {"epoch": self.state.epoch, "step": self.state.step, "sums": self.state.sums, "elapsed": self.state.elapsed},
                "extra": self.extra_state() if self.extra_state else {},
                **self.meta,
            },
            self.run.last_checkpoint,
        )

    def resume(self) -> None:
        """Restore everything from ``checkpoints/last.pt``."""
        ckpt = load_checkpoint(self.run.last_checkpoint)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        self.state = LoopState(**ckpt["loop"])
        if self.load_extra_state:
            self.load_extra_state(ckpt["extra"])
        if dist.is_main():
            self.run.truncate_metrics(self.state.epoch)

    def fit(self, step_fn: StepFn, eval_fn: EvalFn) -> list[dict[str, Any]]:
        """Train to the last epoch; returns the metrics log. SIGINT (Ctrl-C) or SIGTERM ends the run after the
        current step with a checkpoint written, or, when it comes during the epoch's evaluation, right after the
        epoch's checkpoint (:class:`~nas_kd.errors.Stopped` says how to continue). A second signal stops at once,
        from the last checkpoint written."""
        with _StopOnSignals() as stop:
            return self._fit(step_fn, eval_fn, stop)

    def _fit(self, step_fn: StepFn, eval_fn: EvalFn, stop: "_StopOnSignals") -> list[dict[str, Any]]:
        st = self.state
        device = model_device(self.model)
        show = self.show_progress and dist.is_main()
        while st.epoch < self.epochs:
            watch = Stopwatch()
            self.model.train()
            bar = tqdm(
                self.batches.epoch(st.epoch, st.step),
                total=len(self.batches),
                initial=st.step,
                desc=f"epoch {st.epoch + 1}/{self.epochs}",
                disable=None if show else True,  # None: no bar when not a terminal (a log file)
                leave=False,
                dynamic_ncols=True,
            )
            for batch in bar:
                saved = False
                step_watch = Stopwatch()
                x, *rest = dist.shard(*(t.to(device, non_blocking=True) for t in batch))
                self.optimizer.zero_grad(set_to_none=True)
                sums = step_fn(to_memory_format(x, self.channels_last), *rest)
                bad = [k for k, v in sums.items() if not math.isfinite(v)]
                if bad:  # before the optimiser step: the weights stay finite, the last checkpoint is good
                    bar.close()
                    raise Diverged(f"training diverged at epoch {st.epoch + 1} step {st.step + 1}: {bad[0]} is "
                                   f"{sums[bad[0]]} (the last checkpoint is in {self.run.last_checkpoint}): lower "
                                   "train.lr")
                dist.average_gradients(self.model)
                self.optimizer.step()
                for k, v in sums.items():
                    st.sums[k] = st.sums.get(k, 0.0) + v
                st.sums["step_seconds"] = st.sums.get("step_seconds", 0.0) + step_watch.seconds()
                st.sums["steps"] = st.sums.get("steps", 0) + 1
                self.scheduler.step()
                st.step += 1
                bar.set_postfix({k: f"{v / st.sums['count']:.4f}" for k, v in st.sums.items()
                                 if k not in ("count", "step_seconds", "steps")}, refresh=False)
                if self.every and st.step % self.every == 0 and st.step < len(self.batches):
                    st.elapsed += watch.seconds()
                    watch = Stopwatch()
                    self.checkpoint()
                    saved = True
                if self.on_step:
                    self.on_step(self)
                if stop.signal is not None:
                    if not saved:
                        st.elapsed += watch.seconds()
                        self.checkpoint()
                    bar.close()
                    raise Stopped(f"stopped by {stop.signal} after epoch {st.epoch + 1} step {st.step}, with a "
                                  f"checkpoint in {self.run.last_checkpoint}: run the same command again to continue")
            bar.close()
            count = st.sums.pop("count", 1.0)
            step_seconds, steps = st.sums.pop("step_seconds", 0.0), st.sums.pop("steps", 1)
            record = {"epoch": st.epoch, **{f"train_{k}": v / count for k, v in st.sums.items()}}
            record["seconds_per_step"] = step_seconds / steps
            record["lr"] = self.optimizer.param_groups[0]["lr"]
            record.update(eval_fn(st.epoch))
            st.elapsed += watch.seconds()
            record["elapsed_seconds"] = round(st.elapsed, 2)
            st.epoch, st.step, st.sums = st.epoch + 1, 0, {}
            if dist.is_main():
                self.run.log(record)  # before the checkpoint: a resume truncates records it redoes
            self.checkpoint()
            if self.keep_epoch_checkpoints and dist.is_main():
                shutil.copyfile(self.run.last_checkpoint, self.run.last_checkpoint.with_name(f"epoch{st.epoch:03d}.pt"))
            dist.barrier()
            if show:
                tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            if stop.signal is not None and st.epoch < self.epochs:
                raise Stopped(f"stopped by {stop.signal} after epoch {st.epoch}, with a checkpoint in "
                              f"{self.run.last_checkpoint}: run the same command again to continue")
        return self.run.metrics()

    def finish(self, final: dict[str, Any], started: dict[str, str]) -> dict[str, Any]:
        """The run's ``final.json``: written by rank 0 (with the command, commit and the loop's elapsed time; then
        the run directory's lock is released); other ranks get ``final`` back as it is."""
        if not dist.is_main():
            return final
        record = write_result(self.run.path / "final.json", final, self.state.elapsed, started)
        unlock_dir(self.run.path)
        return record


class _StopOnSignals:
    """While active (in the main thread of a single-process run), SIGINT and SIGTERM only record their name in
    ``signal``; the loop then stops at the end of its step (or epoch). A second one raises
    :class:`~nas_kd.errors.Stopped` where the program is (checkpoints are written atomically, so the last one
    stands). One that came during the last epoch's evaluation is raised again once the training ends, to the
    handler it found (Ctrl-C: ``KeyboardInterrupt``). Under torchrun they keep their default action."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}

    def _record(self, signum: int, _frame: Any) -> None:
        if self.signal is not None:
            raise Stopped(f"stopped by a second {signal.Signals(signum).name} before a checkpoint: run the same command "
                          "again to continue from the last one")
        self.signal = signal.Signals(signum).name

    def __enter__(self) -> "_StopOnSignals":
        if threading.current_thread() is threading.main_thread() and dist.world_size() == 1:
            self._previous = {s: signal.signal(s, self._record) for s in self.SIGNALS}
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        if self.signal is not None and exc_type is None and self._previous:
            signal.raise_signal(signal.Signals[self.signal])  # the training ended first: the signal takes its course
