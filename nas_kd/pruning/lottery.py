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

from nas_kd.pruning.base import PRUNERS, Pruner, remove_channels
from nas_kd.typecheck import AtLeast1, Positive, Range


@PRUNERS.register("lottery", example={"rounds": 2, "steps": 2})
class Lottery(Pruner):
    """``rounds`` rounds, each removing the same share of the remaining channels by the L1 norm of their weights
    (their product removes ``ratio``); between rounds the network trains ``steps`` SGD steps (cross-entropy, learning
    rate ``lr``, momentum 0.9) on the training batches, so the next round ranks the magnitudes training gave the
    survivors. With ``rewind`` (the lottery ticket) every round trains from the rewinding point and the result keeps
    the weights the surviving channels had there: the rounds only choose the ticket. Without it the training carries
    on from round to round and the result keeps its weights (iterative pruning with fine-tuning, Han et al. 2015).

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

    def cut(self, model: nn.Module, input_shape: tuple[int, ...], ratio: float,
            batches: list[tuple[torch.Tensor, torch.Tensor]]) -> nn.Module:
        share = 1 - (1 - ratio) ** (1 / self.rounds)
        start, net = copy.deepcopy(model).eval(), copy.deepcopy(model).eval()
        for r in range(self.rounds):
            if r:
                if self.rewind:
                    net = copy.deepcopy(start)
                self._train(net, batches)
            remove_channels(net, input_shape, share, self.importance(), global_pruning=self.global_pruning,
                            twin=start if self.rewind else None)
        return (start if self.rewind else net).eval()

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
