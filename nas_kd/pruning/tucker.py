"""``tucker``: low-rank factorisation of the convolutions (Tucker-2 by higher-order SVD; Kim et al., "Compression of
Deep Convolutional Neural Networks for Fast and Low Power Mobile Applications", ICLR 2016)."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from nas_kd.pruning.base import PRUNERS, Pruner


def tucker2(conv: nn.Conv2d, keep: float) -> nn.Sequential:
    """``conv`` (k x k, c_in -> c_out) as a 1x1 conv to r_in channels, a k x k conv r_in -> r_out and a 1x1 conv to
    c_out (with the original bias), r = ``keep`` x the channels (at least 1): the factors are the leading left singular
    vectors of the weight's two channel unfoldings and the core the weight projected on them (higher-order SVD)."""
    w = conv.weight.detach()
    c_out, c_in, kh, kw = w.shape
    r_out, r_in = max(1, round(keep * c_out)), max(1, round(keep * c_in))
    u_out = torch.linalg.svd(w.reshape(c_out, -1), full_matrices=False)[0][:, :r_out]
    u_in = torch.linalg.svd(w.transpose(0, 1).reshape(c_in, -1), full_matrices=False)[0][:, :r_in]
    core = torch.einsum("oikl,or,is->rskl", w, u_out, u_in)
    first = nn.Conv2d(c_in, r_in, 1, bias=False)
    middle = nn.Conv2d(r_in, r_out, (kh, kw), conv.stride, conv.padding, conv.dilation, bias=False)
    last = nn.Conv2d(r_out, c_out, 1, bias=conv.bias is not None)
    with torch.no_grad():
        first.weight.copy_(u_in.t()[:, :, None, None])
        middle.weight.copy_(core)
        last.weight.copy_(u_out[:, :, None, None])
        if conv.bias is not None:
            last.bias.copy_(conv.bias)
    return nn.Sequential(first, middle, last)


@PRUNERS.register("tucker")
class Tucker(Pruner):
    """Every k x k convolution (k > 1, not grouped, more than one input channel: the image-fed stem stays) is
    replaced by its Tucker-2 factorisation (:func:`tucker2`) keeping ``1 - ratio`` of its input and output channel
    ranks; the layers around it keep their widths. With every rank kept the network computes what it did (to float
    error); the fine-tune recovers what the truncation loses."""

    def __init__(self) -> None:
        super().__init__(global_pruning=False)

    def spec(self) -> dict:
        return {}

    def cut(self, model, input_shape, ratio, batches) -> nn.Module:
        net = copy.deepcopy(model).eval()
        targets = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)
                   and m.groups == 1 and m.in_channels > 1]
        for name, conv in targets:
            parent, _, leaf = name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, leaf, tucker2(conv, 1 - ratio))
        return net.eval()

    def max_ratio(self, model: nn.Module) -> float:
        return 0.99  # ranks of 1 at the most
