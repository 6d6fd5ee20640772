"""The fixed-point emulator target (``loihi2-emu``): the Lava plan's arithmetic in fixed point,
batched, bit-exact with ``loihi2-sim`` (resformer_deploy/fixed_point/emulator.py runs it; this
module sizes and drives a run: host stem and readout, quantized inputs, statistics)."""
import math
import time
from typing import Optional

import numpy as np
import torch

from exporters.nir_ext import SpikeMatMul
from exporters.interpreter import CompiledGraph
# LavaSemantics is read from this module at run time (benchmarks/emulator_ab.py swaps it here)
from resformer_deploy.fixed_point.emulator import LavaSemantics, chunk_samples, work_bytes_per_sample
from resformer_deploy.lava.host_partition import host_inputs, host_readout

from targets.base import Capabilities, Estimate, RunRequest, RunResult, RunStats, Target

# Throughput of this machine (2 cores, x86_64), measured on ti @224 (random weights, 16 samples
# batched, T = 4; loihi2-emu and PyTorch in one process, the issue-11 full-size measurement):
# 250 GMAC and 1.66 G values in 8.5-9.5 s on the quietest runs, of which ~38 % in convolutions
# and GEMMs (cProfile), the rest elementwise (LIF, sums, bounds, spike records, host stem). The
# run added 2.4-2.6 GiB of PSS (work_bytes_per_sample and the records below: 3.0 GiB). Other
# load on the machine slows both rates alike (up to 5x seen).
EMU_MAC_PER_S = 70e9
EMU_VALUES_PER_S = 0.3e9


def plan_macs_per_step(plan) -> int:
    """Multiply-accumulates of one step of one sample: every synapse's (kernel taps x outputs, or
    the dense matrix) and every product's (outputs x contraction length)."""
    total = 0
    for n, spec in plan.synapses.items():
        if spec.kind == "conv":
            total += int(spec.weight[0].size) * int(np.prod(spec.out_shape))
        else:
            total += int(spec.weight.size)
    for n in plan.neuro:
        node = plan.graph.nodes[n]
        if isinstance(node, SpikeMatMul):
            total += int(np.prod(plan.shapes[n])) * int(node.rhs_rows.shape[1])
    return total


class Loihi2EmulatorTarget(Target):
    """Bit-accurate emulation of the fixed-point Lava network (needs ``quant``), batched.
    Its DSSA products are exact integer products, so no lowering option applies."""
    capabilities = Capabilities(arithmetic="fixed", flow="loihi2-fixed", engine="numpy", needs_quantized_net=True,
                                options=("batch",),
                                summary="batched emulation of loihi2-sim (weight-shared convolutions), bit-exact "
                                        "with it")

    def steps(self, request: RunRequest) -> int:
        self.refuse_unknown(request)
        q = self.quantized_net(request.prepared, request.quant)
        n_samples = request.n_samples
        return request.T * math.ceil(max(n_samples, 1) / chunk_samples(q.plan, n_samples, request.option("batch")))

    def estimate(self, request: RunRequest) -> Optional[Estimate]:
        """From the plan: MACs and values per step at the rates measured on this machine
        (EMU_MAC_PER_S, EMU_VALUES_PER_S), the working memory of a chunk of samples, the spike
        record and the host streams."""
        self.refuse_unknown(request)
        n_samples, T, record_spikes, batch = request.n_samples, request.T, request.record_spikes, \
            request.option("batch")
        _, plan = self.sized_by(request.prepared, request.quant)
        chunk = chunk_samples(plan, n_samples, batch)
        macs = plan_macs_per_step(plan) * n_samples * T
        values = plan.values_per_step * n_samples * T
        lifs = sum(p.size for p in plan.lif.values())
        recorded = lifs * n_samples * T if record_spikes else 0  # bool spikes of every LIF layer
        # host streams: float64 stem output, its rounding and the int64 payloads; chip outputs int64 + float64
        streams = (24 * sum(int(np.prod(plan.shapes[h])) for h in plan.inputs)
                   + 16 * sum(int(np.prod(plan.shapes[o])) for o in plan.outputs)) * n_samples * T
        peak = work_bytes_per_sample(plan) * chunk + recorded + streams + plan.kernel_weights * 12
        return Estimate(macs / EMU_MAC_PER_S + values / EMU_VALUES_PER_S, int(peak),
                        f"{plan_macs_per_step(plan) / 1e9:.2f} GMAC and {plan.values_per_step / 1e6:.1f} M values "
                        f"per sample-step at {EMU_MAC_PER_S / 1e9:.0f} GMAC/s, {EMU_VALUES_PER_S / 1e9:.1f} G "
                        f"values/s (measured); {chunk} samples at once")

    def run(self, request: RunRequest) -> RunResult:
        self.refuse_unknown(request)
        self.check_recording(record_spikes=request.record_spikes, record_membranes=request.record_membranes)
        graph, x, T, dtype, record_spikes = request.graph, request.x, request.T, request.dtype, request.record_spikes
        quant = self.quantized_net(request.prepared, request.quant)
        t0 = time.time()
        plan = quant.plan  # the plan the network was quantized for (as loihi2-sim uses)
        host = CompiledGraph(graph, torch.float64)
        vals = quant.quantize_inputs(host_inputs(plan, host, x, T))
        run = LavaSemantics(plan, quant).run(vals, T, record_spikes=record_spikes, progress=request.progress,
                                         batch=request.option("batch"))
        stream = {o: quant.dequantize(o, run.outputs[o]) for o in plan.outputs}
        out = host_readout(plan, host, stream, T, x.shape[0])
        if dtype is not None:
            out = out.to(dtype)
        return RunResult(output=out, spikes={n: torch.from_numpy(s).reshape(T, x.shape[0], *plan.shapes[n])
                                             for n, s in run.spikes.items()}, seconds=time.time() - t0,
                         stats=RunStats(saturation=run.saturation, exact_dtypes=run.dtypes))
