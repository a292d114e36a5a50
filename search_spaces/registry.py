"""The search-space registry (apart from ``__init__`` so space modules can register themselves)."""
from nas_kd.registry import Registry

SPACES: Registry = Registry("search space")
