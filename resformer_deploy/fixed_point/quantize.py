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
    a dense weight W * S inside 8-bit mantissa << the largest exponent, a convolution weight
    W S_out / S_in inside the 8-bit mantissa itself (exponent 0, below);
  and per synapse process an 8-bit mantissa with its own exponent (mant << exp = W S_out / S_in),
  12-bit decay dv = k * 4096, du = 4095 (u = input each step), integer thresholds and biases.

Stock process models only (hardware-faithful). Every parameter must mean on Lava's stock fixed_pt
models (lava-nc 0.10.0: proc/conv, sparse, lif, graded, prodneuron models.py) what it means here.
The one that did not: the stock ``Conv`` models ignore ``weight_exp`` (lava-nc issue 803; the
NcProcessModel for Loihi 2 too). So a convolution gets exponent 0 and its integer weights ARE the
mantissas: W S_out / S_in itself must be an 8-bit integer. The scale is folded into the group: a
group holding a convolution is bounded by  S_out <= top S_in / |W|max  (top = 254 for mixed signs,
whose LSB hardware drops, else 255; S_in = 1 for spike inputs), one more limit in the same min()
that picks S. This is exact, not an approximation of the old construction: the stock model then
computes  sum mant x  in integers, and the unit of that sum is S_out by definition, as it was with
the exponent; what changes is only that S_out can be smaller (2^6-2^8 instead of 2^11-2^12 on the
digits model), which costs resolution of the group's other integers (threshold, bias), never
range (a smaller S only moves values away from the 24-bit bounds). The alternatives were worse:
unrolling convolutions into ``Sparse`` (honours weight_exp) costs the weight sharing that makes
the networks fit; a shift stage after each Conv needs a process per Conv and a step of latency.
Where a convolution reads a graded stream, S_in is another group's scale, so the caps are applied
until no group changes (S only falls, so this ends). The stock fixed Conv also wraps its sum to
24 signed bits (conv/utils.py signed_clamp): the emulator does the same and counts it
(``conv_wrap``); the limits above keep the LIF input far below that.
With ``netx_bias_grid`` a LIF fed by one convolution alone gets its bias on a 2^6 grid (bias_exp
6, an integer in the unit S of its input), because lava-dl netx builds every neuron with bias_exp
6: the pair is then one netx ``conv`` layer of the deployable artifact (targets/artifact). It is
opt-in because the coarser bias costs accuracy where S is small: whole held-out splits on the
emulator, finest bias -> netx grid: digits 99.44 -> 99.16 %, cifar 96.66 -> 97.08 %, dvsg
90.81 -> 89.42 % (PyTorch 90.81 %: beyond the 1 pp goal; benchmarks/RESULTS.md).
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
    if spec.kind == "conv":  # exponent 0: the stock Conv models ignore it (module docstring)
        target = np.asarray(spec.weight, dtype=np.float64) * gain
        mant, exp, sat = F.quantize_weights(target, (F.CONV_WEIGHT_EXP, F.CONV_WEIGHT_EXP))
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


def _conv_weight_limit(plan, n) -> float:
    """S_out / S_in <= this keeps a convolution's exponent-0 mantissas in 8 bits (0: no weights)."""
    w = np.asarray(plan.synapses[n].weight, dtype=np.float64)
    wmax = float(np.abs(w).max()) if w.size else 0.0
    return F.weight_top(w) / wmax if wmax > 0 else 0.0


def _netx_conv_fed(plan: LavaPlan, preds, n) -> bool:
    """Is LIF n fed by one convolution alone, without delay (the pair lava-dl netx's conv block holds)?"""
    return (len(preds[n]) == 1 and preds[n][0] in plan.synapses and plan.synapses[preds[n][0]].kind == "conv"
            and plan.edge_delay.get((preds[n][0], n), 0) == 0)


def quantize(plan: LavaPlan, stats, margin: float = MARGIN, netx_bias_grid: bool = False) -> QuantNet:
    """stats: an EmulatorRun recorded with stats=True in float mode on calibration data;
    netx_bias_grid: conv-fed LIF biases on netx's 2^6 grid (module docstring)."""
    g = plan.graph
    preds = {n: [a for a, b in g.edges if b == n] for n in plan.neuro}
    lifs = [n for n in plan.neuro if isinstance(g.nodes[n], nir.LIF)]
    groups = scale_groups(plan)
    group_of = {m: r for r, ms in groups.items() for m in ms}
    consumers = {r: [n for n in lifs if group_of[preds[n][0]] == r] for r in groups}
    spike_in = lambda m: isinstance(g.nodes.get(preds[m][0]), nir.LIF)  # noqa: E731
    # convolutions reading a graded stream: their cap depends on another group's scale
    graded_convs = [m for m in plan.neuro if m in plan.synapses and plan.synapses[m].kind == "conv"
                    and not spike_in(m) and _conv_weight_limit(plan, m) > 0]
    limits_of = {}
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
        for m in members:  # the weights of synapses with spike inputs (S_in = 1)
            if m in plan.synapses and spike_in(m):
                if plan.synapses[m].kind == "conv":  # exponent 0: mantissa = W S itself
                    lim = _conv_weight_limit(plan, m)
                    if lim > 0:
                        limits[f"{m}: conv weight mantissa (8 bit, weight_exp 0)"] = lim
                    continue
                wmax = float(np.abs(plan.synapses[m].weight).max())
                if wmax > 0:  # stock Sparse honours weight_exp: mantissa << largest exponent
                    limits[f"{m}: weight mantissa x 2^{F.WEIGHT_EXP_RANGE[1]}"] = (
                        F.WEIGHT_MIXED_MAX * 2 ** F.WEIGHT_EXP_RANGE[1] / wmax)
        if not limits:
            raise QuantizationError(f"scale group {r}: no calibration data (all values zero); "
                                    f"calibrate on inputs that reach this layer")
        limits_of[r] = limits
    S = {r: _pow2_floor(min(lim.values())) for r, lim in limits_of.items()}
    for _ in range(len(groups) + 1):  # graded-input convolutions: cap S_out by S_in until stable
        changed = False
        for m in graded_convs:
            r, s_in = group_of[m], S[group_of[preds[m][0]]]
            cap = _conv_weight_limit(plan, m) * s_in
            if S[r] > cap:
                limits_of[r][f"{m}: conv weight mantissa (8 bit, weight_exp 0) x input scale"] = cap
                S[r] = _pow2_floor(cap)
                changed = True
        if not changed:
            break
    else:
        raise QuantizationError(f"convolutions {', '.join(graded_convs)}: no scales keep their exponent-0 "
                                f"mantissas in 8 bits (each lowers the scale its input sets)")
    qn = QuantNet(plan, scale={})
    for r, members in groups.items():
        limits = limits_of[r]
        bound = min(limits, key=limits.get)
        for m in members:
            qn.scale[m] = S[r]
        for n in consumers[r]:
            qn.scale[n] = S[r]
        gmax = max(stats.max_abs.get(m, 0.0) for m in members)
        qn.groups.append(ScaleGroup(sorted(members), consumers[r], S[r], int(np.log2(S[r])), bound, gmax))
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
        # netx_bias_grid: a convolution's only LIF gets its bias on netx's 2^6 grid, so the pair
        # is one lava-dl netx ``conv`` layer in the artifact; otherwise the finest exponent
        netx = netx_bias_grid and _netx_conv_fed(plan, preds, n)
        bm, be, bsat = F.split_bias(p.bias * S * 2 ** F.ACT_SHIFT, F.NETX_BIAS_EXP if netx else 0)
        qn.lif[n] = LifQ(n, dv, vth, bm, be, bsat, derr, abs(vth / S - p.vth) / p.vth if p.vth else 0.0)
    qn.layers = layer_report(qn, stats)
    return qn


def layer_report(qn: QuantNet, stats) -> List[QuantLayer]:
    g = qn.plan.graph
    return [QuantLayer.of(n, type(g.nodes[n]).__name__, int(np.log2(qn.scale[n])) if n in qn.scale else None,
                          stats.max_abs.get(n, 0.0), qn.syn.get(n), qn.lif.get(n), stats.max_membrane.get(n, 0.0))
            for n in qn.plan.neuro]
