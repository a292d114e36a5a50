"""Built-in models, chosen by name (``MODELS``): the reference teachers, and the specialists' ensemble."""
from nas_kd.models import resnet_teacher, specialist_ensemble  # noqa: F401  (register the built-in models)
from nas_kd.models.registry import MODELS

__all__ = ["MODELS"]
