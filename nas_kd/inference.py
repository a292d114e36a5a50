"""The CPU runtimes an exported ONNX graph ships to, behind one interface: onnxruntime (the ``onnx`` extra) and
OpenVINO (the ``openvino`` extra: ``pip install 'nas-kd[openvino]'``).

:func:`load` compiles a graph (a file, or its bytes) for ``threads`` intra-op threads into a :class:`Compiled`:
``predict`` runs a whole tensor in batches, ``call`` gives a function of no arguments that runs one fixed batch
(for :func:`nas_kd.latency.time_runs`), ``kernels`` counts the operations the runtime actually executes after its
own graph optimisation, split by precision, so a record can show whether a quantised graph really runs in int8.

How each is called for timing (measured on the 2-core AMD EPYC here): onnxruntime's idle intra-op workers do not
spin (timed in rounds, idle sessions' spinning workers took the cores from the timed one, see
:func:`nas_kd.latency.runner`); OpenVINO's input tensor is set once on an infer request and ``infer()`` is called
without arguments (called with a dict each time, the int8 student ran at 0.9x of fp32 at batch 1 instead of
1.15-1.5x), with the latency hint and the f32 inference precision (no bf16 substitution on machines that have it).
"""
from __future__ import annotations

import collections
import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nas_kd.errors import UserError

ENGINES = ("onnxruntime", "openvino")
INPUT = "images"  # the graph input's name, as nas_kd.onnx_export writes it


def _onnxruntime() -> Any:
    from nas_kd.onnx_export import _require
    return _require()


def _openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise UserError("the openvino runtime needs the openvino extra: pip install 'nas-kd[openvino]'") from None
    return openvino


class Compiled:
    """A graph compiled by one engine (:func:`load`)."""

    engine: str

    def predict(self, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """The graph's first output on ``x``, computed ``batch_size`` rows at a time."""
        return np.concatenate([self._run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])

    def call(self, x: np.ndarray) -> Callable[[], Any]:
        raise NotImplementedError

    def kernels(self) -> dict[str, int]:
        raise NotImplementedError

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _OnnxRuntime(Compiled):
    engine = "onnxruntime"

    def __init__(self, graph: bytes, threads: int, spinning: bool) -> None:
        self.graph, self.threads = graph, threads
        self.session = self._session(spinning)

    def _session(self, spinning: bool, optimized_path: str | None = None) -> Any:
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        if optimized_path:  # (its warning that the file holds machine-specific kernels is the point here)
            options.optimized_model_filepath = optimized_path
            options.log_severity_level = 3
        return ort.InferenceSession(self.graph, options, providers=["CPUExecutionProvider"])

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {INPUT: x})[0]

    def call(self, x: np.ndarray) -> Callable[[], Any]:
        feed = {INPUT: x}
        return lambda: self.session.run(None, feed)

    def kernels(self) -> dict[str, int]:
        """Operation types of the graph as onnxruntime optimised it (written out by a second session)."""
        import onnx

        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "optimized.onnx")
            self._session(False, path)
            nodes = onnx.load(path).graph.node
        return dict(sorted(collections.Counter(n.op_type for n in nodes).items()))


@functools.cache
def _core() -> Any:
    """The process's one OpenVINO ``Core``, kept until exit: compiled models and infer requests handed out (a timed
    call outlives its :class:`Compiled`) never outlive the core and plugin that made them."""
    return _openvino().Core()


class _OpenVINO(Compiled):
    engine = "openvino"

    def __init__(self, graph: bytes, threads: int) -> None:
        self.core, self.threads = _core(), threads
        self.model = self.core.read_model(graph)
        self.compiled = self._compile(self.model)
        self.request = self.compiled.create_infer_request()

    def _compile(self, model: Any) -> Any:
        return self.core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": self.threads,
                                                      "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})

    def _run(self, x: np.ndarray) -> np.ndarray:
        return np.array(self.request.infer({0: x})[0])

    def call(self, x: np.ndarray) -> Callable[[], Any]:
        ov = _openvino()
        model = self.model.clone()
        model.reshape({0: list(x.shape)})  # a static shape for the timed batch, as a deployment fixes it
        request = self._compile(model).create_infer_request()
        request.set_input_tensor(ov.Tensor(np.ascontiguousarray(x)))
        return request.infer

    def kernels(self) -> dict[str, int]:
        """The compiled model's executed layers as ``<layer type>:<precision>``: an int8 convolution shows as
        ``Convolution:u8``, one left in float as ``Convolution:f32`` (constants, inputs and outputs not counted)."""
        counts: collections.Counter = collections.Counter()
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) not in ("Const", "Input", "Output"):
                counts[f'{info["layerType"].astype(str)}:{info["runtimePrecision"].astype(str)}'] += 1
        return dict(sorted(counts.items()))


def installed() -> tuple[str, ...]:
    """The engines this environment can import."""
    import importlib.util

    return tuple(e for e in ENGINES if importlib.util.find_spec(e) is not None)


def require(engines: tuple[str, ...]) -> None:
    """Refuse, in one line, an unknown engine or one whose extra is not installed (before any work)."""
    for engine in engines:
        if engine not in ENGINES:
            raise UserError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
        _onnxruntime() if engine == "onnxruntime" else _openvino()


def load(graph: str | Path | bytes, engine: str, threads: int, *, spinning: bool = False) -> Compiled:
    """``graph`` (an ONNX file or its bytes) compiled by ``engine`` (:data:`ENGINES`) for ``threads`` intra-op threads;
    ``spinning`` (onnxruntime only) lets idle workers spin for new work, onnxruntime's own default."""
    require((engine,))
    data = graph if isinstance(graph, bytes) else Path(graph).read_bytes()
    if engine == "onnxruntime":
        return _OnnxRuntime(data, threads, spinning)
    return _OpenVINO(data, threads)


def int8_share(kernels: dict[str, int], engine: str) -> tuple[int, int]:
    """(convolutions running as int8 kernels, all convolutions) in a :meth:`Compiled.kernels` count."""
    if engine == "onnxruntime":
        int8 = sum(n for k, n in kernels.items() if k in ("QLinearConv", "ConvInteger"))
        return int8, int8 + sum(n for k, n in kernels.items() if k in ("Conv", "FusedConv", "NchwcConv"))
    convs = {k: n for k, n in kernels.items() if k.split(":")[0] == "Convolution"}
    return sum(n for k, n in convs.items() if k.split(":")[1] in ("i8", "u8")), sum(convs.values())
