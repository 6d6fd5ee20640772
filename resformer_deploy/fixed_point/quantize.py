"""Pass: quantize a Lava plan to Loihi 2 fixed point (resformer_deploy.fixed_point.formats).

Requires: a LavaPlan (resformer_deploy.lava.plan) and calibration statistics recorded in the Lava
          representation by the float emulator (targets.loihi2_emulator, stats=True) on
          calibration data (the training split, never the evaluation data).
Number representation: every real-valued stream is an integer  x_int = S * x,  one scale S
(a power of two) per *scale group*: values summed by a residual junction, a neuron's inputs
and a product with its real operand must share S (integers add only in one unit). Spikes are 1.
Ensures, per group, the largest S that keeps (with ``margin`` over the calibrated maxima):
  * the LIF current u = a_in << 6 and the membrane v = 64 S w inside 24 bits (u wraps, v
    saturates), the graded payloads inside 24 bits,
  * the threshold S * th inside the 17-bit vth, the bias 64 S b inside 13-bit mant << 3-bit exp,
    every weight W * S inside 8-bit mantissa << the largest exponent;
  and per synapse process an 8-bit mantissa with its own exponent (mant << exp = W S_out / S_in),
  12-bit decay dv = k * 4096, du = 4095 (u = input each step), integer thresholds and biases.
Every clipped weight / bias is counted here; wraps and saturations at run time are counted
by the emulator. ``QuantNet.layers`` is the per-layer report; the types (and the format checks
each makes) are in resformer_deploy.fixed_point.network.
"""
from typing import Dict, List

import nir
import numpy as np
import scipy.sparse as sp

from exporters.nir_ext import SpikeMatMul
from resformer_deploy.lava.plan import LavaPlan
from resformer_deploy.fixed_point import formats as F
from resformer_deploy.fixed_point.network import LifQ, QuantizationError, QuantLayer, QuantNet, ScaleGroup, SynQ

MARGIN = 2.0


class _Groups:
    def __init__(self):
        self.parent = {}

    def find(self, a):
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)


def scale_groups(plan: LavaPlan) -> Dict[str, List[str]]:
    g = plan.graph
    preds = {n: [a for a, b in g.edges if b == n] for n in plan.neuro}
    uf = _Groups()
    graded = [h for h in plan.inputs] + [n for n in plan.neuro if not isinstance(g.nodes[n], nir.LIF)]
    for n in graded:
        uf.find(n)
    for n in plan.neuro:
        node = g.nodes[n]
        if isinstance(node, nir.Scale):
            for p in preds[n]:
                uf.union(p, n)
        elif isinstance(node, SpikeMatMul):
            uf.union(node.lhs, n)
        elif isinstance(node, nir.LIF):
            for p in preds[n][1:]:
                uf.union(p, preds[n][0])
    groups: Dict[str, List[str]] = {}
    for n in graded:
        groups.setdefault(uf.find(n), []).append(n)
    return groups


def _pow2_floor(x: float) -> float:
    return float(2.0 ** np.floor(np.log2(x)))


def quantize_synapse(spec, gain: float) -> SynQ:
    """One synapse's mantissas and exponent for the target weights W * gain (gain = S_out / S_in).

    A convolution is quantized on its kernel (each weight once: it is shared by every output
    position), a dense node on its matrix's nonzeros; neither is unrolled. The exponent and the
    error are those of the distinct weights: a kernel tap that never meets the input (padding
    only) still takes part, as it does in the weight-shared Conv process that stores it."""
    if spec.kind == "conv":
        target = np.asarray(spec.weight, dtype=np.float64) * gain
        mant, exp, sat = F.quantize_weights(target)
        nz = target != 0
        err_of, stored = target[nz], mant
    else:
        m = sp.csr_matrix(np.asarray(spec.weight, dtype=np.float64))
        m.eliminate_zeros()
        err_of = m.data * gain
        mant, exp, sat = F.quantize_weights(err_of)
        stored = sp.csr_matrix((mant, m.indices.copy(), m.indptr.copy()), shape=m.shape)
        nz = slice(None)
    got = (F.shift(mant, exp) if exp >= 0 else mant * 2.0 ** exp)[nz]
    err = float(np.sqrt(np.mean((got - err_of) ** 2)) / max(np.sqrt(np.mean(err_of ** 2)), 1e-300)) \
        if err_of.size else 0.0
    util = float(np.abs(mant).max() / F.WEIGHT_SINGLE_MAX) if mant.size else 0.0
    # synapses: the float connectivity's (a mantissa rounded to 0 is still a stored weight)
    return SynQ(spec.node, spec.kind, stored, exp, sat, err, util, spec.synapse_count())


def quantize(plan: LavaPlan, stats, margin: float = MARGIN) -> QuantNet:
    """stats: an EmulatorRun recorded with stats=True in float mode on calibration data."""
    g = plan.graph
    preds = {n: [a for a, b in g.edges if b == n] for n in plan.neuro}
    lifs = [n for n in plan.neuro if isinstance(g.nodes[n], nir.LIF)]
    groups = scale_groups(plan)
    group_of = {m: r for r, ms in groups.items() for m in ms}
    consumers = {r: [n for n in lifs if group_of[preds[n][0]] == r] for r in groups}
    qn = QuantNet(plan, scale={})
    for r, members in groups.items():
        limits = {}
        gmax = max(stats.max_abs.get(m, 0.0) for m in members)
        if gmax > 0:
            limits["graded payload (24 bit)"] = (F.STATE_MAX - 1) / (gmax * margin)
        for n in consumers[r]:
            p = plan.lif[n]
            th = abs(p.vth)
            a_max = stats.max_abs.get(n, 0.0) * margin
            w_max = max(stats.max_membrane.get(n, 0.0) * margin, th)
            b_max = float(np.abs(p.bias).max()) if p.bias.size else 0.0
            if a_max > 0:
                limits[f"{n}: current u (24 bit)"] = (F.STATE_MAX - 1) / (2 ** F.ACT_SHIFT * a_max)
            if w_max > 0:
                limits[f"{n}: membrane v (24 bit)"] = (F.STATE_MAX - 1) / (2 ** F.ACT_SHIFT * w_max)
            if th > 0:
                limits[f"{n}: threshold (17 bit)"] = F.VTH_MAX / th
            if b_max > 0:
                limits[f"{n}: bias (13+3 bit)"] = F.BIAS_MANT_RANGE[1] * 2 ** F.BIAS_EXP_RANGE[1] / (
                    2 ** F.ACT_SHIFT * b_max)
        for m in members:  # the weights: mantissa << largest exponent must reach W * S (spike inputs)
            if m in plan.synapses and isinstance(g.nodes.get(preds[m][0]), nir.LIF):
                wmax = float(np.abs(plan.synapses[m].weight).max())
                if wmax > 0:
                    limits[f"{m}: weight mantissa x 2^{F.WEIGHT_EXP_RANGE[1]}"] = (
                        F.WEIGHT_MIXED_MAX * 2 ** F.WEIGHT_EXP_RANGE[1] / wmax)
        if not limits:
            raise QuantizationError(f"scale group {r}: no calibration data (all values zero); "
                                    f"calibrate on inputs that reach this layer")
        bound = min(limits, key=limits.get)
        S = _pow2_floor(limits[bound])
        for m in members:
            qn.scale[m] = S
        for n in consumers[r]:
            qn.scale[n] = S
        qn.groups.append(ScaleGroup(sorted(members), consumers[r], S, int(np.log2(S)), bound, gmax))
    for n in plan.neuro:
        node = g.nodes[n]
        if n in plan.synapses:
            src = preds[n][0]
            s_in = 1.0 if isinstance(g.nodes.get(src), nir.LIF) else qn.scale[src]
            qn.syn[n] = quantize_synapse(plan.synapses[n], qn.scale[n] / s_in)
        elif isinstance(node, SpikeMatMul) and node.lhs not in qn.lhs_bias:
            # the operand's bias: one 8-bit mantissa grid, so the synaptic lowering (bias as
            # synapse weights) and the fused product use the identical integer
            b = np.asarray(plan.bias[node.lhs], dtype=np.float64) * qn.scale[node.lhs]
            mant, exp, sat = F.quantize_weights(b)
            if exp < 0:
                mant, exp = (np.round(b / 2) * 2).astype(np.int64), 0
            qn.lhs_bias[node.lhs] = mant << exp
            qn.lhs_bias_exp[node.lhs] = exp
    for n in lifs:
        p, S = plan.lif[n], qn.scale[n]
        dv, derr = F.decay_register(p.k)
        vth = int(round(S * p.vth))
        bm, be, bsat = F.split_bias(p.bias * S * 2 ** F.ACT_SHIFT)
        qn.lif[n] = LifQ(n, dv, vth, bm, be, bsat, derr, abs(vth / S - p.vth) / p.vth if p.vth else 0.0)
    qn.layers = layer_report(qn, stats)
    return qn


def layer_report(qn: QuantNet, stats) -> List[QuantLayer]:
    g = qn.plan.graph
    return [QuantLayer.of(n, type(g.nodes[n]).__name__, int(np.log2(qn.scale[n])) if n in qn.scale else None,
                          stats.max_abs.get(n, 0.0), qn.syn.get(n), qn.lif.get(n), stats.max_membrane.get(n, 0.0))
            for n in qn.plan.neuro]
