"""Block families, chosen by a spec's ``family``: ``FAMILIES.get("resnet")`` is a :class:`BlockFamily`.

Each family is one module holding its static block, its elastic twin and its cost, registered
under its name. To add one, write a module like :mod:`nas_kd.families.resnet` and import it here.
"""
from nas_kd.families import mbconv, resnet  # noqa: F401  (register the built-in families)
from nas_kd.families.base import FAMILIES, Block, BlockFamily, Size

__all__ = ["FAMILIES", "Block", "BlockFamily", "Size"]
