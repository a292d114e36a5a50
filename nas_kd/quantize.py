"""The int8 primitives behind ``nas-kd quantize`` (its training side: :mod:`nas_kd.train.quantize`): an int8
student for the CPU, by post-training quantisation and by quantisation-aware distillation.

Which API: the int8 model is an ONNX graph in the QDQ format made by onnxruntime's static quantiser
(``onnxruntime.quantization.quantize_static``: per-channel symmetric int8 weights, per-tensor uint8 activations
calibrated by min / max on training images, the stem convolution left in float: :func:`quantise_onnx`), run by
onnxruntime or OpenVINO (:mod:`nas_kd.inference`); torch's own eager and FX quantisation are deprecated, and the
PT2E flow left torch for torchao, which this project does not depend on. Quantisation-aware training happens in
PyTorch with torch's fake-quantisation ops (``torch.fake_quantize_per_channel_affine`` / ``per_tensor_affine``,
straight-through gradients) simulating that same graph: BatchNorm folded into the convolutions first
(:func:`fold_batchnorm`, as the int8 graph has it), weights per output channel symmetric, each conv / linear input
but the stem's per tensor in uint8, with min / max ranges tracked by an exponential moving average. The fine-tuning
is an ordinary ``nas_kd.train.distill`` run with the recipe's ``distill`` terms (KD from the teacher keeps teaching
while the student adapts to int8); the trained weights, fake quantisers removed, are then quantised by onnxruntime
like the post-training model.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval

from nas_kd.errors import Diverged
from nas_kd.inference import INPUT, Compiled
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
    """Per-tensor asymmetric uint8 fake quantisation (the int8 graph's activations); in training the range follows
    the batches' min / max by an exponential moving average (``momentum``), or (``minmax``) spans every batch seen,
    as onnxruntime's min / max calibration does; in evaluation it is frozen."""

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
        zero = int(torch.clamp(torch.round(-lo / scale), 0, 255))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


def _quantised_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[nn.Module]:
    """The conv / linear layers the int8 graph quantises: all but the first convolution the forward pass runs (the
    stem, fed by the image, which :func:`quantise_onnx` keeps in float)."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    order: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda m, _: order.append(m)) for m in layers]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    stem = next((m for m in order if isinstance(m, nn.Conv2d)), None)
    return [m for m in layers if m is not stem]


def _quantise_input(module: nn.Module, args: tuple) -> tuple:
    return (module.input_quant(args[0]), *args[1:])


def prepare_qat(model: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """A fake-quantised copy of ``model`` (inputs of ``input_shape``, C x H x W) for quantisation-aware training:
    BatchNorm folded, every conv / linear weight and input fake-quantised but the stem's, as :func:`quantise_onnx`
    makes the graph (see the module's docstring)."""
    model = fold_batchnorm(model)
    for m in _quantised_layers(model, input_shape):
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


def input_convs(path: str | Path) -> list[str]:
    """Names of the convolutions an ONNX graph applies to its input before any other convolution (the stem's),
    found by following the graph input through non-convolution nodes."""
    import onnx

    nodes = onnx.load(str(path)).graph.node
    reached, found = {INPUT}, []
    for node in nodes:  # topologically sorted, as ONNX requires
        if not reached.intersection(node.input):
            continue
        if node.op_type == "Conv":
            found.append(node.name)
        else:
            reached.update(node.output)
    return found


def quantise_onnx(fp32_path: str | Path, int8_path: str | Path, calibration: list[torch.Tensor], *,
                  keep_stem_fp32: bool = True) -> Path:
    """Static int8 quantisation in QDQ format: weights int8 per output channel (symmetric), activations uint8 per
    tensor (asymmetric, min / max calibrated on ``calibration`` batches), the U8S8 scheme whose groups onnxruntime
    on x86 fuses into integer kernels (with int8 activations 9 of the student's 13 convolutions ran in float between
    Q/DQ pairs, 2.4x slower than fp32). With ``keep_stem_fp32`` the convolutions fed by the image itself
    (:func:`input_convs`) stay in float: with one input channel they gain nothing in int8 (the student's int8 stem
    ran 7x slower than its fp32 one). :func:`prepare_qat` simulates exactly this graph."""
    _require()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{INPUT: x.numpy()} for x in calibration])

        def get_next(self):
            return next(self.batches, None)

    advice = _Drop("pre-process")  # its advice to run onnxruntime's pre-processing, twice per graph: not needed here
    logging.getLogger().addFilter(advice)
    try:
        quantize_static(str(fp32_path), str(int8_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=input_convs(fp32_path) if keep_stem_fp32 else [])
    finally:
        logging.getLogger().removeFilter(advice)
    return Path(int8_path)


class _Drop(logging.Filter):
    """Drops log records whose message contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def accuracy(compiled: Compiled, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((compiled.predict(x.numpy()).argmax(1) == y.numpy()).mean())


def agreement(int8: Compiled, fake_quant: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """How closely the int8 graph follows the fake-quantised PyTorch model on ``x``: top-1 agreement and the mean
    absolute difference of the logits relative to their mean absolute value."""
    got = int8.predict(x.numpy())
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
