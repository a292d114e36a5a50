"""ONNX export of a static network, verified with onnxruntime (the optional ``onnx`` extra:
``pip install 'nas-kd[onnx]'`` installs onnx, onnxruntime and onnxscript, which torch's exporter needs)."""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from nas_kd.errors import UserError

TOLERANCE = 1e-4  # max abs difference of the logits allowed between onnxruntime and PyTorch


def _require() -> Any:
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise UserError(f"ONNX export needs the onnx extra ({e.name} is missing): pip install 'nas-kd[onnx]'") from None
    return onnxruntime


def export_onnx(model: nn.Module, path: str | Path, input_shape: tuple[int, int, int], *, repeats: int = 30,
                seed: int = 0) -> dict[str, Any]:
    """Write ``model`` (eval mode, any batch size) to ``path`` with torch's exporter, then check it with
    onnxruntime on random inputs of batch 1 and 4 (max abs difference of the logits <= :data:`TOLERANCE`,
    else an error) and time it (median of ``repeats`` batch-1 runs, after warm-up). Returns the report."""
    ort = _require()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    g = torch.Generator().manual_seed(seed)
    example = torch.randn(2, *input_shape, generator=g)
    program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"], output_names=["logits"],
                                dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs = []
    for batch in (1, 4):
        x = torch.randn(batch, *input_shape, generator=g)
        with torch.no_grad():
            want = model(x).numpy()
        got = session.run(None, {"images": x.numpy()})[0]
        diffs.append(float(np.abs(got - want).max()))
    if max(diffs) > TOLERANCE:
        raise RuntimeError(f"{path}: onnxruntime differs from PyTorch by {max(diffs):.2e} (> {TOLERANCE})")
    x1 = np.random.default_rng(seed).standard_normal((1, *input_shape)).astype(np.float32)
    for _ in range(5):
        session.run(None, {"images": x1})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {"images": x1})
        times.append(time.perf_counter() - start)
    return {"onnx": str(path), "onnx_max_abs_diff": max(diffs), "onnx_latency_ms_batch1_cpu": 1000 * statistics.median(times),
            "onnx_bytes": path.stat().st_size}
