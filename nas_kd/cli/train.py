"""Training commands: the teacher, a supernet (any supernet.mode), a student with distillation terms, one arch."""
from __future__ import annotations

import argparse

from nas_kd.cli.common import recipe_args, report
from nas_kd.recipe_checks import load_checked


def _cmd_train_teacher(args: argparse.Namespace) -> None:
    from nas_kd.train.standalone import train_teacher

    recipe = load_checked(args.recipe, args.overrides)
    report(train_teacher(recipe, resume=args.resume), args.results, ("test_acc", "flops", "params"))

def _cmd_train_supernet(args: argparse.Namespace) -> None:
    from nas_kd.train import train_supernet

    recipe = load_checked(args.recipe, args.overrides)
    report(train_supernet(recipe, resume=args.resume), args.results, ("max_acc", "min_acc", "median_acc"))

def _cmd_distill(args: argparse.Namespace) -> None:
    from nas_kd.students import resolve_student
    from nas_kd.train.distill import train_students

    recipe = load_checked(args.recipe, args.overrides)
    student = resolve_student(args.student or recipe.student.arch, recipe.student.space)
    report(train_students(recipe, student, resume=args.resume), args.results,
            ("test_acc", "mflops", "params", "best_student", "students"))

def _cmd_train_arch(args: argparse.Namespace) -> None:
    from nas_kd.train.standalone import train_arch

    recipe = load_checked(args.recipe, args.overrides)
    report(train_arch(recipe, args.arch, resume=args.resume), args.results, ("test_acc", "mflops", "params"))


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

    p = sub.add_parser("train-supernet", help="train a supernet by supernet.mode (sandwich: weight-sharing, in-place "
                                                    "distillation; blockwise: DNA)")
    recipe_args(p)
    _run_args(p)
    p.set_defaults(func=_cmd_train_supernet)

    p = sub.add_parser("distill", help="train a student with the recipe's distillation terms (nas_kd.distill)")
    recipe_args(p)
    p.add_argument("--student", help="space:max|min, an arch JSON file, an exported subnet directory or "
                                      "package.module:function (default: the recipe's student.arch)")
    _run_args(p)
    p.set_defaults(func=_cmd_distill)

    p = sub.add_parser("train-arch", help="train one architecture of a space from scratch (optionally with KD)")
    recipe_args(p)
    p.add_argument("--arch", help="'max', 'min' or a JSON arch file (default: the recipe's student.arch)")
    _run_args(p)
    p.set_defaults(func=_cmd_train_arch)
