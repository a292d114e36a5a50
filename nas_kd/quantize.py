"""The int8 primitives behind ``nas-kd quantize`` (its training side: :mod:`nas_kd.train.quantize`): an int8
student for the CPU, by post-training quantisation and by quantisation-aware distillation.

Which API: the int8 model is an ONNX graph in the QDQ format made by onnxruntime's static quantiser
(``onnxruntime.quantization.quantize_static``: per-channel symmetric int8 weights, per-tensor int8 activations
calibrated by min / max on training images) and run by onnxruntime, the maintained CPU path (torch's own eager
and FX quantisation are deprecated, and the PT2E flow left torch for torchao, which this project does not
depend on). Quantisation-aware training happens in PyTorch with torch's fake-quantisation ops
(``torch.fake_quantize_per_channel_affine`` / ``per_tensor_affine``, straight-through gradients) simulating that
same scheme: BatchNorm folded into the convolutions first (:func:`fold_batchnorm`, as the int8 graph has it),
weights per output channel symmetric, each conv / linear input per tensor with min / max ranges tracked by an
exponential moving average. The fine-tuning is an ordinary ``nas_kd.train.distill`` run with the recipe's
``distill`` terms (KD from the teacher keeps teaching while the student adapts to int8); the trained weights,
fake quantisers removed, are then quantised by onnxruntime like the post-training model.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval

from nas_kd.errors import Diverged
from nas_kd.onnx_export import _require, export_onnx


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with every BatchNorm that directly follows a convolution inside a
    ``Sequential`` folded into that convolution (the BatchNorm becomes an identity)."""
    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return model


class WeightFakeQuant(nn.Module):
    """Per-output-channel symmetric int8 fake quantisation of a weight (scale = max |w| / 127)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = (w.detach().abs().flatten(1).amax(1) / 127).clamp_min(1e-8)
        zero = torch.zeros(len(w), dtype=torch.int32, device=w.device)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


class ActivationFakeQuant(nn.Module):
    """Per-tensor asymmetric int8 fake quantisation; in training the range follows the batches' min / max by an
    exponential moving average (``momentum``), or (``minmax``) spans every batch seen, as onnxruntime's min / max
    calibration does; in evaluation it is frozen."""

    def __init__(self, momentum: float = 0.01) -> None:
        super().__init__()
        self.momentum, self.minmax = momentum, False
        self.register_buffer("low", torch.tensor(0.0))
        self.register_buffer("high", torch.tensor(0.0))
        self.register_buffer("seen", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            lo, hi = x.detach().min(), x.detach().max()
            if not (torch.isfinite(lo) and torch.isfinite(hi)):
                raise Diverged("quantisation-aware training diverged: a layer's inputs are not finite (BatchNorm is "
                               "folded, so lower the learning rate, e.g. --qat-lr / pipeline.quantize_lr)")
            if not self.seen:
                self.low.copy_(lo), self.high.copy_(hi), self.seen.fill_(True)
            elif self.minmax:
                self.low.copy_(torch.minimum(self.low, lo)), self.high.copy_(torch.maximum(self.high, hi))
            else:
                self.low.lerp_(lo, self.momentum), self.high.lerp_(hi, self.momentum)
        lo, hi = torch.minimum(self.low, torch.tensor(0.0)), torch.maximum(self.high, torch.tensor(0.0))
        scale = float(((hi - lo) / 255).clamp_min(1e-8))
        zero = int(torch.clamp(torch.round(-128 - lo / scale), -128, 127))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, -128, 127)


def _quantised_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _quantise_input(module: nn.Module, args: tuple) -> tuple:
    return (module.input_quant(args[0]), *args[1:])


def prepare_qat(model: nn.Module) -> nn.Module:
    """A fake-quantised copy of ``model`` for quantisation-aware training: BatchNorm folded, every conv / linear
    weight and input fake-quantised (see the module's docstring)."""
    model = fold_batchnorm(model)
    for m in _quantised_layers(model):
        parametrize.register_parametrization(m, "weight", WeightFakeQuant())
        m.input_quant = ActivationFakeQuant()
        m.register_forward_pre_hook(_quantise_input)
    return model


def strip_qat(model: nn.Module, folded: nn.Module) -> nn.Module:
    """A plain float model holding a :func:`prepare_qat` model's trained (unquantised) weights, no fake quantisers:
    a copy of ``folded`` (the :func:`fold_batchnorm` model it was prepared from) loaded with them. (Removing the
    parametrisations of a deep copy instead would also strip the original's: they share the injected class.)"""
    plain = copy.deepcopy(folded)
    state = {k.replace("parametrizations.weight.original", "weight"): v for k, v in model.state_dict().items()
             if ".input_quant." not in k}
    plain.load_state_dict(state)
    return plain


def quantise_onnx(fp32_path: str | Path, int8_path: str | Path, calibration: list[torch.Tensor]) -> Path:
    """Static int8 quantisation (QDQ, per-channel weights, min / max calibration on ``calibration`` batches)."""
    _require()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"images": x.numpy()} for x in calibration])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(fp32_path), str(int8_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return Path(int8_path)


def session(graph: str | Path | bytes, threads: int = 2, spinning: bool = True):
    """An onnxruntime CPU session of an ONNX graph (a file, or its bytes) with ``threads`` intra-op threads, whose
    idle workers spin for new work (onnxruntime's default) unless ``spinning`` is off."""
    ort = _require()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(graph if isinstance(graph, bytes) else str(graph), options,
                                providers=["CPUExecutionProvider"])


def run_session(sess, x: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    return np.concatenate([sess.run(None, {"images": x[i:i + batch_size].numpy()})[0]
                           for i in range(0, len(x), batch_size)])


def onnx_accuracy(sess, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((run_session(sess, x).argmax(1) == y.numpy()).mean())


def agreement(int8_session, fake_quant: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """How closely the int8 graph follows the fake-quantised PyTorch model on ``x``: top-1 agreement and the mean
    absolute difference of the logits relative to their mean absolute value."""
    got = run_session(int8_session, x)
    with torch.no_grad():
        want = fake_quant.eval()(x).numpy()
    return {"top1_agreement": float((got.argmax(1) == want.argmax(1)).mean()),
            "relative_logit_error": float(np.abs(got - want).mean() / max(np.abs(want).mean(), 1e-12))}


def export_float(model: nn.Module, path: str | Path, shape: tuple[int, int, int]) -> Path:
    """The float ONNX graph of ``model`` (checked against PyTorch by :func:`nas_kd.onnx_export.export_onnx`)."""
    export_onnx(model.eval(), path, shape, repeats=1)
    return Path(path)


def with_minmax_ranges(model: nn.Module, calibration: list[torch.Tensor]) -> nn.Module:
    """``model`` (a :func:`prepare_qat` model) with its activation ranges spanning the calibration batches."""
    model.train()
    for q in [m for m in model.modules() if isinstance(m, ActivationFakeQuant)]:
        q.minmax = True
    with torch.no_grad():
        for x in calibration:
            model(x)
    return model.eval()
