"""``resnet``: residual-block space (built for 28x28 inputs; any input shape works), aligned stage by stage with the reference teacher.

Per stage: depth and width; per block: bottleneck ratio {0.25, 0.5, 0.75, 1.0} (the inner width
is ``round(width * ratio)``). Convs are 3x3; the first block of a stage has a 1x1
projection shortcut, the others an identity shortcut. About 6.4e8 networks.
"""
from __future__ import annotations

from typing import Any

from search_spaces.base import DEFAULT_INPUT_SHAPE, DEFAULT_NUM_CLASSES, StageDef, StagedSpace
from search_spaces.registry import SPACES

BLOCK = {"ratio": (0.25, 0.5, 0.75, 1.0)}


class ResNetSpace(StagedSpace):
    name, family = "resnet", "resnet"

    def __init__(self, input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE, num_classes: int = DEFAULT_NUM_CLASSES) -> None:
        super().__init__(
            [
                StageDef(1, (1, 2), (16, 24), BLOCK),
                StageDef(2, (1, 2, 3), (24, 32, 48), BLOCK),
                StageDef(2, (1, 2, 3), (48, 64, 96), BLOCK),
                StageDef(2, (1, 2, 3), (96, 128, 192), BLOCK),
            ],
            stem_width=16,
            input_shape=input_shape,
            num_classes=num_classes,
        )

    @property
    def kernel_sizes(self) -> list[int]:
        return [3]

    def block(self, cin: int, width: int, stride: int, choices: dict[str, Any], first: bool) -> dict[str, Any]:
        return {
            "in": cin, "out": width, "stride": stride, "kernel": 3,
            "mid": int(round(width * choices["ratio"])), "shortcut": "projection" if first else "identity",
        }


SPACES.register("resnet")(ResNetSpace)
