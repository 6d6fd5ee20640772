"""Batched emulation of the Lava process graph's arithmetic (the plan's own semantics; the
fixed-point emulator target, targets/loihi2_emulator.py, and calibration, flows/fixed_point.py, run it).

Executes a LavaPlan step by step with Lava's per-process arithmetic but without the pipeline
delays (the Lava graph is delay-balanced, so every layer sees the same values, only later),
on a batch of samples at once, convolutions as weight-shared convolutions (never unrolled):
* float mode (no quantization): synapse = conv(x, W) / W @ x in float64, LIFReset float
  (u = a_in, w = (1-k) w + u + bias, spike w > vth, reset 0), fused product, graded relays.
  Used to record calibration statistics in the Lava representation (bias-free graded values).
* fixed mode (a QuantNet, resformer_deploy.fixed_point.network): integer synapses as Lava's
  stock fixed_pt models compute them (Sparse: acc = sum mant * x, then << / >> weight_exp, floors;
  Conv: weight_exp 0, the sum wrapped to 24 signed bits as lava/proc/conv/models.py
  PyConvModelFixed's signed_clamp does, counted as ``conv_wrap``), Lava's bit-accurate LIF (24-bit u
  wraps, v saturates, decay rounds toward zero, threshold << 6, bias mant << exp), integer
  products. Every wrap / saturation / 24-bit payload overflow is counted per node.

Exact integers in floating point (fixed mode). Every fixed-point value is an integer held in a
float32 or float64 tensor, so convolutions and products run on BLAS / oneDNN. That is exact:
products and sums of integers are computed without rounding while every partial sum stays
below 2^24 (float32) or 2^53 (float64), whatever the order of summation (IEEE 754: a result
that is representable is returned exactly). Each operation bounds its products and partial
sums before it runs, from the weights and a bound of |x| for each input in this step (spikes:
1; a graded value: the bound its own operation proves if that is below the 24-bit payload,
else its measured max |x|, measured anyway to count payload overflows), picks float32 if the
bound is below 2^24, float64 if below 2^53, and raises otherwise (InexactError;
resformer_deploy.lava.conv.exact_bound). Multiplying or dividing by a power of two (weight
exponent, << 6) is exact; floor / trunc of an exact quotient is exact.
Only algorithms that multiply and add the operands themselves are allowed: torch's CPU
convolution of float32 is oneDNN's direct convolution (ideep ``convolution_forward`` default
``algorithm::convolution_direct``) or im2col + GEMM; NNPACK (Winograd / FFT transforms,
inexact) is switched off and float32 matmul precision held at "highest" during a run.
The fixed mode is checked against Lava's fixed_pt run spike for spike (tests, verify) and
against an unrolled-matrix integer re-computation (tests/targets/test_emulator.py).
"""
import contextlib
import math
from dataclasses import dataclass, field
from typing import Dict, Optional

import nir
import numpy as np
import torch
import torch.nn.functional as tF

from exporters.nir_ext import SpikeMatMul
from resformer_deploy.errors import DeployError
from resformer_deploy.fixed_point import formats as F
from resformer_deploy.lava.conv import FLOAT_EXACT, exact_bound

SYNAPSE = (nir.Conv2d, nir.Affine, nir.Linear)
F32_EXACT, F64_EXACT = FLOAT_EXACT[np.dtype(np.float32)], FLOAT_EXACT[np.dtype(np.float64)]
WRAP_A = 2 ** (F.STATE_BITS - 1 - F.ACT_SHIFT)  # u = a << 6 leaves 24 bits iff a > 2^17 or a <= -2^17
V_MAX = F.STATE_MAX - 1
CONV_HALF = 2 ** (F.CONV_OUT_BITS - 1)  # the stock fixed Conv wraps sums outside [-2^23, 2^23)
# samples run together (the rest in further chunks): working memory of a chunk at most this
CHUNK_BYTES = 3 * 2 ** 30


class InexactError(DeployError):
    """An integer result could not be proved exact in floating point."""


def exact_dtype(bound: float, what: str) -> torch.dtype:
    """The narrower float type whose integers hold every partial sum below ``bound`` exactly."""
    if bound < F32_EXACT:
        return torch.float32
    if bound < F64_EXACT:
        return torch.float64
    raise InexactError(f"{what}: integer partial sums up to {bound:.3g} exceed 2^53, the largest integer float64 "
                       f"holds exactly; the emulator cannot compute it exactly")


@contextlib.contextmanager
def exact_float_ops():
    """No inexact fast algorithms while a run computes integers in floating point (see above)."""
    prec = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.backends.nnpack.flags(enabled=False):
            yield
    finally:
        torch.set_float32_matmul_precision(prec)


def _abs_max(t: torch.Tensor) -> float:
    if t.numel() == 0:
        return 0.0
    lo, hi = torch.aminmax(t)
    return max(-float(lo), float(hi))


def _buffer(bufs, key, shape, dt) -> Optional[torch.Tensor]:
    """A tensor kept from step to step (fresh large tensors cost a page fault per 4 KiB each time)."""
    if bufs is None:
        return None
    b = bufs.get(key)
    if b is None or tuple(b.shape) != tuple(shape) or b.dtype != dt:
        b = bufs[key] = torch.empty(shape, dtype=dt)
    return b


def _as(t: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
    return t if t.dtype == dt else t.to(dt)


def shift_exact(acc: torch.Tensor, exp: int) -> torch.Tensor:
    """formats.shift on integer-valued floats, in place: << exp is * 2^exp, >> -exp is a floored
    division by 2^-exp (both exact)."""
    if exp > 0:
        return acc.mul_(2.0 ** exp)
    if exp < 0:
        return torch.div(acc, 2.0 ** -exp, rounding_mode="floor", out=acc)
    return acc


class _Synapse:
    """One synapse node: float64 weights (float mode) or integer mantissas (fixed mode), with the
    largest sum of |weights| into one output (the exactness bound per unit of max |x|)."""

    def __init__(self, spec, syn_q=None):
        self.spec, self.q = spec, syn_q
        self.exp = syn_q.exp if syn_q is not None else 0
        self.kind = spec.kind
        self._w = {}
        if self.kind == "conv":
            self.weight = np.asarray(syn_q.mant if syn_q is not None else spec.weight)
            self.row_abs_sum = exact_bound(self.weight, 1.0)
            cout, cin_g, kh, kw = self.weight.shape
            sp_ = spec
            self.pointwise = (kh, kw) == (1, 1) and sp_.stride == (1, 1) and sp_.padding == (0, 0) and sp_.groups == 1
        elif syn_q is not None:
            self.weight = syn_q.mant.tocsr().astype(np.int64)
            rs = abs(self.weight).sum(axis=1)
            self.row_abs_sum = float(rs.max()) if rs.size else 0.0
        else:
            self.weight = np.asarray(spec.weight, dtype=np.float64)

    def w(self, dt: torch.dtype) -> torch.Tensor:
        if dt not in self._w:
            self._w[dt] = torch.from_numpy(np.ascontiguousarray(self.weight)).to(dt)
        return self._w[dt]

    def conv(self, x: torch.Tensor, dt: torch.dtype, bufs=None) -> torch.Tensor:
        """x [N, n_in] -> [N, n_out], a weight-shared convolution in ``dt`` (``bufs``: output
        buffers kept from step to step)."""
        s, N = self.spec, x.shape[0]
        w = self.w(dt)
        if self.pointwise:  # a 1x1 convolution is one GEMM per sample: (Cout, Cin) @ (Cin, H W)
            out = _buffer(bufs, (s.node, dt), (N, s.out_shape[0], x.shape[1] // s.in_shape[0]), dt)
            y = torch.matmul(w.reshape(w.shape[0], -1), x.reshape(N, s.in_shape[0], -1), out=out)
        else:
            y = tF.conv2d(x.reshape(N, *s.in_shape), w, stride=s.stride, padding=s.padding, dilation=s.dilation,
                          groups=s.groups)
        return y.reshape(N, -1)


class _LifFixed:
    """Lava's bit-accurate LIFReset with du = 4095 (formats.lif_step, the reference) on
    integer-valued float32. v' = trunc(v c / 4096) + (a << 6) + bias, c = 4096 - dv: with c a
    power of two the decay is a division by a power of two (exact, |v| < 2^23); otherwise v c
    reaches 2^35, so v is split as 4096 vh + vl, vh = trunc(v / 4096), and
    trunc(v c / 4096) = vh c + trunc(vl c / 4096): |vh c| < 2^23 and |vl c| < 2^24 are exact in
    float32, and vh c, vl c / 4096 share v's sign, so truncating the second alone is the same.
    (A float64 state would move twice the bytes in every pass of the update: PLIF's learned decays
    are rarely powers of two.) A step in which u would wrap runs formats.lif_step itself in int64."""

    def __init__(self, q, size):
        self.q, self.dv, self.vth = q, q.dv, q.vth
        c = F.DECAY_UNITY - q.dv
        self.pow2 = c & (c - 1) == 0
        self.dt = torch.float32
        self.div = float(F.DECAY_UNITY // c) if self.pow2 else None
        self.c = float(c)
        self.bias_int = np.array(np.broadcast_to(q.bias_eff, (size,)), dtype=np.int64)
        self.bias = torch.from_numpy(np.ascontiguousarray(self.bias_int)).to(self.dt)  # |b| < 2^19: exact
        self.vth_act = float(q.vth << F.ACT_SHIFT)
        self.bias_max = float(np.abs(self.bias_int).max()) if size else 0.0

    def step(self, v, v_bound, a, a_max, bufs=None):
        """v: the state (None before the first step) and a bound of its |.|; a: the summed input
        and a bound of its |.| -> (v after reset, its bound, spikes as float32 0/1, wrapped count,
        saturated count).
        The bounds skip the passes that look for wraps and saturation when none can happen."""
        if a_max >= WRAP_A:
            lo, hi = torch.aminmax(a)
            if hi > WRAP_A or lo <= -WRAP_A:  # u wraps: the reference, in int64
                vi = np.zeros(a.shape, np.int64) if v is None else v.to(torch.int64).numpy()
                _, w, s, wrapped, sat = F.lif_step(vi, a.to(torch.int64).numpy(), self.dv, self.bias_int, self.vth)
                w = torch.from_numpy(np.where(s, 0, w)).to(self.dt)
                sf = _buffer(bufs, (self.q.node, "sf"), w.shape, torch.float32)
                sf = torch.from_numpy(s).to(torch.float32) if sf is None else sf.copy_(torch.from_numpy(s))
                return w, float(V_MAX), sf, wrapped, sat
            a_max = float(WRAP_A)
        a = _as(a, self.dt)  # exact: |a| <= 2^17
        if v is None:  # v = 0: no decay term
            w = torch.add(self.bias, a, alpha=2 ** F.ACT_SHIFT)
            bound = 0.0
        else:  # in place: v is this layer's own state
            w = v
            if self.pow2:
                if self.div != 1:
                    torch.div(w, self.div, rounding_mode="trunc", out=w)
            else:
                vh = torch.div(w, float(F.DECAY_UNITY), rounding_mode="trunc",
                               out=_buffer(bufs, (self.q.node, "vh"), w.shape, torch.float32))
                w.sub_(vh, alpha=F.DECAY_UNITY).mul_(self.c)  # vl c
                torch.div(w, float(F.DECAY_UNITY), rounding_mode="trunc", out=w).add_(vh, alpha=self.c)
            # |decay + 64 a| <= 2^24 is exact; adding the bias may round only sums beyond 2^24, which
            # saturate to the same +-(2^23 - 1) either way (rounding is monotonic, 2^23 representable)
            w.add_(a, alpha=2 ** F.ACT_SHIFT).add_(self.bias)
            bound = v_bound * (F.DECAY_UNITY - self.dv) / F.DECAY_UNITY
        bound += 2 ** F.ACT_SHIFT * a_max + self.bias_max
        sat = 0
        if bound > V_MAX:
            lo, hi = torch.aminmax(w)
            if hi > V_MAX or lo < -V_MAX:
                sat = int(((w > V_MAX) | (w < -V_MAX)).sum())
                w.clamp_(-V_MAX, V_MAX)
            bound = max(-float(lo), float(hi), 0.0) if not sat else float(V_MAX)
        # spikes straight into the float32 values the next synapses read; reset w - w * s: 0 where
        # it spiked (w - w is exactly +0), w elsewhere (w - 0). Two passes instead of three
        # (bool mask, masked_fill, cast), the same integers
        sf = torch.gt(w, self.vth_act, out=_buffer(bufs, (self.q.node, "sf"), w.shape, torch.float32))
        w.addcmul_(w, sf, value=-1)
        return w, bound, sf, 0, sat


@dataclass
class EmulatorRun:
    spikes: Dict[str, np.ndarray] = field(default_factory=dict)  # LIF -> bool [T, N, size]
    outputs: Dict[str, np.ndarray] = field(default_factory=dict)  # streams read by the host [T, N, size]
    max_abs: Dict[str, float] = field(default_factory=dict)  # graded nodes: |value|; LIFs: |a_in|
    max_membrane: Dict[str, float] = field(default_factory=dict)  # LIFs: |pre-reset v| (Lava units)
    saturation: Dict[str, Dict[str, int]] = field(default_factory=dict)  # node -> event kind -> count
    dtypes: Dict[str, str] = field(default_factory=dict)  # fixed mode: node -> float types used (exactness)


def chunk_samples(plan, n_samples: int, batch: Optional[int] = None, fixed: bool = True) -> int:
    """Samples run at once: ``batch``, or as many as fit CHUNK_BYTES of working memory."""
    if batch is not None:
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise DeployError(f"batch {batch!r}: must be an integer >= 1")
        return min(int(batch), max(n_samples, 1))
    return max(1, min(max(n_samples, 1), CHUNK_BYTES // max(work_bytes_per_sample(plan, fixed), 1)))


def work_bytes_per_sample(plan, fixed: bool = True) -> int:
    """Working memory of one sample in a run (our model; ti @224 measured 106 MB per sample of
    PSS over the run's spike record and streams, this gives 126 MB): per LIF neuron its state,
    spike mask and spike value (4 + 1 + 4 B; float mode 8 + 1 + 8 B), and half of the step's
    graded values alive at once (4 B, float mode 8 B)."""
    lif = sum(p.size for p in plan.lif.values())
    lif_b, val_b = (9, 4) if fixed else (17, 8)
    return int(lif_b * lif + val_b * max(plan.values_per_step - lif, 0) // 2)


class LavaSemantics:
    def __init__(self, plan, quant=None):
        self.plan, self.q = plan, quant
        g = plan.graph
        self.preds = {n: [a for a, b in g.edges if b == n] for n in plan.neuro}
        self.syn = {n: _Synapse(spec, quant.syn[n] if quant is not None else None)
                    for n, spec in plan.synapses.items()}
        if quant is not None:
            self.lif = {n: _LifFixed(q, plan.lif[n].size) for n, q in quant.lif.items()}
            biases = {k: np.asarray(b, dtype=np.int64) for k, b in quant.lhs_bias.items()}
        else:
            self.lif = {n: (p.k, torch.from_numpy(p.bias), p.vth) for n, p in plan.lif.items()}
            biases = {node.lhs: np.asarray(plan.bias[node.lhs], dtype=np.float64) for node in g.nodes.values()
                      if isinstance(node, SpikeMatMul)}
        # product operands' biases and their max |.| (fixed: exact integers)
        self.lhs_bias = {k: (torch.from_numpy(b), float(np.abs(b).max()) if b.size else 0.0) for k, b in biases.items()}
        self._bias_as = {}
        # the step's last reader of every value: freed after it (host inputs, nodes)
        self.last_use = {}
        for i, n in enumerate(plan.neuro):
            for p in self.preds[n]:
                self.last_use[p] = i

    def _bump(self, run, n, kind, count):
        if count:
            d = run.saturation.setdefault(n, {})
            d[kind] = d.get(kind, 0) + int(count)

    def run(self, host_values: Dict[str, np.ndarray], T: int, record_spikes: bool = True,
            stats: bool = False, progress=None, batch: Optional[int] = None) -> EmulatorRun:
        """host_values: {host node: [N, T, size]} (ints in fixed mode, already scaled).
        Samples run ``batch`` at a time (default: as many as fit CHUNK_BYTES); ``progress(1)``
        after each step of each chunk (chunks x T calls)."""
        plan, g = self.plan, self.plan.graph
        N = next(iter(host_values.values())).shape[0] if host_values else 0
        run = EmulatorRun()
        fixed = self.q is not None
        lifs = [n for n in plan.neuro if isinstance(g.nodes[n], nir.LIF)]
        if record_spikes:
            run.spikes = {n: np.zeros((T, N, plan.lif[n].size), dtype=bool) for n in lifs}
        out_dtype = np.int64 if fixed else np.float64
        run.outputs = {o: np.zeros((T, N, int(np.prod(plan.shapes[o]))), dtype=out_dtype) for o in plan.outputs}
        step = chunk_samples(plan, N, batch, fixed)
        self.used = {}
        with exact_float_ops(), torch.no_grad():
            for lo in range(0, N, step):
                hi = min(N, lo + step)
                self._run_chunk({h: v[lo:hi] for h, v in host_values.items()}, T, run, lo, hi, stats, progress)
        run.dtypes = {n: "/".join(sorted(d)) for n, d in self.used.items()}
        return run

    def _run_chunk(self, host_values, T, run, lo, hi, stats, progress):
        plan, q, g = self.plan, self.q, self.plan.graph
        fixed = q is not None
        state = {}
        bufs = self.bufs = {}

        def note_max(d, n, m):
            if stats:
                d[n] = max(d.get(n, 0.0), m)

        def graded(n, out, bound=math.inf):
            """A graded value and a bound of its |.| (the next exactness bound): the bound its
            operation proves, or, if that reaches the 24-bit payload, its measured max (and the
            overflows counted)."""
            if not (fixed or stats):
                return out, 0.0
            if bound < F.STATE_MAX and not stats:
                return out, bound
            m = _abs_max(out)
            if fixed and m >= F.STATE_MAX:
                self._bump(run, n, "graded_overflow", ((out >= F.STATE_MAX) | (out <= -F.STATE_MAX)).sum())
            note_max(run.max_abs, n, m)
            return out, m

        def summed(n, preds):
            """Sum of the inbound values: the other inputs, then the first (float mode rounds in
            this order); fixed: float32 if the summed bound allows, else float64."""
            vals = [val[p] for p in preds]
            bound = sum(m for _, m in vals)
            dt = exact_dtype(bound, n) if fixed else torch.float64
            first = _as(vals[0][0], dt)
            if len(vals) == 1:
                return first, bound  # never changed in place by its readers
            acc = _as(vals[1][0], dt)  # sum(rest) + first: 0 + v1 is v1
            for i_, (t_, _) in enumerate(vals[2:]):
                acc = acc + _as(t_, dt) if i_ == 0 else acc.add_(_as(t_, dt))
            return (acc + first if len(vals) == 2 else acc.add_(first)), bound

        for t in range(T):
            val = {}
            for h, v in host_values.items():
                x = torch.from_numpy(np.ascontiguousarray(v[:, t]))
                if fixed:
                    m = _abs_max(x)
                    x = x.to(exact_dtype(m, h))
                else:
                    x = x.to(torch.float64)
                val[h] = graded(h, x)
            for i, n in enumerate(plan.neuro):
                node, preds = g.nodes[n], self.preds[n]
                if isinstance(node, SYNAPSE):
                    out, bound = self._synapse(n, *val[preds[0]], fixed)
                    if fixed and self.syn[n].kind == "conv" and bound >= CONV_HALF:
                        out, bound = self._conv_wrap(run, n, out)
                    val[n] = graded(n, out, bound)
                elif isinstance(node, nir.Scale):
                    val[n] = graded(n, *summed(n, preds))
                elif isinstance(node, SpikeMatMul):
                    val[n] = graded(n, *self._product(n, node, val, fixed))
                elif isinstance(node, nir.LIF):
                    a, a_max = summed(n, preds)
                    if stats:
                        note_max(run.max_abs, n, _abs_max(a))
                    v, v_bound = state.get(n, (None, 0.0))
                    if fixed:
                        v, v_bound, s, wrapped, sat = self.lif[n].step(v, v_bound, a, a_max, bufs)
                        self._bump(run, n, "u_wrap", wrapped)
                        self._bump(run, n, "v_saturation", sat)
                        sf = s  # float32 0/1 already
                    else:
                        k, bias, vth = self.lif[n]
                        v = torch.zeros_like(a) if v is None else v
                        v = v.mul_(1.0 - k).add_(a).add_(bias)  # ((1-k) v + a) + bias: LIFReset float
                        s = torch.gt(v, vth, out=_buffer(bufs, (n, "s"), v.shape, torch.bool))
                        if stats:
                            note_max(run.max_membrane, n, _abs_max(v))
                        v.masked_fill_(s, 0.0)
                        sf = _buffer(bufs, (n, "sf"), s.shape, torch.float64).copy_(s)
                    state[n] = (v, v_bound)  # du = 4095: the current u keeps nothing
                    if run.spikes:
                        run.spikes[n][t, lo:hi] = s.numpy()  # 0/1 (fixed: float32) -> bool
                    val[n] = (sf, 1.0)
                else:
                    raise DeployError(f"{n}: the emulator has no rule for {type(node).__name__}")
                for p in preds:  # values nobody reads later in this step
                    if self.last_use.get(p) == i and p not in plan.outputs:
                        val.pop(p, None)
            for o in plan.outputs:
                run.outputs[o][t, lo:hi] = val[o][0].numpy()
            if progress:
                progress(1)

    def _conv_wrap(self, run, n, out):
        """The stock fixed Conv's 24-bit signed wrap of its sum (formats.wrap_signed), counted as
        ``conv_wrap``; a sum beyond int32 (the stock model's cast, undefined there) is refused."""
        lo, hi = torch.aminmax(out)
        lo, hi = float(lo), float(hi)
        if hi < CONV_HALF and lo >= -CONV_HALF:
            return out, max(-lo, hi, 0.0)
        if hi >= 2 ** 31 or lo < -2 ** 31:
            raise InexactError(f"{n}: convolution sums up to {max(-lo, hi):.3g} exceed int32, where Lava's stock "
                               f"Conv model casts them (lava/proc/conv/utils.py conv); lower the scale")
        wrapped, count = F.wrap_signed(out.to(torch.int64).numpy())
        self._bump(run, n, "conv_wrap", count)
        return torch.from_numpy(wrapped).to(out.dtype), float(CONV_HALF)

    def _used(self, n, dt):
        self.used.setdefault(n, set()).add(str(dt).replace("torch.", ""))

    def _synapse(self, n, x, x_max, fixed):
        """-> (output, bound of its |.|)."""
        syn = self.syn[n]
        if not fixed:
            if syn.kind == "conv":
                return syn.conv(x, torch.float64, self.bufs), math.inf
            return torch.matmul(x, syn.w(torch.float64).T), math.inf
        if syn.kind == "dense":  # scipy int64: exact; the result must fit float64's integers
            xi = x.to(torch.int64).numpy()
            acc = F.shift(np.asarray(syn.weight @ xi.T).T, syn.exp)
            m = float(np.abs(acc).max()) if acc.size else 0.0
            exact_dtype(m, n)
            self._used(n, "int64")
            return torch.from_numpy(np.ascontiguousarray(acc)).to(torch.float64), m
        acc_bound = syn.row_abs_sum * x_max
        dt = exact_dtype(acc_bound, n)
        self._used(n, dt)
        # |floor(acc / 2^k)| <= |acc| / 2^k + 1
        bound = acc_bound * 2.0 ** syn.exp + (1 if syn.exp < 0 else 0)
        return shift_exact(syn.conv(_as(x, dt), dt, self.bufs), syn.exp), bound

    def _product(self, n, node, val, fixed):
        """-> (the node's product (its definition: passes/dssa_lowering.exact_product), bound)."""
        lhs, l_max = val[node.lhs]
        rhs, _ = val[node.rhs]
        bias, b_max = self.lhs_bias[node.lhs]
        if not fixed:
            return _matmul_groups(node, lhs + bias, rhs), math.inf
        # rhs is spikes (0/1): a partial sum of one output is at most (its count of terms) x max|lhs + bias|
        bound = (l_max + b_max) * int(node.rhs_rows.shape[1])
        dt = exact_dtype(bound, n)
        self._used(n, dt)
        key = (node.lhs, dt)  # the bias in this float type, converted once per run
        if key not in self._bias_as:
            self._bias_as[key] = bias.to(dt)
        return _matmul_groups(node, _as(lhs, dt) + self._bias_as[key], _as(rhs, dt)), bound


def _rows(x: torch.Tensor, view, rows: np.ndarray) -> torch.Tensor:
    """x [B, prod(view)] viewed as [B, rows, cols], the groups' rows picked: [B, G, r, cols]
    (a view when the groups take consecutive rows, as DSSA's heads do)."""
    B = x.shape[0]
    m = x.reshape(B, int(view[0]), int(view[1]))
    flat = rows.reshape(-1)
    if flat.size and np.array_equal(flat, flat[0] + np.arange(flat.size)):
        return m[:, int(flat[0]):int(flat[0]) + flat.size].reshape(B, rows.shape[0], rows.shape[1], -1)
    return m[:, torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64))]


def _matmul_groups(mm: SpikeMatMul, lhs: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """SpikeMatMul's definition (exporters/nir_ext.py; passes/dssa_lowering.exact_product, its
    numpy form) on torch tensors, batched: out_g = L_g (transposed if asked) @ R_g."""
    L = _rows(lhs, mm.lhs_view, mm.lhs_rows)
    if mm.transpose_lhs:
        L = L.transpose(-1, -2)
    return torch.matmul(L, _rows(rhs, mm.rhs_view, mm.rhs_rows)).reshape(lhs.shape[0], -1)
