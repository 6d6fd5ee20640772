"""The neuromorphic partition as one hierarchical Lava process users can embed.

``build_network(plan, T, quant=None, lowerings=None)`` returns a ``ResformerNetwork``: an
``AbstractProcess`` with an ``inp`` port (the host stem's stream, flat (C, H, W)) and an ``out``
port (the stream the host head reads), holding one sub-process per layer, in the manner of
lava-dl's ``netx.hdf5.Network`` (lava/lib/dl/netx/hdf5.py: layers made in ``__init__``, so their
ports can be probed before compilation; here the SubProcessModel also registers them as
sub-processes). The network holds no data: connect any stock source and sink
(lava.proc.io source/sink ``RingBuffer``, ``Injector`` / ``Extractor``) and pick the run
configuration (``run_config``; ``exception_models`` names the project models a simulation needs).
The CLI's worker (targets.lava_worker) builds its graph with this module and nothing else.

Timing: samples stream back to back; frame f of sample k enters ``inp`` at step k*T + f + 1 and
leaves ``out`` ``out_delay`` steps later. Each LIF layer resets itself every T steps at the step
its first input of a sample arrives (LIFReset reset_interval / reset_offset), so no reset call is
needed between samples. The process itself is defined in targets/lava_processes/network.py (Lava's
model discovery scans its directory). Mapping of each node: resformer_deploy/lava/plan.py. No torch.
"""
from typing import Optional

import numpy as np
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv
from lava.proc.graded.process import GradedVec
from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel
from lava.proc.io.injector import Injector, PyLoihiInjectorModel
from lava.proc.prodneuron.process import ProdNeuron
from lava.proc.sparse.process import DelaySparse

from resformer_deploy.lava.plan import LavaMappingError
from targets.lava_processes.conv import PyConvModelFixedExact, PyConvModelFloatFast
from targets.lava_processes.io_fixed import PyLoihiInjectorModelFixed
from targets.lava_processes.graded_float import PyGradedVecModelFloat, PyProdNeuronModelFloat
from targets.lava_processes.sparse_float import PyDelaySparseModelFloatCached
from targets.lava_processes.network import ResformerNetwork, SubResformerNetworkModel

__all__ = ["ResformerNetwork", "SubResformerNetworkModel", "build_network", "exception_models", "io_models",
           "run_config", "stream_steps", "frames_to_stream", "stream_to_frames"]


def exception_models(fixed: bool) -> dict:
    """{process: model} a simulation of the network needs beyond Lava's discovery, which only
    finds models next to a process's definition: float models lava-nc 0.10 lacks (GradedVec,
    ProdNeuron), the Conv models (targets.lava_processes.conv: one im2col matmul per step; the
    stock fixed-point Conv also ignores weight_exp, lava-nc/lava issue 803) and the float DelaySparse
    with its delay-weight matrix built once (targets.lava_processes.sparse_float). With a quantization
    whose convolutions all have weight_exp 0, the fixed-point synaptic lowering also runs on Lava's
    stock models alone (run_config(fixed=True, models=False); the fused product is our process)."""
    if fixed:
        return {Conv: PyConvModelFixedExact}
    return {GradedVec: PyGradedVecModelFloat, ProdNeuron: PyProdNeuronModelFloat, Conv: PyConvModelFloatFast,
            DelaySparse: PyDelaySparseModelFloatCached}


def io_models(fixed: bool) -> dict:
    """Models for Lava's Injector and Extractor (lava/proc/io/injector.py, extractor.py): the
    stock ones carry no tag, so a Loihi2SimCfg with a select_tag finds none without this map;
    fixed point injects int32 (targets.lava_processes.io_fixed)."""
    return {Injector: PyLoihiInjectorModelFixed if fixed else PyLoihiInjectorModel,
            Extractor: PyLoihiExtractorModel}


def run_config(fixed: bool, models: bool = True, io: bool = True) -> Loihi2SimCfg:
    """Loihi2SimCfg for the network: fixed_pt or floating_pt, with ``exception_models(fixed)``
    unless ``models`` is False (Lava's stock models only), and ``io_models(fixed)`` unless ``io``
    is False (the stock RingBuffer source and sink need none)."""
    tag = "fixed_pt" if fixed else "floating_pt"
    return Loihi2SimCfg(select_tag=tag, exception_proc_model_map={**(io_models(fixed) if io else {}),
                                                                  **(exception_models(fixed) if models else {})})


def stream_steps(plan, n_samples: int, T: int) -> int:
    """Steps that run n_samples through the network: their frames, then the pipeline's latency."""
    return n_samples * T + plan.total_latency


def frames_to_stream(values: np.ndarray, steps: int) -> np.ndarray:
    """Host frames [N, T, size] -> a source RingBuffer's data [size, steps] (zeros after the last
    frame); integers stay integers (fixed point), anything else becomes float64."""
    values = np.asarray(values)
    n, t, size = values.shape
    if steps < n * t:
        raise LavaMappingError(f"a stream of {steps} steps cannot hold {n} samples of {t} frames")
    dtype = np.int32 if np.issubdtype(values.dtype, np.integer) else np.float64
    data = np.zeros((size, steps), dtype=dtype)
    data[:, : n * t] = values.reshape(n * t, size).T
    return data


def stream_to_frames(record: np.ndarray, n_samples: int, T: int, delay: int) -> np.ndarray:
    """A sink's record [size, steps] (column s-1 = step s) -> the samples' frames [N, T, size]:
    the N*T steps from ``delay`` + 1 on (``ResformerNetwork.out_delay``)."""
    record = np.asarray(record)
    if record.shape[1] < delay + n_samples * T:
        raise LavaMappingError(f"a record of {record.shape[1]} steps ends before the last frame's output "
                               f"(step {delay + n_samples * T})")
    return record[:, delay: delay + n_samples * T].T.reshape(n_samples, T, -1)


def build_network(plan, T: int, quant=None, lowerings: Optional[dict] = None) -> ResformerNetwork:
    """The public builder: a ResformerNetwork of ``plan`` (float) or of its QuantNet ``quant``
    (fixed point); ``lowerings`` are the synaptic DSSA product lowerings (plan.dssa 'synaptic')."""
    return ResformerNetwork(plan=plan, T=T, quant=quant, lowerings=lowerings)
