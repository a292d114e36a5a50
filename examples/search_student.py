"""Search a student for my in-memory teacher and tensors: the whole job from Python.

    python examples/search_student.py            # Fashion-MNIST (5,000 training images), the reference teacher

``main`` takes any trained ``nn.Module`` (with the module names of its stages) and any images in memory; here the
teacher is the committed reference ResNet and the images Fashion-MNIST's, as tensors.
"""
from __future__ import annotations

import torch
import torch.nn as nn

import nas_kd


def main(teacher: nn.Module, stages: list[str], x: torch.Tensor, y: torch.Tensor, *, budget_fraction: float = 0.1,
         epochs: int = 2, trials: int = 30, finetune_epochs: int = 2, batch_size: int = 128,
         out: str | None = None) -> nas_kd.RunResult:
    """A student under ``budget_fraction`` of the teacher's FLOPs: supernet, search, export, distillation."""
    data = nas_kd.make_data((x, y), val_fraction=0.1)
    result = nas_kd.run(teacher, data, teacher_stages=stages, budget_fraction=budget_fraction, space="resnet",
                        epochs=epochs, evaluator="kl", strategy={"name": "evolution", "population": min(15, trials)},
                        trials=trials,
                        terms=[{"name": "kd", "weight": 0.7, "temperature": 4.0}], ce_weight=0.3,
                        finetune_epochs=finetune_epochs, out=out,
                        batching={"batch_size": batch_size, "augment_pad": 0})
    m = result.metrics
    print(f"student: {m['student_mflops']:.2f} MFLOPs ({100 * m['student_flops_fraction_of_teacher']:.1f} % of the "
          f"teacher), test accuracy {100 * m['student_test_acc']:.2f} % (teacher {100 * m['teacher_test_acc']:.2f} %)")
    return result


if __name__ == "__main__":
    from nas_kd.models.resnet_teacher import ResNetTeacher

    teacher = ResNetTeacher(num_classes=10, in_channels=1)
    teacher.load_state_dict(torch.load("results/teacher_fmnist.pt", weights_only=True)["model"])
    fmnist = nas_kd.load_dataset("fashion-mnist", val_size=0, limit_train=5000)  # any tensors would do
    x = fmnist.train.x * fmnist.std.view(1, -1, 1, 1) + fmnist.mean.view(1, -1, 1, 1)  # back to [0, 1]
    main(teacher, ["stem", "stage1", "stage2", "stage3", "stage4"], x, fmnist.train.y, out="runs/example_search")
