"""Calibrate and quantize a graph for Loihi 2 fixed point, and choose calibration data.

Calibration data is never the evaluation data: the digits training split for digits models,
seeded random inputs (a different seed from verification's) otherwise.
"""
import json
import time

import nir
import torch

from resformer_deploy.lava.plan import plan_lava

from resformer_deploy.data.digits import load_digits_split
from resformer_deploy.fixed_point.quantize import MARGIN, quantize

CALIB_SEED = 12345


def calibration_inputs(in_shape, samples: int, dvs_steps: int = 0):
    """(x, description) for calibration: digits *training* split or seeded random inputs."""
    from resformer_deploy.errors import DeployError
    from resformer_deploy.util.memory_budget import check_bytes
    in_shape = tuple(int(v) for v in in_shape)
    if in_shape == (1, 8, 8):
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


def calibrate_and_quantize(graph, x_calib: torch.Tensor, T: int, dssa: str = "fused", margin: float = MARGIN,
                           plan=None, source: str = ""):
    from targets.host_partition import host_inputs
    from targets.loihi2_emulator import LavaSemantics
    from targets.reference import CompiledGraph

    t0 = time.time()
    plan = plan or plan_lava(graph, dssa)
    host = CompiledGraph(graph, torch.float64)
    sem = LavaSemantics(plan)
    stats = sem.run(host_inputs(plan, host, x_calib, T), T, record_spikes=False, stats=True)
    qn = quantize(plan, stats, margin, matrices={n: m for n, (m, _) in sem.mats.items()})
    qn.calibration = {"samples": int(x_calib.shape[0]), "source": source, "margin": margin,
                      "seconds": time.time() - t0}
    return qn


def quantize_graph(graph, samples: int = 128, dssa: str = "fused", margin: float = MARGIN, plan=None):
    """Quantize an exported graph on calibration data chosen from the graph itself: its input shape,
    T and, for PLIF (DVS) models, event frames instead of images."""
    meta = graph.metadata or {}
    T = int(meta.get("time_steps", 4))
    try:
        neuron = json.loads(meta.get("config", "{}")).get("neuron", "lif")
    except (TypeError, ValueError):
        neuron = "lif"
    in_shape = next(v for v in graph.nodes.values() if isinstance(v, nir.Input)).input_type["input"]
    x, src = calibration_inputs(in_shape, samples, dvs_steps=T if neuron == "plif" else 0)
    return calibrate_and_quantize(graph, x.double(), T, dssa=dssa, margin=margin, plan=plan, source=src)
