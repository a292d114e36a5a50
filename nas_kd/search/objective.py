"""What a search optimises: an evaluator's oriented score of an arch, cached by arch, under a FLOPs budget and
optionally a latency budget (predicted from a per-block latency table measured on the target machine)."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable

from nas_kd import crash
from nas_kd.errors import BudgetError
from nas_kd.latency import RUNTIME, require_here, require_match
from nas_kd.provenance import write_text_atomic
from search_spaces import StagedSpace
from search_spaces.sampling import FlopsStratifiedSampler

Row = dict[str, Any]


def arch_key(arch: dict[str, Any]) -> str:
    """Cache key of a canonical arch."""
    return json.dumps(arch, sort_keys=True)


class Objective:
    """Scores archs with ``score_fn`` (a row per arch holding at least ``primary``), once per arch.

    ``feasible(arch)`` tells whether the arch fits every budget (exact FLOPs count; with ``budget_ms``, the
    latency predicted by ``latency_table``, which each row then carries as ``latency_ms``);
    ``sample_feasible(rng)`` draws a random arch that fits (uniform and size-biased proposals).

    With a ``journal`` (a JSONL file), every newly scored row is appended to it as it is scored, and the rows
    already there are loaded first: a search killed at any moment and run again scores nothing twice, and a
    seeded strategy replays the same proposals, so it ends with the same result as an uninterrupted run.
    """

    def __init__(self, space: StagedSpace, score_fn: Callable[[dict], Row], primary: str, budget_flops: float,
                 progress: Any = None, *, budget_ms: float | None = None, latency_table: dict | None = None,
                 journal: str | Path | None = None, runtime: str = RUNTIME) -> None:
        space.check_budget(budget_flops)
        if budget_ms is not None:
            if latency_table is None:
                raise BudgetError("a latency budget needs a latency table (nas-kd latency-table, then --latency-table)")
            require_match(space, latency_table)
            require_here(latency_table, runtime)
            fastest = space.latency(space.min_arch(), latency_table)
            if budget_ms < fastest:
                raise BudgetError(f"budget {budget_ms:.3f} ms is below the fastest {space.name} arch "
                                  f"({fastest:.3f} ms predicted on {latency_table['device']}, batch {latency_table['batch_size']})")
        self.budget_ms, self.latency_table = budget_ms, latency_table
        self.space, self.score_fn, self.primary, self.budget = space, score_fn, primary, budget_flops
        self.cache: dict[str, Row] = {}
        self.progress = progress  # a tqdm bar (or None), advanced once per newly scored arch
        self._proposer = FlopsStratifiedSampler(space, bins=1)
        self.journal = Path(journal) if journal is not None else None
        if self.journal is not None and self.journal.exists():  # scored before a kill: never scored again
            text = self.journal.read_text()
            if not text.endswith("\n"):  # a line cut by a kill mid-write: drop it, so appends start a fresh line
                text = text[: text.rfind("\n") + 1]
                write_text_atomic(self.journal, text)
            for line in text.splitlines():
                row = json.loads(line)
                self.cache[arch_key(row["arch"])] = row

    def latency_ms(self, arch: dict[str, Any]) -> float | None:
        """Predicted latency of ``arch`` (``None`` without a latency table)."""
        return None if self.latency_table is None else self.space.latency(arch, self.latency_table)

    def feasible(self, arch: dict[str, Any]) -> bool:
        return self.space.flops(arch) <= self.budget and (self.budget_ms is None or self.latency_ms(arch) <= self.budget_ms)

    def __call__(self, arch: dict[str, Any]) -> Row:
        arch = self.space.validate(arch)
        key = arch_key(arch)
        if key not in self.cache:
            row = self.score_fn(arch)
            if self.latency_table is not None:
                row = {**row, "latency_ms": self.latency_ms(arch)}
            self.cache[key] = row
            if self.journal is not None:
                line = json.dumps(row) + "\n"
                crash.point(self.journal, torn=(self.journal, line))
                with self.journal.open("a") as f:
                    f.write(line)
            if self.progress is not None:
                self.progress.update(1)
        return self.cache[key]

    def score(self, arch: dict[str, Any]) -> float:
        return self(arch)[self.primary]

    def sample_feasible(self, rng: random.Random, tries: int = 2000) -> dict[str, Any]:
        """A random arch under the budget (the min arch if ``tries`` proposals all miss)."""
        for i in range(tries):
            arch = self.space.sample(rng) if i % 2 == 0 else self._proposer.propose(rng)
            if self.feasible(arch):
                return arch
        return self.space.min_arch()

    def rows(self) -> list[Row]:
        """Every scored feasible arch, best first."""
        rows = [r for r in self.cache.values() if r["mflops"] * 1e6 <= self.budget
                and (self.budget_ms is None or r["latency_ms"] <= self.budget_ms)]
        return sorted(rows, key=lambda r: r[self.primary], reverse=True)
