"""Choosing calibration data, calibrating and quantizing for Loihi 2 fixed point, as passes.

Three ``Pass`` objects (the flows ``loihi2-fixed`` and ``loihi2-map`` list them):
``choose-calibration-data`` -> ``calibration_inputs``; ``calibrate`` (a float run of the Lava
plan's arithmetic, resformer_deploy.fixed_point.emulator.LavaSemantics: weight-shared convolutions, never
unrolled, batched) -> ``calibration``; ``quantize`` (resformer_deploy.fixed_point.quantize, on
the convolution kernels themselves) -> ``quantized_net``.
Calibration data is never the evaluation data: the caller's (``prepare(..., calibration=
CalibrationData)``, e.g. ``--calib-data``, which the command line refuses when it is the
evaluation source and split) or, when none is given, the digits training split for digits models
and seeded random inputs (a different seed from verification's) otherwise.
"""
import json
import time
from dataclasses import dataclass, field
from typing import Optional

import nir
import torch

from exporters.interpreter import CompiledGraph
from resformer_deploy.data.digits import is_digits_input, load_digits_split
from resformer_deploy.fixed_point.emulator import LavaSemantics, chunk_samples, work_bytes_per_sample
from resformer_deploy.fixed_point.quantize import MARGIN, quantize
from resformer_deploy.lava.host_partition import host_inputs
from resformer_deploy.passes.manager import Pass
from resformer_deploy.util.progress import Progress

CALIB_SEED = 12345


def calibration_inputs(in_shape, samples: int, dvs_steps: int = 0):
    """(x, description) for calibration: digits *training* split or seeded random inputs."""
    from resformer_deploy.errors import DeployError
    from resformer_deploy.util.memory_budget import check_bytes
    in_shape = tuple(int(v) for v in in_shape)
    if is_digits_input(in_shape):
        split = load_digits_split()
        if not 1 <= samples <= len(split.y_train):  # a slice would silently give another number
            raise DeployError(f"--calib-samples {samples}: the digits training split has "
                              f"{len(split.y_train)} samples")
        return split.x_train[:samples], f"digits training split (first {samples} of {len(split.y_train)})"
    n = samples * max(dvs_steps, 1) * int(torch.tensor(in_shape).prod())
    check_bytes(12 * n, f"calibration inputs: {samples:,} samples are {n:,} values")  # float32 + float64 copy
    g = torch.Generator().manual_seed(CALIB_SEED)
    if dvs_steps:
        return torch.poisson(torch.full((samples, dvs_steps, *in_shape), 0.5), generator=g), "random DVS frames"
    return torch.randn(samples, *in_shape, generator=g), f"random N(0,1) images (seed {CALIB_SEED})"


@dataclass
class CalibrationData:
    """Inputs to calibrate on and where they come from (``record``: the data set, split and
    preprocessing as JSON, for given data; None for the inputs chosen here)."""
    x: torch.Tensor
    source: str
    record: Optional[dict] = None


@dataclass
class Calibration:
    """What a float run of the plan's Lava arithmetic recorded, for the quantizer."""
    stats: object  # resformer_deploy.fixed_point.emulator.EmulatorRun with value ranges
    samples: int
    source: str
    started: float = field(default_factory=time.time)
    record: Optional[dict] = None


def graph_time_steps(graph, opts=None) -> int:
    return int((opts or {}).get("T") or (graph.metadata or {}).get("time_steps", 4))


def _choose(art, opts):
    """Calibration data chosen from the graph itself: its input shape, T and, for PLIF (DVS)
    models, event frames instead of images."""
    graph = art["nir_graph"]
    meta = graph.metadata or {}
    try:
        neuron = json.loads(meta.get("config", "{}")).get("neuron", "lif")
    except (TypeError, ValueError):
        neuron = "lif"
    in_shape = next(v for v in graph.nodes.values() if isinstance(v, nir.Input)).input_type["input"]
    T = graph_time_steps(graph, opts)
    x, src = calibration_inputs(in_shape, int(opts.get("calib_samples", 128)), dvs_steps=T if neuron == "plif" else 0)
    return {"calibration_inputs": CalibrationData(x.double(), src)}


def _calibrate(art, opts):
    t0 = time.time()
    plan, data = art["lava_plan"], art["calibration_inputs"]
    T = graph_time_steps(art["nir_graph"], opts)
    host = CompiledGraph(art["nir_graph"], torch.float64)
    sem = LavaSemantics(plan)
    n = int(data.x.shape[0])
    stats = None
    # batches of at most CALIBRATION_CHUNK_BYTES of float working memory (each batch's stem, then its
    # steps): calibration runs beside what the command already holds; the maxima merge exactly
    per_sample = max(work_bytes_per_sample(plan, fixed=False), 1)
    size = chunk_samples(plan, n, batch=max(1, CALIBRATION_CHUNK_BYTES // per_sample))
    batches = range(0, n, size)
    with Progress(len(batches) * T, "calibrate (float emulator)", unit="batch-steps",
                  enabled=n * plan.values_per_step * T > PROGRESS_VALUES) as bar:
        for lo in batches:
            run = sem.run(host_inputs(plan, host, data.x[lo:lo + size], T), T, record_spikes=False,
                          stats=True, progress=bar.update, batch=size)
            stats = run if stats is None else _merge_stats(stats, run)
    return {"calibration": Calibration(stats, n, data.source, started=t0, record=data.record)}


CALIBRATION_CHUNK_BYTES = 2 ** 30
PROGRESS_VALUES = 5e8  # a calibration computing more values than this (~5 s here) shows a progress bar


def _merge_stats(a, b):
    """Value ranges of two calibration batches: the larger of each maximum."""
    for d, e in ((a.max_abs, b.max_abs), (a.max_membrane, b.max_membrane)):
        for k, v in e.items():
            d[k] = max(d.get(k, 0.0), v)
    return a


def _quantize(art, opts):
    cal, margin, grid = art["calibration"], opts.get("margin", MARGIN), bool(opts.get("netx_bias_grid", False))
    qn = quantize(art["lava_plan"], cal.stats, margin, grid)
    qn.calibration = {"samples": cal.samples, "source": cal.source, "margin": margin, "netx_bias_grid": grid,
                      "seconds": time.time() - cal.started, "data": cal.record}
    return {"quantized_net": qn}


CHOOSE_CALIBRATION_DATA = Pass(
    "choose-calibration-data", _choose, requires=("nir_graph",), ensures=("calibration_inputs",),
    options=("calib_samples", "T"),
    doc="digits training split or seeded random inputs (skipped when the caller gives calibration data), "
        "never evaluation data")
CALIBRATE = Pass("calibrate", _calibrate, requires=("nir_graph", "lava_plan", "calibration_inputs"),
                 ensures=("calibration",), options=("T",),
                 doc="value ranges of a float run in the Lava representation (bias-free graded values)")
QUANTIZE = Pass("quantize", _quantize, requires=("lava_plan", "calibration"), ensures=("quantized_net",),
                options=("margin", "netx_bias_grid"),
                doc="power-of-two scales per group, Loihi 2 mantissas and exponents (netx_bias_grid: conv-fed "
                    "LIF biases on lava-dl netx's 2^6 grid)")


def calibrate_and_quantize(graph, x_calib: torch.Tensor, T: int, dssa: str = "fused", margin: float = MARGIN,
                           plan=None, source: str = "", netx_bias_grid: bool = False):
    """The quantized network of ``graph`` calibrated on ``x_calib`` (flow ``loihi2-fixed``)."""
    from resformer_deploy.flows import run_flow
    art = {"nir_graph": graph, "calibration_inputs": CalibrationData(x_calib, source)}
    if plan is not None:
        art["lava_plan"] = plan
    # the quantized network only: a run lowers its products on its own samples (prepare)
    return run_flow("loihi2-fixed", art, dssa=dssa, margin=margin, T=T, lower_products=False,
                    netx_bias_grid=netx_bias_grid)["quantized_net"]
