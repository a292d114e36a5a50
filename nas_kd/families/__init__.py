"""Block families, chosen by a spec's ``family``: ``FAMILIES.get("resnet")`` is a :class:`BlockFamily`.

Each family is one module holding its static block, its elastic twin and its cost, registered
under its name. To add one, write a module like :mod:`nas_kd.families.resnet`: it is imported automatically.
"""
from nas_kd.families.base import FAMILIES, Block, BlockFamily, Size
from nas_kd.registry import import_modules

import_modules(__name__, __path__)  # every module registers its family

__all__ = ["FAMILIES", "Block", "BlockFamily", "Size"]
