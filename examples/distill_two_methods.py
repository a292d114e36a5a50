"""Distil a student I already have with two methods, and compare them.

    python examples/distill_two_methods.py       # Fashion-MNIST (5,000 training images), the reference teacher

The student is a plain PyTorch model of your own (here a small CNN); the two methods are logit ones
(``kd`` and AlphaNet's ``alpha_div``), which need nothing but the two models' outputs.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

import nas_kd


def small_cnn(num_classes: int, in_channels: int = 1, width: int = 16) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes))


def main(student: nn.Module, teacher: nn.Module, data, *, epochs: int = 3, out: str | None = None
         ) -> dict[str, nas_kd.DistillResult]:
    """The same student (two copies of its initial weights) distilled with ``kd`` and with ``alpha_div``."""
    methods = {"kd": [{"name": "kd", "weight": 0.7, "temperature": 4.0}], "alpha_div": [{"name": "alpha_div"}]}
    results = {}
    for name, terms in methods.items():
        results[name] = nas_kd.distill_student(copy.deepcopy(student), teacher, data, terms=terms, ce_weight=0.3,
                                       epochs=epochs, out=f"{out}/{name}" if out else None,
                                       batching={"batch_size": 128, "augment_pad": 0})
    for name, r in results.items():
        print(f"{name:10s} test accuracy {100 * r.metrics['test_acc']:.2f} % ({r.metrics['mflops']:.2f} MFLOPs)")
    return results


if __name__ == "__main__":
    from nas_kd.models.resnet_teacher import ResNetTeacher

    teacher = ResNetTeacher(num_classes=10, in_channels=1)
    teacher.load_state_dict(torch.load("results/teacher_fmnist.pt", weights_only=True)["model"])
    data = nas_kd.load_dataset("fashion-mnist", val_size=1000, limit_train=5000, limit_test=2000)
    torch.manual_seed(0)
    main(small_cnn(data.num_classes), teacher, data, out="runs/example_distill")
