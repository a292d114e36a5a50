"""``lottery``: iterative magnitude pruning with weight rewinding, the lottery-ticket procedure (Frankle & Carbin,
"The Lottery Ticket Hypothesis", ICLR 2019; rewinding as Frankle et al., "Linear Mode Connectivity and the Lottery
Ticket Hypothesis", ICML 2020, and Renda et al., "Comparing Rewinding and Fine-tuning in Neural Network Pruning",
ICLR 2020), on channels."""
from __future__ import annotations

import copy
from typing import Annotated, Any

import torch
import torch.nn as nn
import torch_pruning as tp

from nas_kd.flops import count_flops
from nas_kd.pruning.base import PRUNERS, Pruner, remove_channels
from nas_kd.typecheck import AtLeast1, Positive, Range


@PRUNERS.register("lottery", example={"rounds": 2, "steps": 2})
class Lottery(Pruner):
    """``rounds`` rounds of pruning by the L1 norm of the channels' weights, each to a FLOPs budget on the geometric
    path from the network's FLOPs to the target (the last round's budget is the target; each round bisects its
    share as every pruner does); between rounds the survivors train ``steps`` SGD steps (cross-entropy, learning rate
    ``lr``, momentum 0.9) on the training batches, so the next round ranks the magnitudes training gave them. With
    ``rewind`` (the lottery ticket) each round trains from the rewinding point and the result keeps the weights the
    surviving channels had there: the rounds only choose the ticket. Without it the training carries on from round
    to round and the result keeps its weights (iterative pruning with fine-tuning, Han et al. 2015). The report adds
    each round's share and MFLOPs.

    Simplified: the papers' unstructured weight masks become removed channels (a smaller dense network, as every
    pruner here), and the rewinding point is where pruning starts, the trained network: rewinding to an early
    iteration of the network's own training needs its training history, which a finished checkpoint does not
    carry (Renda et al.'s weight rewinding of a trained network to its pre-pruning weights is this form)."""

    def __init__(self, *, rounds: Annotated[int, Range(1, 10)] = 3, steps: AtLeast1 = 60, lr: Positive = 0.01,
                 rewind: bool = True, global_pruning: bool = False) -> None:
        super().__init__(global_pruning=global_pruning)
        self.rounds, self.steps, self.lr, self.rewind = int(rounds), int(steps), float(lr), bool(rewind)

    def data_batches(self) -> int:
        return self.steps if self.rounds > 1 else 0

    def importance(self) -> Any:
        return tp.importance.MagnitudeImportance(p=1)

    def to_budget(self, model: nn.Module, input_shape: tuple[int, ...], budget_mflops: float,
                  batches: list[tuple[torch.Tensor, torch.Tensor]], steps: int) -> tuple[nn.Module, dict[str, Any]]:
        before = count_flops(model, (1, *input_shape)) / 1e6
        start, net = copy.deepcopy(model).eval(), copy.deepcopy(model).eval()
        rounds = []
        for r in range(1, self.rounds + 1):
            if r > 1:
                if self.rewind:
                    net = copy.deepcopy(start)
                self._train(net, batches)
            target = before * (budget_mflops / before) ** (r / self.rounds)
            _, found = super().to_budget(net, input_shape, target, batches, steps)  # this round's share, bisected
            remove_channels(net, input_shape, found["ratio"], self.importance(), global_pruning=self.global_pruning,
                            twin=start if self.rewind else None)
            rounds.append({"ratio": found["ratio"], "budget_mflops": target,
                           "mflops": count_flops(net, (1, *input_shape)) / 1e6})
        return (start if self.rewind else net).eval(), {**found, "rounds": rounds}

    def _train(self, net: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """``steps`` SGD steps on ``batches`` in turn (no randomness: the same cut for the same inputs)."""
        opt = torch.optim.SGD(net.parameters(), lr=self.lr, momentum=0.9)
        net.train()
        for i in range(self.steps):
            x, y = batches[i % len(batches)]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        net.eval()
