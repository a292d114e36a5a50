"""``mbv2``: OFA/AttentiveNAS-style inverted-residual (MBConv) space (built for 28x28 inputs; any input shape works).

Stages align with the reference teacher (resolutions 28, 28, 14, 7, 4). Per stage: depth
and width; per block: depthwise kernel {3, 5, 7} and expand ratio {2, 3, 4, 6}. The first
block of a stage has no shortcut, the others an identity shortcut. About 5.6e13 networks.
"""
from __future__ import annotations

from typing import Any

from search_spaces.base import DEFAULT_INPUT_SHAPE, DEFAULT_NUM_CLASSES, StageDef, StagedSpace
from search_spaces.registry import SPACES

BLOCK = {"kernel": (3, 5, 7), "expand": (2, 3, 4, 6)}


class MBV2Space(StagedSpace):
    name, family = "mbv2", "mbconv"

    def __init__(self, input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE, num_classes: int = DEFAULT_NUM_CLASSES) -> None:
        super().__init__(
            [
                StageDef(1, (1, 2), (16, 24), BLOCK),
                StageDef(2, (1, 2, 3), (24, 32, 40), BLOCK),
                StageDef(2, (1, 2, 3), (48, 64, 80), BLOCK),
                StageDef(2, (1, 2, 3), (96, 128, 160), BLOCK),
            ],
            stem_width=16,
            input_shape=input_shape,
            num_classes=num_classes,
        )

    @property
    def kernel_sizes(self) -> list[int]:
        return list(BLOCK["kernel"])

    def block(self, cin: int, width: int, stride: int, choices: dict[str, Any], first: bool) -> dict[str, Any]:
        return {
            "in": cin, "out": width, "stride": stride, "kernel": choices["kernel"],
            "mid": cin * choices["expand"], "shortcut": "none" if first else "identity",
        }


SPACES.register("mbv2")(MBV2Space)
