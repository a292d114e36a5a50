"""Built-in models, chosen by name (``MODELS``): the reference teachers."""
from nas_kd.models import resnet_teacher  # noqa: F401  (registers the built-in teachers)
from nas_kd.models.registry import MODELS

__all__ = ["MODELS"]
