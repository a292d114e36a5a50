"""``impressions``: data impressions for zero-shot knowledge distillation (Nayak et al., "Zero-Shot Knowledge
Distillation in Deep Networks", ICML 2019)."""
from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.errors import UserError
from nas_kd.synthesis.base import SYNTHESIZERS, BatchByBatch, Task
from nas_kd.typecheck import AtLeast1, NonEmpty, Positive


def class_similarity(teacher: nn.Module, num_classes: int) -> torch.Tensor:
    """The teacher's class similarity matrix: cosine similarities of its final layer's class weight vectors, each
    row min-max normalised to [0, 1] (the paper's; the diagonal is 1)."""
    heads = [m for m in teacher.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if not heads:
        raise UserError(f"--method impressions: the teacher has no final linear layer with {num_classes} outputs to "
                        "read class similarities from; use --method deepinversion")
    w = F.normalize(heads[-1].weight.detach().float(), dim=1)
    sim = w @ w.t()
    low, high = sim.min(1, keepdim=True).values, sim.max(1, keepdim=True).values
    return (sim - low) / (high - low).clamp_min(1e-12)


@SYNTHESIZERS.register("impressions", example={"iterations": 2})
class Impressions(BatchByBatch):
    r"""Each input is optimised (Adam, from Gaussian noise in the data's normalised space: the paper starts from
    uniform noise in pixel space) until the teacher's softened output matches a soft target
    drawn for its class from a Dirichlet distribution whose concentration is the class's row of the teacher's class
    similarity matrix (:func:`class_similarity`) times a scale ``beta`` (the batch's inputs alternate over ``betas``;
    the paper's 1.0 and 0.1: peaked and spread targets): cross-entropy between the target and
    :math:`\sigma(t(x)/T)`. The class similarities come from the teacher's last layer alone, and no BatchNorm prior is
    used, so any teacher with a final linear layer works. Defaults: the paper's (1,500 iterations at lr 0.01, T 20).
    """

    needs_batchnorm = False

    def __init__(self, *, iterations: AtLeast1 = 1500, lr: Positive = 0.01, temperature: Positive = 20.0,
                 betas: Annotated[list[Positive], NonEmpty()] = (1.0, 0.1)) -> None:
        self.iterations, self.lr, self.temperature, self.betas = int(iterations), float(lr), float(temperature), list(betas)

    def units(self, task: Task) -> int:
        return task.num_batches * self.iterations

    def soft_targets(self, similarity: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One Dirichlet draw per input: concentration ``beta`` x its class's similarity row (floored at 1e-3)."""
        beta = torch.tensor([self.betas[i % len(self.betas)] for i in range(len(targets))])
        concentration = (beta[:, None] * similarity[targets.cpu()]).clamp_min(1e-3)
        with torch.random.fork_rng(devices=[]):  # seeded by the batch's generator, the global state left alone
            torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=generator)))
            return torch.distributions.Dirichlet(concentration).sample()

    def make(self, task: Task, targets: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, Any]]:
        teacher = task.teacher.eval()
        soft = self.soft_targets(class_similarity(teacher, task.num_classes), targets, generator).to(targets.device)
        x = torch.randn((len(targets), *task.shape), generator=generator).to(targets.device).requires_grad_(True)
        opt = torch.optim.Adam([x], lr=self.lr)
        first = last = None
        for _ in range(self.iterations):
            opt.zero_grad(set_to_none=True)
            loss = -(soft * F.log_softmax(teacher(x) / self.temperature, dim=1)).sum(1).mean()
            loss.backward()
            opt.step()
            first = loss.item() if first is None else first
            last = loss.item()
            task.progress(1)
        return x.detach(), {"loss_first": first, "loss_last": last, "soft_targets": soft.cpu()}
