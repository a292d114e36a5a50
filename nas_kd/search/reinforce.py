"""``reinforce``: a policy-gradient search in the manner of AKD (Liu et al., "Search to Distill", CVPR 2020) and
Zoph & Le's NAS, rewarded by the evaluator's score.

The policy is one categorical distribution per choice label (logits start at 0: uniform). Each step samples
an arch; a sample over the budget is drawn again (up to ``proposals_per_trial`` times, then a random feasible
arch is taken), so infeasible archs are never scored; the feasible one's reward is the objective's oriented
score (an arch already scored reuses its score and is not a new trial). REINFORCE with a moving-average
baseline: ``advantage = (r - b) / s`` (``b``, ``s``: exponential moving mean and s.d. of the rewards, decay
``baseline_decay``, so the step size does not depend on the evaluator's scale), then for each choice the arch
uses, ``logits += lr * (advantage * (onehot - p) + entropy_weight * dH/dlogits)``. Choices of blocks beyond a
stage's depth are not used by the arch and are not updated. Sampling with rejection makes the update an
approximation of the gradient of the policy restricted to the budget (a named simplification). Deterministic
in ``seed``. Stops after ``trials`` distinct archs, or ``stall_per_trial`` x ``trials`` samples in a row that
found nothing new.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np

from nas_kd.search.objective import Row, arch_key
from nas_kd.search.strategies import STRATEGIES, SearchInputs, Strategy
from nas_kd.typecheck import AtLeast1, Probability, Range


def used_labels(arch: dict[str, Any]) -> list[str]:
    """The labels an arch uses: stage choices, and block choices within their stage's depth
    (``stageI.blockJ.<choice>`` with J <= ``stageI.depth``, both 1-based)."""
    out = []
    for label in arch:
        parts = label.split(".")
        if len(parts) < 3 or int(parts[1].removeprefix("block")) <= arch[f"{parts[0]}.depth"]:
            out.append(label)
    return out


class CategoricalPolicy:
    """One softmax distribution per choice label over its values."""

    def __init__(self, choices: dict[str, list]) -> None:
        self.choices = choices
        self.logits = {label: np.zeros(len(values)) for label, values in choices.items()}

    def probs(self, label: str) -> np.ndarray:
        z = np.exp(self.logits[label] - self.logits[label].max())
        return z / z.sum()

    def sample(self, rng: random.Random) -> dict[str, Any]:
        arch = {}
        for label, values in self.choices.items():
            p, u, acc = self.probs(label), rng.random(), 0.0
            index = len(values) - 1
            for i, pi in enumerate(p):
                acc += pi
                if u < acc:
                    index = i
                    break
            arch[label] = values[index]
        return arch

    def update(self, arch: dict[str, Any], advantage: float, lr: float, entropy_weight: float) -> None:
        """One REINFORCE step on the labels ``arch`` uses."""
        for label in used_labels(arch):
            p = self.probs(label)
            onehot = np.zeros_like(p)
            onehot[self.choices[label].index(arch[label])] = 1.0
            logp = np.log(np.clip(p, 1e-12, None))
            entropy_grad = -p * (logp + float(-(p * logp).sum()))
            self.logits[label] += lr * (advantage * (onehot - p) + entropy_weight * entropy_grad)


@STRATEGIES.register("reinforce")
@dataclass(kw_only=True)
class Reinforce(Strategy):
    """REINFORCE over one categorical distribution per choice, reward = the evaluator's score."""

    lr: Annotated[float, Range(0, low_open=True)] = 0.2
    baseline_decay: Probability = 0.9
    entropy_weight: Annotated[float, Range(0)] = 0.01
    proposals_per_trial: AtLeast1 = 50
    stall_per_trial: AtLeast1 = 50

    def search(self, run: SearchInputs) -> list[Row]:
        objective, trials = run.objective, run.trials
        space, rng = objective.space, random.Random(run.seed)
        policy = CategoricalPolicy(space.choices)
        mean, var, seen, stall = 0.0, 0.0, 0, 0
        decay = self.baseline_decay
        while len(objective.cache) < trials and stall < self.stall_per_trial * trials:
            for _ in range(self.proposals_per_trial):
                arch = space.canonical(policy.sample(rng))
                if objective.feasible(arch):
                    break
            else:
                arch = objective.sample_feasible(rng)
            known = arch_key(arch) in objective.cache
            reward = objective.score(arch)
            stall = stall + 1 if known else 0
            if seen:
                advantage = (reward - mean) / (math.sqrt(var) if var > 0 else 1.0)
                policy.update(arch, advantage, self.lr, self.entropy_weight)
            seen += 1
            delta = reward - mean
            mean += (1 - decay) * delta if seen > 1 else delta
            var = decay * (var + (1 - decay) * delta * delta) if seen > 1 else 0.0
        return objective.rows()
