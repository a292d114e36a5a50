"""Measured latency as a cost: per-block lookup tables timed on the user's machine (OFA-style), the
end-to-end prediction of an arch from them, and timing of whole models.

A table times every block variant a space can hold *in its context* (input channels, output channels,
stride, kernel, inner width, shortcut and input resolution), plus the stem and the head of every last
width, on one device, batch size and thread count, with one runtime (:data:`RUNTIMES`: PyTorch eager, or
onnxruntime on the CPU, each model exported to ONNX first, as ``nas-kd export --onnx`` ships it). The
prediction of an arch is the sum of its blocks, stem and head: :func:`predict_ms`.
"""
from __future__ import annotations

import datetime
import itertools
import json
from contextlib import contextmanager
import platform
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nas_kd.errors import UserError
from nas_kd.families import FAMILIES
from nas_kd.flops import conv_out
from nas_kd.layers import ConvBN
from nas_kd.subnet import BLOCK_KEYS, StaticNet, shape_text

FORMAT = "nas_kd.latency_table.v1"
RUNTIMES = ("torch", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8")  # PyTorch eager; an engine of
# nas_kd.inference on the CPU, float or int8
RUNTIME = "torch"  # a table without a runtime entry (older tables) was timed with PyTorch eager
MIN_SECONDS = 30.0  # a table's timing session, and each measurement set beside it, lasts at least this (time_runs)


def block_key(block: dict[str, Any], size: tuple[int, int]) -> str:
    """The table key of one spec block at input resolution ``size`` = (h, w)."""
    return "|".join(f"{k}={block[k]}" for k in BLOCK_KEYS) + f"|hw={size[0]}x{size[1]}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def runner(model: nn.Module, x: torch.Tensor, runtime: str = RUNTIME, *, image_input: bool = True) -> Callable[[], Any]:
    """One call of ``model`` on ``x`` with ``runtime``, as a function of no arguments for :func:`time_runs`: PyTorch
    eager (eval mode; the call waits for a CUDA device), or an engine of :mod:`nas_kd.inference` (onnxruntime or
    OpenVINO, as many intra-op threads as this process's torch has) running ``model`` exported to ONNX (torch's
    TorchScript-based exporter: fast enough for hundreds of blocks). The ``-int8`` runtimes quantise the graph first
    as ``nas-kd quantize`` ships a student (:func:`nas_kd.quantize.quantise_onnx`, calibrated on random inputs: the
    ranges do not change the time), its first convolution kept in float when ``x`` is the image
    (``image_input``; a block of a latency table is fed by another block). onnxruntime's idle workers do not spin:
    timed in rounds, the idle sessions' spinning workers took the cores from the timed one (25 mbv2 archs at batch 1
    timed in two fresh processes differed by 20 % with spinning, 5 % without; the median arch ran at the same speed
    either way, within 5 %)."""
    if runtime not in RUNTIMES:
        raise UserError(f"runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
    if runtime == "torch":
        model = model.eval()

        def call() -> None:
            model(x)
            _sync(x.device)
        return call
    import tempfile

    from nas_kd.inference import load
    from nas_kd.quantize import quantise_onnx

    engine, int8 = runtime.removesuffix("-int8"), runtime.endswith("-int8")
    if int8:
        model = _distinct_biases(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(model.eval().cpu(), (x.cpu(),), str(path), dynamo=False, input_names=["images"])
        if int8:
            path = quantise_onnx(path, Path(tmp) / "int8.onnx", [torch.randn_like(x.cpu()) for _ in range(2)],
                                 keep_stem_fp32=image_input)
        graph = path.read_bytes()
    return load(graph, engine, torch.get_num_threads()).call(x.cpu().numpy())


@torch.no_grad()
def _distinct_biases(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose BatchNorms have seeded random statistics. Freshly initialised, every BatchNorm of a
    block folds into the same all-zero bias; the exporter then shares one bias tensor between the convolutions
    through an ``Identity`` node, which onnxruntime's quantiser cannot quantise, so it left one convolution of each
    block in float: not the graph a trained student ships as."""
    import copy

    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
    return model


@torch.no_grad()
def time_runs(runs: Sequence[Callable[[], Any]], repeats: int = 20, warmup: int = 5, sample_seconds: float = 0.002,
              seed: int = 0, min_seconds: float = 0.0) -> list[float]:
    """Milliseconds per call of each of ``runs`` (:func:`runner`): the fastest of ``repeats`` samples, each averaging
    enough calls to last ``sample_seconds`` and taken after one untimed call (the run's weights back in cache).

    The samples are taken in rounds, one sample of every run per round, in an order shuffled each round (``seed``):
    ``repeats`` rounds, and more until the session has lasted ``min_seconds``. Each run's samples spread over the
    whole session instead of following each other. On shared virtual CPUs the machine has slow spells lasting
    seconds, in which everything runs up to 1.4-3x slower (measured here: one model timed for 10 s in several
    processes, with and without threads pinned to cores; 50 archs timed for 6 s in five sessions, one of them 1.39x
    slower throughout); timed back to back, a run that falls in one is slow in every sample, timed in rounds over a
    session longer than a spell it is caught at full speed in another round, as are the runs it is compared with.
    The fastest sample is the estimate a slow spell cannot raise."""
    calls = []
    for run in runs:
        for _ in range(warmup):
            run()
        start = time.perf_counter()
        run()
        calls.append(max(1, int(sample_seconds / max(time.perf_counter() - start, 1e-6))))
    best = [float("inf")] * len(runs)
    order, rng, rounds, session = list(range(len(runs))), random.Random(seed), 0, time.perf_counter()
    while rounds < repeats or time.perf_counter() - session < min_seconds:
        rounds += 1
        rng.shuffle(order)
        for i in order:
            runs[i]()
            start = time.perf_counter()
            for _ in range(calls[i]):
                runs[i]()
            best[i] = min(best[i], (time.perf_counter() - start) / calls[i])
    return [1000 * b for b in best]


def passes_with_retest(runs_at: Callable[[int], Sequence[Callable[[], Any]]], batches: Sequence[int],
                       pass_seconds: float, repeats: int = 20) -> list[dict[str, list[float]]]:
    """The runs ``runs_at(b)`` makes for batch size ``b`` timed together (:func:`time_runs`) in a pass lasting at
    least ``pass_seconds`` at each batch size, then again in a second pass (the retest): per run, in order,
    ``{"b1": [first, retest], "b32": [...]}``."""
    out: list[dict[str, list[float]]] = []
    for repeat in range(2):
        for b in batches:
            times = time_runs(runs_at(b), repeats=repeats, min_seconds=pass_seconds, seed=repeat)
            out = out or [{} for _ in times]
            for i, ms in enumerate(times):
                out[i].setdefault(f"b{b}", []).append(ms)
    return out


@contextmanager
def torch_threads(threads: int | None):
    """Run the block with ``threads`` torch threads (``None``: as they are), restoring the count after."""
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


ALLOCATOR = "glibc malloc keeping freed memory (no mmap, no trim)"  # how the timing processes allocate


def _pin_allocator() -> None:
    """(Initializer of a timing process) glibc's malloc serves every allocation from its heap and never hands freed
    memory back (``mallopt``: no ``mmap``, no trim), as a long-running server's allocator does: each call reuses
    memory instead of faulting fresh pages in from the kernel. With the default allocator, large activations (batch
    32) come and go through ``mmap`` by thresholds that adapt to the process's history, so the same arch timed in two
    processes differed by up to 2.5x (50 mbv2 archs, batch 32); with it, 25 archs timed in two fresh processes
    agreed within 3 % and ran 1.6x faster. Elsewhere than glibc nothing is changed."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-4, 0)  # M_MMAP_MAX
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD


def in_timing_process(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` run in a fresh timing process (spawned, its allocator set by :func:`_pin_allocator`): every
    table, and every measurement set beside one, is timed from the same starting state, whatever the calling process
    did before (the archs timed in the process that had just built a table ran 16 % slower than in a fresh one)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1, initializer=_pin_allocator) as pool:
        return pool.apply(fn, args)


def model_latency_ms(model: nn.Module, input_shape: tuple[int, ...], *, batch_size: int = 1, device: str = "cpu",
                     repeats: int = 20, warmup: int = 5, min_seconds: float = 0.0, runtime: str = RUNTIME) -> float:
    """Measured latency of a whole model on ``batch_size`` images of ``input_shape`` (C, H, W) with ``runtime``."""
    return models_latency_ms([model], input_shape, batch_size=batch_size, device=device, repeats=repeats,
                             warmup=warmup, min_seconds=min_seconds, runtime=runtime)[0]


def models_latency_ms(models: Sequence[nn.Module], input_shape: tuple[int, ...], *, batch_size: int = 1,
                      device: str = "cpu", repeats: int = 20, warmup: int = 5, min_seconds: float = 0.0,
                      runtime: str = RUNTIME) -> list[float]:
    """Measured latency of each of ``models`` as :func:`model_latency_ms`, timed together in rounds
    (:func:`time_runs`): compare them with each other, under the same load."""
    dev = torch.device(device)
    if runtime != "torch" and dev.type != "cpu":
        raise UserError(f"runtime {runtime} times on the CPU here, not {device}")
    x = torch.zeros(batch_size, *input_shape, device=dev)
    return time_runs([runner(m.to(dev), x, runtime) for m in models], repeats, warmup, min_seconds=min_seconds)


def block_variants(space) -> dict[str, tuple[dict[str, Any], tuple[int, int]]]:
    """Every (block, input resolution) a network of ``space`` can hold, by :func:`block_key`."""
    out = {}
    for i, st in enumerate(space.stages, start=1):
        size = space.stage_input_size(i)
        after = (conv_out(size[0], 3, st.stride), conv_out(size[1], 3, st.stride))
        cins = [space.stem_width] if i == 1 else sorted(space.stages[i - 2].widths)
        choice_sets = [dict(zip(st.block_choices, combo)) for combo in itertools.product(*st.block_choices.values())]
        for width in st.widths:
            for choices in choice_sets:
                for cin in cins:  # the first block: any width of the previous stage, at the stage's input size
                    b = space.block(cin, width, st.stride, choices, first=True)
                    out[block_key(b, size)] = (b, size)
                if max(st.depths) > 1:  # later blocks: width in and out, after the stride
                    b = space.block(width, width, 1, choices, first=False)
                    out[block_key(b, after)] = (b, after)
    return out


class _Head(nn.Module):
    """A network's head alone (pool, flatten, linear), as :class:`nas_kd.subnet.StaticNet` ends."""

    def __init__(self, width: int, classes: int) -> None:
        super().__init__()
        self.pool, self.flat, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(self.pool(x)))


def build_table(space, *, device: str = "cpu", batch_size: int = 1, threads: int | None = None, repeats: int = 20,
                warmup: int = 5, min_seconds: float = MIN_SECONDS, calibration_archs: int = 16, seed: int = 0,
                show_progress: bool = True, runtime: str = RUNTIME) -> dict[str, Any]:
    """Time every block variant, the stem and the head of ``space`` (its input shape and classes), all together in
    rounds (:func:`time_runs`: every entry sees the same spells of load) in a fresh timing process
    (:func:`in_timing_process`), then ``calibration_archs`` seeded random archs end to end exactly as every
    measurement set beside the table is timed (:func:`measured_ms`: another fresh process): the whole-network
    calibration (:func:`calibrate`; blocks timed alone run warmer in cache than inside a network) is stored as
    ``calibration`` and applied by :func:`predict_ms`. 0 keeps the plain sum. (With the calibration archs timed in
    the blocks' session instead, the calibrated predictions of 50 other mbv2 archs at batch 1 came out 1.36-1.65x
    their measurements; timed as the measurements are, 1.00-1.11x.) ``repeats``, ``warmup`` and ``min_seconds`` (:func:`time_runs`) are
    recorded: every measurement set beside the table's predictions is timed the same way (:func:`measured_ms`)."""
    if batch_size < 1 or repeats < 1 or warmup < 0 or min_seconds < 0:
        raise UserError(f"latency table: batch size, repeats >= 1, warm-up and min seconds >= 0, got {batch_size}, "
                        f"{repeats}, {warmup}, {min_seconds}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here")
    if runtime != "torch" and dev.type != "cpu":
        raise UserError(f"--runtime {runtime} times on the CPU here, not {device}")
    started = time.perf_counter()
    variants, times, threads_used = in_timing_process(_time_table, space, device, batch_size, threads, repeats, warmup,
                                                      min_seconds, runtime, show_progress)
    widths = space.stages[-1].widths
    table = {
        "format": FORMAT, "runtime": runtime, "device": str(dev), "device_name": device_name(str(dev)),
        "machine": platform.node(), "torch": torch.__version__, "threads": threads_used, "batch_size": batch_size,
        "repeats": repeats, "warmup": warmup, "min_seconds": min_seconds, "allocator": ALLOCATOR,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "space": space.name, "input_shape": list(space.input_shape), "num_classes": space.num_classes,
        "stem_ms": times[len(variants)], "head_ms": dict(zip(map(str, widths), times[len(variants) + 1:])),
        "blocks_ms": dict(zip(variants, times)),
    }
    archs = calibration_set(space, calibration_archs, seed)
    measured = measured_ms(space, archs, table) if len(archs) > 1 else []
    table["calibration"] = calibrate(space, table, archs, measured) | {"seed": seed}
    return table | {"build_seconds": round(time.perf_counter() - started, 2)}


def _time_table(space, device: str, batch_size: int, threads: int | None, repeats: int, warmup: int,
                min_seconds: float, runtime: str, show_progress: bool) -> tuple[list[str], list[float], int]:
    """(In the timing process) the table's block keys, then the times of its blocks, stem and heads, all in one
    :func:`time_runs` session; the thread count used."""
    from tqdm import tqdm

    dev, family = torch.device(device), FAMILIES.get(space.family)
    with torch_threads(threads):
        torch.manual_seed(0)
        variants = block_variants(space)
        runs = [runner(family.static(b).to(dev), torch.randn(batch_size, b["in"], h, w, device=dev), runtime,
                       image_input=False)
                for b, (h, w) in tqdm(variants.values(), desc=f"latency {space.name}: building",
                                      disable=None if show_progress else True, leave=False)]
        c, h, w = space.input_shape
        runs.append(runner(ConvBN(c, space.stem_width, 3).to(dev), torch.randn(batch_size, c, h, w, device=dev), runtime))
        lh, lw = space.stage_input_size(len(space.stages) + 1)
        runs += [runner(_Head(width, space.num_classes).to(dev), torch.randn(batch_size, width, lh, lw, device=dev),
                        runtime, image_input=False) for width in space.stages[-1].widths]
        return list(variants), time_runs(runs, repeats, warmup, min_seconds=min_seconds), torch.get_num_threads()


def calibration_set(space, n: int, seed: int) -> list[dict[str, Any]]:
    """The ``n`` archs a table is calibrated on: the max, the min and seeded random ones."""
    rng = random.Random(f"latency-calibration-{seed}")
    return [space.max_arch(), space.min_arch(), *(space.sample(rng) for _ in range(n - 2))][:n]


def _block_cost(table: dict[str, Any], b: dict[str, Any], size: tuple[int, int],
                space=None) -> tuple[float, float, tuple[int, int]]:
    """(table time in ms, millions of activation elements it writes, the size it leaves) of spec block ``b`` entered
    at ``size``; a block the table lacks is an error (naming a mismatched table when ``space`` is given)."""
    key = block_key(b, size)
    if key not in table["blocks_ms"]:
        if space is not None:
            require_match(space, table)
        raise UserError(f"the latency table has no entry for block {key}: rebuild it with nas-kd latency-table")
    out = (conv_out(size[0], b["kernel"], b["stride"]), conv_out(size[1], b["kernel"], b["stride"]))
    return table["blocks_ms"][key], (b["mid"] + b["out"]) * out[0] * out[1] / 1e6, out


def spec_features(spec: dict[str, Any], table: dict[str, Any]) -> tuple[float, int, float]:
    """(summed table time in ms, number of blocks, millions of activation elements the blocks write) of a network
    spec: what the whole-network calibration is fitted on."""
    size, summed, blocks, act = tuple(spec["input_shape"][1:]), fixed_ms(table, spec["head"]["in"]), 0, 0.0
    for stage in spec["stages"]:
        for b in stage:
            ms, written, size = _block_cost(table, b, size)
            summed, blocks, act = summed + ms, blocks + 1, act + written
    return summed, blocks, act


def calibrate(space, table: dict[str, Any], archs: list[dict[str, Any]], measured: Sequence[float]) -> dict[str, Any]:
    """The whole-network calibration fitted on ``archs`` and their ``measured`` latencies: measured = scale x (summed
    + per_block x blocks + per_activation x activations) + offset (:func:`spec_features`; the per-block terms model
    what a block costs inside a network beyond its time alone: launches, memory traffic). With fewer than 8 archs,
    or a fit whose scale is not positive, only the line measured = scale x summed + offset (needs >= 2; else the
    identity)."""
    import numpy as np

    if len(archs) < 2:
        return {"scale": 1.0, "offset": 0.0, "per_block": 0.0, "per_activation": 0.0, "archs": len(archs)}
    feats = np.array([spec_features(space.spec(a), table) for a in archs])
    if len(archs) >= 8:
        a, b, c, d = np.linalg.lstsq(np.column_stack([feats, np.ones(len(archs))]), measured, rcond=None)[0]
        if a > 0:
            return {"scale": float(a), "offset": float(d), "per_block": float(b / a), "per_activation": float(c / a),
                    "archs": len(archs)}
    scale, offset = np.linalg.lstsq(np.vstack([feats[:, 0], np.ones(len(archs))]).T, measured, rcond=None)[0]
    return {"scale": float(scale), "offset": float(offset), "per_block": 0.0, "per_activation": 0.0,
            "archs": len(archs)}


def load_table(path: str | Path) -> dict[str, Any]:
    """A latency table written by ``nas-kd latency-table``."""
    try:
        table = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such latency table (make one with nas-kd latency-table)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not a latency table (invalid JSON: {e})") from None
    if not isinstance(table, dict) or table.get("format") != FORMAT:
        raise UserError(f"{path}: not a latency table (format {FORMAT!r} expected)")
    return table




def device_name(device: str = "cpu") -> str:
    """What identifies the hardware a table is timed on: the GPU's name, or the CPU's model (``/proc/cpuinfo``),
    else the platform's processor string."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def require_here(table: dict[str, Any], runtime: str = RUNTIME) -> None:
    """Refuse, for a search deploying with ``runtime``, a table timed by another runtime or on other hardware than
    this machine's, naming both: its predictions would be of that runtime or machine."""
    made = table.get("runtime", RUNTIME)
    here = device_name(table["device"])
    if made != runtime or table.get("device_name") != here:
        raise UserError(f"the latency table was timed with {made} on {table.get('device_name')!r} "
                        f"({table.get('machine')}); this search deploys with {runtime} on {here!r}: build a table here "
                        f"with nas-kd latency-table --runtime {runtime}")


def require_match(space, table: dict[str, Any]) -> None:
    """Refuse a table made for another space, input shape or number of classes, naming both."""
    made = (table["space"], tuple(table["input_shape"]), table["num_classes"])
    want = (space.name, space.input_shape, space.num_classes)
    if made != want:
        raise UserError(f"the latency table is for {made[0]} at {shape_text(made[1])} with {made[2]} classes, "
                        f"the search needs {want[0]} at {shape_text(want[1])} with {want[2]} classes")


def _blocks_ms(space, table: dict[str, Any], blocks: list[dict[str, Any]], size: tuple[int, int]) -> tuple[float, tuple[int, int]]:
    """Summed times of consecutive spec ``blocks`` entered at ``size`` (each its table entry plus the calibration's
    per-block terms), and the size they leave."""
    cal = table["calibration"]
    per_block, per_act = cal.get("per_block", 0.0), cal.get("per_activation", 0.0)
    total = 0.0
    for b in blocks:
        ms, written, size = _block_cost(table, b, size, space)
        total += ms + per_block + per_act * written
    return total, size


def stage_ms(space, table: dict[str, Any], stage: int, cand: dict[str, Any], cin: int) -> float:
    """Time of stage ``stage`` with the stage's choices ``cand`` fed ``cin`` channels, before the calibration's
    scale and offset (a sum over blocks, as the exact search needs)."""
    return _blocks_ms(space, table, space.stage_blocks(stage, cand, cin), space.stage_input_size(stage))[0]


def fixed_ms(table: dict[str, Any], last_width: int) -> float:
    """Uncalibrated table time outside the stages: the stem and the head after a last stage of ``last_width``."""
    return table["stem_ms"] + table["head_ms"][str(last_width)]


def calibrated(table: dict[str, Any], summed_ms: float) -> float:
    """The table's calibration applied to a sum of its entries (an increasing line: budgets map back exactly)."""
    return table["calibration"]["scale"] * summed_ms + table["calibration"]["offset"]


def summed_budget(table: dict[str, Any], budget_ms: float) -> float:
    """The uncalibrated sum that :func:`calibrated` maps to ``budget_ms``."""
    scale = table["calibration"]["scale"]
    if scale <= 0:
        raise UserError(f"latency table calibration has scale {scale}: rebuild the table")
    return (budget_ms - table["calibration"]["offset"]) / scale


def predict_ms(space, arch: dict[str, Any], table: dict[str, Any]) -> float:
    """Predicted latency of ``arch``: its blocks (in context), the stem and the head, summed from ``table``
    and calibrated."""
    spec = space.spec(space.validate(arch))
    size, total = tuple(space.input_shape[1:]), 0.0
    for blocks in spec["stages"]:
        ms, size = _blocks_ms(space, table, blocks, size)
        total += ms
    return calibrated(table, total + fixed_ms(table, spec["head"]["in"]))


def measured_ms(space, archs: list[dict[str, Any]], table: dict[str, Any]) -> list[float]:
    """The latency of each of ``archs`` measured here as ``table`` was timed (its device, batch size, threads,
    runtime, repeats and session length, in a fresh timing process: :func:`in_timing_process`), the archs timed
    together in rounds (:func:`time_runs`), to set beside the table's predictions. Called twice, the second call is a
    retest: another fresh process."""
    return in_timing_process(_time_specs, [space.spec(a) for a in archs], tuple(space.input_shape), table)


ANCHORS = 4  # archs timed beside a measured-budget search's candidates ...
ANCHOR_POOL = 64  # ... the ones nearest the budget by prediction among this many of the table's calibration set


def anchor_archs(space, table: dict[str, Any], budget_ms: float) -> list[dict[str, Any]]:
    """The :data:`ANCHORS` archs whose predicted latency is nearest ``budget_ms`` (by ratio) among the first
    :data:`ANCHOR_POOL` of the table's calibration set (the max, the min, seeded random archs). Near the budget,
    because the table's error is not the same everywhere: on the resnet openvino-int8 batch-32 table (MAPE 3.5 % on
    20 random archs) the ten ~1 ms candidates of a search ran 6-19 % slower than predicted while the max, the min
    and two random anchors ran as predicted."""
    import math

    pool = calibration_set(space, ANCHOR_POOL, table["calibration"].get("seed", 0))
    unique = list({json.dumps(a, sort_keys=True): a for a in pool}.values())
    return sorted(unique, key=lambda a: abs(math.log(predict_ms(space, a, table) / budget_ms)))[:ANCHORS]


def anchored_ms(space, archs: list[dict[str, Any]], table: dict[str, Any]) -> dict[str, Any]:
    """``archs`` timed together with the anchors of a :func:`reanchored` table in one session
    (:func:`measured_ms`), so that each can be judged by its time relative to them, which a slow or fast spell of
    the shared machine does not move (the same archs timed minutes apart ran 1.65-2.10x slower in the second
    session, while their order held: Spearman 0.98). ``speed`` is the anchors' median measured / predicted ratio in
    this session; ``at_table_speed_ms`` is each arch's measured time divided by it, its latency at the speed the
    table predicts for."""
    import statistics

    anchors = table["reanchored"]["archs"]
    times = measured_ms(space, anchors + archs, table)
    predicted = [predict_ms(space, a, table) for a in anchors]
    speed = statistics.median(t / p for t, p in zip(times, predicted))
    return {"speed": speed, "anchors": [{"predicted_ms": p, "measured_ms": t} for p, t in zip(predicted, times)],
            "measured_ms": times[len(anchors):], "at_table_speed_ms": [t / speed for t in times[len(anchors):]]}


def reanchored(space, table: dict[str, Any], budget_ms: float | None, reference: dict[str, Any] | None = None) -> dict[str, Any]:
    """``table`` rescaled to this machine's speed now, near ``budget_ms``: its anchors (:func:`anchor_archs`) timed,
    the calibration's scale and offset multiplied by their median measured / predicted ratio, the anchors and the
    ratio recorded under ``reanchored``. The table was timed in one session; a search minutes or days later on a
    shared machine runs at another speed (the resnet table predicted 1.35 ms for a pick that measured 0.65 ms,
    2.05-2.11x over every candidate).

    With a ``reference`` arch (and ``budget_ms`` None) the budget is that arch's latency: it is timed with the
    anchors nearest its prediction in the same session, and its measured time is the budget, so the budget and the
    table's speed are taken together (two sessions minutes apart on this machine differ by 10-30 % at batch 1)."""
    if (budget_ms is None) == (reference is None):
        raise ValueError("reanchored takes a budget_ms or a reference arch, not both")
    archs = anchor_archs(space, table, budget_ms if reference is None else predict_ms(space, reference, table))
    check = anchored_ms(space, [] if reference is None else [reference], table | {"reanchored": {"archs": archs}})
    if reference is not None:
        budget_ms = check["measured_ms"][0]
    cal = table["calibration"]
    return table | {"calibration": cal | {"scale": cal["scale"] * check["speed"], "offset": cal["offset"] * check["speed"]},
                    "reanchored": {"speed": check["speed"], "archs": archs, "anchors": check["anchors"],
                                   "budget_ms": budget_ms,
                                   **({} if reference is None else {"budget_arch": reference}),
                                   "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}}


def _time_specs(specs: list[dict[str, Any]], input_shape: tuple[int, ...], table: dict[str, Any]) -> list[float]:
    """(In the timing process) each network spec's latency measured as ``table`` was timed."""
    with torch_threads(table["threads"]):
        return models_latency_ms([StaticNet(s) for s in specs], input_shape, batch_size=table["batch_size"],
                                 device=table["device"], repeats=table["repeats"], warmup=table["warmup"],
                                 min_seconds=table.get("min_seconds", 0.0), runtime=table.get("runtime", RUNTIME))


def check_predictions(space, table: dict[str, Any], archs: list[dict[str, Any]], retest: bool = False) -> dict[str, Any]:
    """Time real networks of ``archs`` as the table was timed and compare with the predictions: Spearman,
    mean absolute percentage error (a fraction), share within +-10 %, and the Spearman of FLOPs with the
    measured latency, for contrast. With ``retest``, the archs are timed a second time in a fresh process and
    the same figures between the two timings (``retest_spearman``, ``retest_mape``) say what the measurement
    itself allows: a predictor cannot be expected to agree with one timing better than a second timing does."""
    import numpy as np
    from scipy.stats import spearmanr

    require_match(space, table)
    rows = [{"arch": a, "mflops": space.flops(a) / 1e6, "predicted_ms": predict_ms(space, a, table), "measured_ms": ms}
            for a, ms in zip(archs, measured_ms(space, archs, table))]
    pred = np.array([r["predicted_ms"] for r in rows])
    meas = np.array([r["measured_ms"] for r in rows])
    err = np.abs(pred - meas) / meas
    out = {"num_archs": len(rows), "spearman": float(spearmanr(pred, meas)[0]), "mape": float(err.mean()),
           "within_10pct": float((err <= 0.10).mean()),
           "flops_spearman": float(spearmanr([r["mflops"] for r in rows], meas)[0])}
    if retest:
        again = np.array(measured_ms(space, archs, table))
        for r, ms in zip(rows, again):
            r["retest_ms"] = float(ms)
        out |= {"retest_spearman": float(spearmanr(again, meas)[0]),
                "retest_mape": float((np.abs(again - meas) / meas).mean())}
    return {**out, "archs": rows}
