"""Built-in models, chosen by name (``MODELS``): the reference teachers, and the specialists' ensemble."""
from nas_kd.models.registry import MODELS
from nas_kd.registry import import_modules

import_modules(__name__, __path__)  # every module registers its models

__all__ = ["MODELS"]
