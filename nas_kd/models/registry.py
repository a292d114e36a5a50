"""The model registry (kept apart so model modules can register without import cycles)."""
import torch.nn as nn

from nas_kd.registry import Registry

MODELS: Registry[nn.Module] = Registry("model")
