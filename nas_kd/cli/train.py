"""Training commands: the teacher, a supernet (any supernet.mode), a student with distillation terms, one arch, and
the data-free inputs a student can train on (``synthesize``)."""
from __future__ import annotations

import argparse

from nas_kd.cli.common import recipe_args, report
from nas_kd.inference import ENGINES
from nas_kd.latency import MIN_SECONDS
from nas_kd.recipe_checks import load_checked
from nas_kd.train import SUPERNET_TRAINERS
from nas_kd.typecheck import COUNT, FRACTION, NATURAL, NON_NEGATIVE, POSITIVE


def _cmd_train_teacher(args: argparse.Namespace) -> None:
    from nas_kd.recipes import train_teacher

    recipe = load_checked(args.recipe, args.overrides)
    report(train_teacher(recipe, resume=args.resume), args.results, ("test_acc", "flops", "params"))

def _cmd_train_supernet(args: argparse.Namespace) -> None:
    from nas_kd.recipes import train_supernet

    recipe = load_checked(args.recipe, args.overrides)
    report(train_supernet(recipe, resume=args.resume), args.results, ("max_acc", "min_acc", "median_acc"))

def _cmd_distill(args: argparse.Namespace) -> None:
    from nas_kd.recipes import distill
    from nas_kd.students import resolve_student

    recipe = load_checked(args.recipe, args.overrides)
    student = resolve_student(args.student or recipe.student.arch, recipe.student.space)
    report(distill(recipe, student, resume=args.resume), args.results,
            ("test_acc", "mflops", "params", "best_student", "students"))

def _cmd_train_arch(args: argparse.Namespace) -> None:
    from nas_kd.recipes import train_arch

    recipe = load_checked(args.recipe, args.overrides)
    report(train_arch(recipe, args.arch, resume=args.resume), args.results, ("test_acc", "mflops", "params"))


def _cmd_synthesize(args: argparse.Namespace) -> None:
    import json

    import torch
    import yaml

    from nas_kd.data import load_data
    from nas_kd.datafree import check_method, synthesize
    from nas_kd.errors import OptionError
    from nas_kd.registry import split_component
    from nas_kd.students import resolve_student
    from nas_kd.synthesis import SYNTHESIZERS
    from nas_kd.teacher import load_teacher
    from nas_kd.train.common import set_threads

    recipe = load_checked(args.recipe, args.overrides)
    try:
        spec = yaml.safe_load(args.method)
    except yaml.YAMLError as e:
        raise OptionError(f"--method {args.method!r}: not YAML ({str(e).splitlines()[0]})") from None
    name, options = split_component(spec, "--method", SYNTHESIZERS)
    method = SYNTHESIZERS.build_checked(name, SYNTHESIZERS.check_options(name, options, "--method"), "--method")
    set_threads(recipe.train.threads)
    data = load_data(recipe.data)
    teacher = load_teacher(recipe.teacher, data.num_classes, data.in_channels)
    student = None
    if args.student:
        torch.manual_seed(recipe.seed)  # a student built here starts from the recipe's seed
        student = resolve_student(args.student, recipe.student.space).make(data.input_shape, data.num_classes)
    check_method(method, teacher, student, data.input_shape)  # before any work
    result = synthesize(teacher, method=method, num_classes=data.num_classes, shape=data.input_shape, mean=data.mean,
                        std=data.std, out=args.out, num_images=args.num_images, batch_size=args.batch_size,
                        seed=recipe.seed, student=student, info={"teacher": recipe.teacher.checkpoint,
                                                                 "student": args.student})
    print(json.dumps({k: v for k, v in result.items() if k in ("dataset", "method", "num_images",
                                                                "seconds_per_1000_images") or k.endswith("_mean")},
                     indent=2))


def _cmd_quantize(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from nas_kd.provenance import Stopwatch, origin, write_result
    from nas_kd.recipes import quantize
    from nas_kd.train.quantize import write_markdown

    started, watch = origin(), Stopwatch()
    recipe = load_checked(args.recipe, args.overrides)
    payload = quantize(recipe, args.student, args.out, seeds=args.seeds, qat_epochs=args.qat_epochs,
                       qat_lr=args.qat_lr, calibration_batches=args.calibration_batches, threads=args.threads,
                       engines=args.engine, pass_seconds=args.pass_seconds)
    if args.results:
        payload = write_result(Path(f"{args.results}.json"), payload, watch.seconds(), started)
        write_markdown(payload, Path(f"{args.results}.md"))
    print(json.dumps({k: {m: v[m] for m in ("acc_mean", "latency_ms_b1", "latency_ms_b32", "speedup_vs_own_fp32_b32",
                                            "int8_convs")}
                      for k, v in payload["rows"].items()} | {"shipped": payload["shipped"]["row"]}, indent=2))


def _cmd_prune(args: argparse.Namespace) -> None:
    import json

    import yaml

    from nas_kd.errors import OptionError
    from nas_kd.recipes import prune

    try:
        spec = yaml.safe_load(args.pruner)
    except yaml.YAMLError as e:
        raise OptionError(f"--pruner {args.pruner!r}: not YAML ({str(e).splitlines()[0]})") from None
    record = prune(load_checked(args.recipe, args.overrides), spec, args.out, budget_mflops=args.budget_mflops,
                   budget_fraction=args.budget_fraction, finetune_epochs=args.finetune_epochs)
    print(json.dumps({k: record[k] for k in ("pruner", "ratio", "mflops", "params", "cut_test_acc", "test_acc")},
                     indent=2))


def _cmd_specialists(args: argparse.Namespace) -> None:
    import json

    from nas_kd.recipes import specialists

    recipe = load_checked(args.recipe, args.overrides)
    record = specialists(recipe, args.out, clusters=args.clusters, cluster_size=args.cluster_size, epochs=args.epochs,
                         batches=args.batches)
    print(json.dumps({k: record[k] for k in ("clusters", "generalist_test_acc", "ensemble_test_acc", "teacher")},
                     indent=2))


def _run_args(p: argparse.ArgumentParser) -> None:
    """What every training command takes besides its recipe."""
    p.add_argument("--resume", action="store_true", help="continue the run even if its recipe changed (a killed run of "
                   "the same recipe continues by itself)")
    p.add_argument("--results", help="also write the final metrics JSON here")


def add(sub: argparse._SubParsersAction) -> None:
    """The parsers of this module's commands."""
    p = sub.add_parser("train-teacher", help="train a teacher (the reference ResNet or your own model)")
    recipe_args(p)
    _run_args(p)
    p.set_defaults(func=_cmd_train_teacher)

    p = sub.add_parser("train-supernet", help="train a supernet by supernet.mode "
                                                    f"({', '.join(SUPERNET_TRAINERS.available())})")
    recipe_args(p)
    _run_args(p)
    p.set_defaults(func=_cmd_train_supernet)

    p = sub.add_parser("distill", help="train a student with the recipe's distillation terms (nas_kd.distill)")
    recipe_args(p)
    p.add_argument("--student", help="space:max|min, an arch JSON file, an exported subnet directory or "
                                      "package.module:function (default: the recipe's student.arch)")
    _run_args(p)
    p.set_defaults(func=_cmd_distill)

    p = sub.add_parser("synthesize", help="data-free: images from the recipe's teacher alone, by a synthesis method, "
                                          "written as a dataset (train on it with --set data.synthetic=OUT/synthetic.npz)")
    recipe_args(p)
    p.add_argument("--out", required=True, help="directory for the batches, synthetic.npz and synthesis.json")
    p.add_argument("--method", default="deepinversion",
                   help="the method and its options, {name, ...options} in YAML, e.g. '{name: deepinversion, "
                        "iterations: 300}', '{name: generator, steps: 2000}', impressions (default: deepinversion)")
    p.add_argument("--num-images", type=COUNT, default=2000, help="images to make (class-balanced)")
    p.add_argument("--batch-size", type=COUNT, default=256, help="images per batch file (optimised together by the "
                                                                 "batch-by-batch methods)")
    p.add_argument("--student", help="the student a method uses: deepinversion's competition term (Adaptive "
                                     "DeepInversion; an exported student directory), generator's adversary (space:min, "
                                     "an arch JSON file, ...)")
    p.set_defaults(func=_cmd_synthesize)

    p = sub.add_parser("prune", help="prune the recipe's teacher to a FLOPs budget (a pruning criterion, Torch-Pruning's "
                                     "dependency graph) and fine-tune it with the recipe's distill terms")
    recipe_args(p)
    p.add_argument("--out", required=True, help="directory for the pruned network (pruned.json, weights.pt) and prune.json")
    p.add_argument("--pruner", default="l1", help="the criterion and its options, {name, ...options} in YAML, e.g. l1, "
                                                  "fpgm, '{name: taylor, batches: 4}' (default: l1)")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-mflops", type=POSITIVE, help="FLOPs budget in MFLOPs")
    budget.add_argument("--budget-fraction", type=FRACTION, help="FLOPs budget as a fraction of the teacher's")
    p.add_argument("--finetune-epochs", type=NATURAL, default=0, help="fine-tuning epochs after pruning, with the "
                                                                     "recipe's distill terms (0: none)")
    p.set_defaults(func=_cmd_prune)

    p = sub.add_parser("specialists", help="Hinton's specialists: clusters of the classes the recipe's teacher confuses, "
                                           "a specialist per cluster, and the ensemble as a teacher")
    recipe_args(p)
    p.add_argument("--out", required=True, help="directory for the specialists' runs, ensemble.pt, specialists.json")
    p.add_argument("--clusters", type=COUNT, default=1, help="specialists (disjoint clusters of confused classes)")
    p.add_argument("--cluster-size", type=COUNT, default=4, help="classes per cluster")
    p.add_argument("--epochs", type=COUNT, default=2, help="epochs of each specialist (from the generalist's weights)")
    p.add_argument("--batches", choices=("enriched", "data"), default="enriched",
                   help="each specialist's training set: its classes' images and as many random others (the paper's "
                        "enriched batches), or the whole training split")
    p.set_defaults(func=_cmd_specialists)

    p = sub.add_parser("quantize", help="int8 for the CPU: post-training and quantisation-aware distillation (the "
                                        "recipe's distill terms) of an exported student, run by onnxruntime and OpenVINO")
    recipe_args(p)
    p.add_argument("--student", required=True, help="an exported student directory (nas-kd export / run)")
    p.add_argument("--out", required=True, help="directory for the ONNX graphs and the QAT runs")
    p.add_argument("--seeds", type=COUNT, default=3, help="quantisation-aware runs (seeds 0 .. N-1)")
    p.add_argument("--qat-epochs", type=COUNT, default=2, help="epochs of quantisation-aware distillation")
    p.add_argument("--qat-lr", type=POSITIVE, default=5e-4, help="its learning rate (a fine-tuning of a net whose "
                   "BatchNorm is folded: 5e-3 diverged on the quickstart student, 5e-4 did not)")
    p.add_argument("--calibration-batches", type=COUNT, default=8, help="training batches calibrating the ranges")
    p.add_argument("--threads", type=COUNT, default=2, help="intra-op threads of the engines")
    p.add_argument("--pass-seconds", type=NON_NEGATIVE, default=MIN_SECONDS, help="each timing pass lasts at least "
                   "this long (every graph interleaved; two passes per batch size: first and retest)")
    p.add_argument("--engine", action="append", choices=ENGINES, help="an engine to run the graphs with (repeat for "
                   "several; default: every installed one of " + ", ".join(ENGINES) + ")")
    p.add_argument("--results", help="also write RESULTS.json and RESULTS.md (e.g. results/quantize_fmnist)")
    p.set_defaults(func=_cmd_quantize)

    p = sub.add_parser("train-arch", help="train one architecture of a space from scratch (optionally with KD)")
    recipe_args(p)
    p.add_argument("--arch", help="'max', 'min' or a JSON arch file (default: the recipe's student.arch)")
    _run_args(p)
    p.set_defaults(func=_cmd_train_arch)
