"""Issue 6 acceptance: the searched student vs the best of 10 random archs vs a hand-designed arch,
all exported from the same supernet and KD-fine-tuned the same way.

  python scripts/search_acceptance.py prepare runs/search_fmnist runs/acceptance
  (for each runs/acceptance/archs/NAME.json:)
    nas-kd export --run runs/search_fmnist --arch runs/acceptance/archs/NAME.json --out runs/acceptance/NAME \
        --recalibrate-batches 20 --finetune-epochs 5 --recipe recipes/finetune_fmnist.yaml
  python scripts/search_acceptance.py collect runs/search_fmnist runs/acceptance CODE_COMMIT
"""
import json
import random
import sys
from pathlib import Path

import search_spaces

# Hand-designed: one block in each of the two high-resolution stages, two in the low-resolution
# ones, widths doubling per stage, bottleneck ratio 0.75 (35.67 MFLOPs, the closest such design to
# the 36.17 MFLOPs budget).
HANDCRAFTED = {"depths": (1, 1, 2, 2), "widths": (24, 48, 96, 192), "ratio": 0.75}


def handcrafted(space) -> dict:
    arch = {}
    for i, (d, w) in enumerate(zip(HANDCRAFTED["depths"], HANDCRAFTED["widths"]), start=1):
        arch[f"stage{i}.depth"], arch[f"stage{i}.width"] = d, w
        for j in range(1, max(space.stages[i - 1].depths) + 1):
            arch[f"stage{i}.block{j}.ratio"] = HANDCRAFTED["ratio"]
    return space.validate(arch)


def prepare(search_run: str, out: str) -> None:
    search = json.loads((Path(search_run) / "search.json").read_text())
    space, budget = search_spaces.get(search["space"]), search["budget_mflops"] * 1e6
    archs = {"student": search["best"]["arch"], "handcrafted": handcrafted(space)}
    rng, n = random.Random(1), 0
    while n < 10:
        a = space.sample(rng)
        if space.flops(a) <= budget:
            archs[f"random{n}"], n = a, n + 1
    (Path(out) / "archs").mkdir(parents=True, exist_ok=True)
    for name, a in archs.items():
        assert space.flops(a) <= budget, name
        (Path(out) / "archs" / f"{name}.json").write_text(json.dumps(a, indent=1) + "\n")


def collect(search_run: str, out: str, commit: str) -> None:
    search = json.loads((Path(search_run) / "search.json").read_text())
    runs = {p.parent.parent.name: json.loads(p.read_text()) for p in Path(out).glob("*/finetune/final.json")}
    random_runs = {k: v for k, v in runs.items() if k.startswith("random")}
    if len(random_runs) != 10 or "student" not in runs or "handcrafted" not in runs:
        raise SystemExit(f"missing runs: have {sorted(runs)}")
    best_random = max(random_runs, key=lambda k: random_runs[k]["test_acc"])
    res = {
        "budget_mflops": search["budget_mflops"], "evaluator": search["evaluator"], "strategy": search["strategy"],
        "student_mflops": runs["student"]["mflops"], "student_acc": runs["student"]["test_acc"],
        "random_best_acc": random_runs[best_random]["test_acc"], "random_best_mflops": random_runs[best_random]["mflops"],
        "random_accs": {k: v["test_acc"] for k, v in sorted(random_runs.items())},
        "random_mflops": {k: v["mflops"] for k, v in sorted(random_runs.items())},
        "handcrafted_acc": runs["handcrafted"]["test_acc"], "handcrafted_mflops": runs["handcrafted"]["mflops"],
        "handcrafted_design": HANDCRAFTED,
        "student_arch": runs["student"]["arch"],
        "finetune": "5 epochs, SGD lr 0.01 cosine, KD weight 0.7 at T=4 from the reference teacher "
                    "(recipes/finetune_fmnist.yaml), starting from supernet weights after BN recalibration",
        "commands": {"search": search["command"], "finetune_example": runs["student"]["command"],
                     "table": "python scripts/search_acceptance.py " + " ".join(sys.argv[1:])},
        "search_seconds": search["wall_seconds"],
        "finetune_seconds": {k: v["wall_seconds"] for k, v in sorted(runs.items())},
        "command": "python scripts/search_acceptance.py " + " ".join(sys.argv[1:]),
        "git_commit": commit,
        "wall_seconds": round(search["wall_seconds"] + sum(v["wall_seconds"] for v in runs.values()), 2),
    }
    Path("results/search_fmnist.json").write_text(json.dumps(res, indent=2) + "\n")
    pct = lambda v: f"{100 * v:.2f}"
    rows = [("searched student", res["student_mflops"], res["student_acc"]),
            (f"best of 10 random ({best_random})", res["random_best_mflops"], res["random_best_acc"]),
            ("hand-designed", res["handcrafted_mflops"], res["handcrafted_acc"])]
    lines = [f"# Search under {res['budget_mflops']:.2f} MFLOPs (40 % of the max subnet) on Fashion-MNIST", "",
             "| model | MFLOPs | test acc (%) after KD fine-tuning |", "|---|---|---|"]
    lines += [f"| {n} | {f:.2f} | {pct(a)} |" for n, f, a in rows]
    lines += ["", "All ten random archs: " + ", ".join(f"{k} {pct(v)} % ({res['random_mflops'][k]:.1f} MFLOPs)"
                                                    for k, v in res["random_accs"].items()), "",
              f"Search: `{search['command']}` ({search['wall_seconds']} s on 2 CPU cores).",
              "Each model: exported from `results/supernet_fmnist.pt`, BatchNorm recalibrated on 20 batches, then "
              + res["finetune"] + "; one run each, seed 0, on one H100 (ten or more at a time).",
              f"Example: `{runs['student']['command']}`.", f"Code commit: {commit}. Data: `results/search_fmnist.json`."]
    Path("results/search_fmnist.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    {"prepare": prepare, "collect": collect}[sys.argv[1]](*sys.argv[2:])
