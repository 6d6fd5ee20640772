"""Batched emulation of the Lava process graph's arithmetic (target ``loihi2-emu``).

Executes a LavaPlan step by step with Lava's per-process arithmetic but without the pipeline
delays (the Lava graph is delay-balanced, so every layer sees the same values, only later):
* float mode (no quantization): Sparse = W @ x, LIFReset float (u = a_in,
  w = (1-k) w + u + bias, spike w > vth, reset 0), fused product, graded relays. Used to
  record calibration statistics in the Lava representation (bias-free graded values).
* fixed mode (a QuantNet, resformer_deploy.fixed_point.network): integer Sparse
  (mantissa @ x, then << / >> weight_exp), Lava's bit-accurate LIF (24-bit u wraps, v
  saturates, decay rounds toward zero, threshold << 6, bias mant << exp), integer products.
  Every wrap / saturation / 24-bit payload overflow is counted per node.
The fixed mode is checked against Lava's fixed_pt run spike for spike (tests, verify).
"""
import time
from dataclasses import dataclass, field
from typing import Dict, Optional

import nir
import numpy as np
import torch

from exporters.nir_ext import SpikeMatMul
from resformer_deploy.lava.plan import check_simulable
from resformer_deploy.errors import DeployError
from resformer_deploy.passes.dssa_lowering import exact_product
from resformer_deploy.fixed_point.formats import STATE_MAX, lif_step, shift

from targets.base import Capabilities, Target
from targets.host_partition import host_inputs, host_readout
from targets.reference import CompiledGraph, RunResult

SYNAPSE = (nir.Conv2d, nir.Affine, nir.Linear)


@dataclass
class EmulatorRun:
    spikes: Dict[str, np.ndarray] = field(default_factory=dict)  # LIF -> bool [T, N, size]
    outputs: Dict[str, np.ndarray] = field(default_factory=dict)  # streams read by the host [T, N, size]
    max_abs: Dict[str, float] = field(default_factory=dict)  # graded nodes: |value|; LIFs: |a_in|
    max_membrane: Dict[str, float] = field(default_factory=dict)  # LIFs: |pre-reset v| (Lava units)
    saturation: Dict[str, Dict[str, int]] = field(default_factory=dict)  # node -> event kind -> count


class LavaSemantics:
    def __init__(self, plan, quant=None):
        self.plan, self.q = plan, quant
        check_simulable(plan)
        g = plan.graph
        self.preds = {n: [a for a, b in g.edges if b == n] for n in plan.neuro}
        self.mats = {}
        for n, spec in plan.synapses.items():
            if quant is not None:
                self.mats[n] = (quant.syn[n].mant.astype(np.int64).tocsr(), quant.syn[n].exp)
            else:
                self.mats[n] = (spec.matrix(), 0)
        # neuron parameters, resolved once: fixed (dv, effective bias, vth) / float (k, bias, vth)
        if quant is not None:
            self.lif = {n: (q.dv, q.bias_eff, q.vth) for n, q in quant.lif.items()}
        else:
            self.lif = {n: (p.k, p.bias, p.vth) for n, p in plan.lif.items()}

    def _bump(self, run, n, kind, count):
        if count:
            d = run.saturation.setdefault(n, {})
            d[kind] = d.get(kind, 0) + int(count)

    def run(self, host_values: Dict[str, np.ndarray], T: int, record_spikes: bool = True,
            stats: bool = False, progress=None) -> EmulatorRun:
        """host_values: {host node: [N, T, size]} (ints in fixed mode, already scaled)."""
        plan, q, g = self.plan, self.q, self.plan.graph
        fixed = q is not None
        dtype = np.int64 if fixed else np.float64
        run = EmulatorRun()
        state = {}
        rec = {n: [] for n in plan.neuro if record_spikes and isinstance(g.nodes[n], nir.LIF)}
        outs = {o: [] for o in plan.outputs}

        def note_max(d, n, arr):
            if stats and arr.size:
                d[n] = max(d.get(n, 0.0), float(np.abs(arr).max()))

        for t in range(T):
            val = {h: v[:, t].astype(dtype) for h, v in host_values.items()}
            for h, v in val.items():
                note_max(run.max_abs, h, v)
            for n in plan.neuro:
                node, preds = g.nodes[n], self.preds[n]
                if isinstance(node, SYNAPSE):
                    m, e = self.mats[n]
                    x = val[preds[0]]
                    acc = np.asarray((m @ x.T).T)
                    out = shift(acc, e) if fixed else acc
                    if fixed:
                        self._bump(run, n, "graded_overflow", (np.abs(out) >= STATE_MAX).sum())
                elif isinstance(node, nir.Scale):
                    out = sum(val[p] for p in preds[1:]) + val[preds[0]]
                    if fixed:
                        self._bump(run, n, "graded_overflow", (np.abs(out) >= STATE_MAX).sum())
                elif isinstance(node, SpikeMatMul):
                    bias = q.lhs_bias[node.lhs] if fixed else plan.bias[node.lhs]
                    out = exact_product(node, val[node.lhs] + bias, val[node.rhs])
                    if fixed:
                        self._bump(run, n, "graded_overflow", (np.abs(out) >= STATE_MAX).sum())
                elif isinstance(node, nir.LIF):
                    a = sum(val[p] for p in preds[1:]) + val[preds[0]]
                    note_max(run.max_abs, n, a)
                    v = state.get(n, np.zeros_like(a))  # du = 4095: the current u keeps nothing
                    if fixed:
                        dv, bias_eff, vth = self.lif[n]
                        _, v, s, wrapped, sat = lif_step(v, a, dv, bias_eff, vth)
                        self._bump(run, n, "u_wrap", wrapped)
                        self._bump(run, n, "v_saturation", sat)
                    else:
                        k, bias, vth = self.lif[n]
                        v = (1.0 - k) * v + a + bias
                        s = v > vth
                        note_max(run.max_membrane, n, v)
                    state[n] = np.where(s, 0, v)
                    out = s.astype(dtype)
                    if n in rec:
                        rec[n].append(s)
                else:
                    raise DeployError(f"{n}: the emulator has no rule for {type(node).__name__}")
                val[n] = out
                if not isinstance(node, nir.LIF):
                    note_max(run.max_abs, n, out)
            for o in outs:
                outs[o].append(val[o])
            if progress:
                progress(1)
        run.spikes = {n: np.stack(v) for n, v in rec.items()}
        run.outputs = {o: np.stack(v) for o, v in outs.items()}
        return run


class Loihi2EmulatorTarget(Target):
    """Bit-accurate numpy emulation of the fixed-point Lava network (needs ``quant``).
    Its DSSA products are exact integer products, so no lowering option applies."""
    capabilities = Capabilities(arithmetic="fixed", flow="loihi2-fixed", engine="numpy", needs_quantized_net=True,
                                summary="batched numpy emulation of loihi2-sim, bit-exact with it")

    def steps(self, graph, n_samples: int, T: int, *, prepared=None, quant=None, **options) -> int:
        self.refuse_unknown(options)
        self.quantized_net(prepared, quant)
        return T

    def run(self, graph, x: torch.Tensor, T: int, record_spikes: bool = True, record_membranes: bool = False,
            dtype=None, progress=None, info: Optional[dict] = None, prepared=None, quant=None,
            **unknown) -> RunResult:
        self.refuse_unknown(unknown)
        self.check_recording(record_spikes=record_spikes, record_membranes=record_membranes)
        quant = self.quantized_net(prepared, quant)
        t0 = time.time()
        plan = quant.plan  # the plan the network was quantized for (as loihi2-sim uses)
        host = CompiledGraph(graph, torch.float64)
        vals = quant.quantize_inputs(host_inputs(plan, host, x, T))
        run = LavaSemantics(plan, quant).run(vals, T, record_spikes=record_spikes, progress=progress)
        stream = {o: quant.dequantize(o, run.outputs[o]) for o in plan.outputs}
        out = host_readout(plan, host, stream, T, x.shape[0])
        if dtype is not None:
            out = out.to(dtype)
        if info is not None:
            info.update({"saturation": run.saturation})
        return RunResult(output=out, spikes={n: torch.from_numpy(s).reshape(T, x.shape[0], *plan.shapes[n])
                                             for n, s in run.spikes.items()}, seconds=time.time() - t0)
