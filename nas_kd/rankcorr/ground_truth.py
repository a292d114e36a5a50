"""Ground truth for the rank-correlation study: sampled archs trained stand-alone, cached per arch.

Each arch trains in ``<out>/ground_truth/<arch_id>/`` (a normal ``train-arch`` run directory).
A finished arch (``final.json`` present) is skipped, an interrupted one resumes from its last
checkpoint, and several processes can share the work: each claims an arch by creating
``<arch_id>.claim`` exclusively (a claim older than ``stale_seconds`` without progress is
taken over).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import search_spaces
from nas_kd.config import Recipe
from nas_kd.train.standalone import train_arch
from search_spaces import SAMPLERS


def arch_id(arch: dict[str, Any]) -> str:
    """A short stable id of a canonical arch (its directory name)."""
    return hashlib.sha1(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:12]


def sample_study_archs(recipe: Recipe) -> list[dict[str, Any]]:
    """The study's ``num_archs`` distinct archs, stratified over the FLOPs range, fixed by the seed."""
    cfg = recipe.rankcorr
    space = search_spaces.get(recipe.student.space)
    sampler = SAMPLERS.build(cfg.sampler, space=space)
    rng = random.Random(recipe.seed)
    seen: dict[str, dict] = {}
    for _ in range(100 * cfg.num_archs):
        if len(seen) == cfg.num_archs:
            break
        for arch in sampler.sample(rng, 1):
            seen.setdefault(arch_id(arch), arch)
    if len(seen) < cfg.num_archs:
        raise ValueError(f"could only draw {len(seen)} distinct archs of {space.name}, asked for {cfg.num_archs}")
    return sorted(seen.values(), key=space.flops)


def _claim(path: Path, stale_seconds: float) -> bool:
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        if time.time() - path.stat().st_mtime > stale_seconds:
            path.touch()
            return True
        return False


def run_ground_truth(recipe: Recipe, out: str | Path, *, stale_seconds: float = 3600.0,
                     show_progress: bool = True) -> list[dict[str, Any]]:
    """Train every study arch not yet finished (claiming each); returns the finished results, in FLOPs order."""
    root = Path(out) / "ground_truth"
    root.mkdir(parents=True, exist_ok=True)
    archs = sample_study_archs(recipe)
    (root / "archs.json").write_text(json.dumps(archs, indent=1) + "\n")
    for arch in archs:
        aid = arch_id(arch)
        if (root / aid / "final.json").exists() or not _claim(root / f"{aid}.claim", stale_seconds):
            continue
        r = copy.deepcopy(recipe)
        r.run.out_dir, r.run.name = str(root), aid
        train_arch(r, arch, resume=(root / aid / "checkpoints" / "last.pt").exists(), show_progress=show_progress)
    return collect_ground_truth(recipe, out)


def collect_ground_truth(recipe: Recipe, out: str | Path) -> list[dict[str, Any]]:
    """Finished ground-truth results of the study's archs (missing ones are left out)."""
    root = Path(out) / "ground_truth"
    results = []
    for arch in sample_study_archs(recipe):
        final = root / arch_id(arch) / "final.json"
        if final.exists():
            d = json.loads(final.read_text())
            results.append({"id": arch_id(arch), "arch": arch, "mflops": d["mflops"], "test_acc": d["test_acc"],
                            "val_acc": d["val_acc"], "wall_seconds": d["wall_seconds"]})
    return results
