"""The quantized network: Loihi 2 fixed-point parameters of a LavaPlan (made by fixed_point.quantize).

Every part checks its number formats (fixed_point.formats, taken from Lava's bit-accurate models)
when it is made and names its node when it refuses, in the style of NIR's own nodes (nir/ir/*.py):
a parameter that Lava would clip or wrap is refused here, not found in a run.
"""
from dataclasses import dataclass, field, fields
from typing import Dict, List, Optional

import numpy as np
import scipy.sparse as sp

from resformer_deploy.errors import DeployError
from resformer_deploy.fixed_point import formats as F
from resformer_deploy.lava.plan import LavaPlan


class QuantizationError(DeployError):
    """The network cannot be represented in Loihi 2 number formats."""


def _check_range(node, what, values, lo, hi):
    a = np.asarray(values)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise QuantizationError(f"{node}: {what} must be integers, got {a.dtype}")
    if a.size and (a.min() < lo or a.max() > hi):
        got = a.item() if a.size == 1 else f"{a.min()}..{a.max()}"
        raise QuantizationError(f"{node}: {what} {got} outside [{lo}, {hi}]")


SYNQ_KINDS = ("dense", "conv")


@dataclass(eq=False)  # array fields: compared by identity, as NIR's nodes are
class SynQ:
    """One synapse process: 8-bit weight mantissas and their shared ``weight_exp``,
    mant << exp = W S_out / S_in. ``dense``: an (out x in) int64 CSR matrix, the float matrix's
    pattern, as Lava's ``Sparse`` holds it (lava/proc/sparse/models.py PySparseModelBitAcc);
    ``conv``: the int64 kernel (Cout, Cin/groups, kh, kw) in NIR's layout, held once as Lava's
    weight-shared ``Conv`` holds it (lava/proc/conv/process.py), never unrolled, exponent 0 (the
    stock Conv models ignore weight_exp: fixed_point/quantize.py). ``synapses``: the
    nonzero synapses of the unrolled connectivity (counted, not built)."""
    node: str
    kind: str  # one of SYNQ_KINDS
    mant: object = field(metadata={"json": False})  # sp.csr_matrix (dense) or np.ndarray (conv), int64
    exp: int
    saturated: int  # weights clipped to the mantissa range
    rel_rms_error: float
    mant_utilization: float  # max |mantissa| / 255
    synapses: int

    def __post_init__(self):
        n = self.node
        if self.kind not in SYNQ_KINDS:
            raise QuantizationError(f"{n}: synapse kind '{self.kind}' is not one of {', '.join(SYNQ_KINDS)}")
        if self.kind == "dense" and not sp.issparse(self.mant):
            raise QuantizationError(f"{n}: dense mantissas must be a sparse (out x in) matrix, got "
                                    f"{type(self.mant).__name__}")
        if self.kind == "conv":
            self.mant = np.asarray(self.mant)
            if self.mant.ndim != 4:
                raise QuantizationError(f"{n}: convolution mantissas must be a (Cout, Cin/groups, kh, kw) kernel, "
                                        f"got shape {self.mant.shape}")
        _check_range(n, "weight exponent", [self.exp], *F.WEIGHT_EXP_RANGE)
        if self.kind == "conv" and self.exp != F.CONV_WEIGHT_EXP:
            raise QuantizationError(f"{n}: convolution weight exponent {self.exp}: Lava's stock Conv models ignore "
                                    f"weight_exp (lava-nc issue 803), so it must be {F.CONV_WEIGHT_EXP}")
        m = self.values
        # Lava truncates the LSB of mixed-sign weights (lava/utils/weightutils.py truncate_weights)
        if m.size and m.min() < 0 < m.max():
            _check_range(n, "mixed-sign weight mantissas", m, F.WEIGHT_MIXED_MIN, F.WEIGHT_MIXED_MAX)
            if np.any(m % 2):
                raise QuantizationError(f"{n}: mixed-sign weight mantissas must be even (Lava drops the LSB)")
        else:
            _check_range(n, "weight mantissas", m, -F.WEIGHT_SINGLE_MAX, F.WEIGHT_SINGLE_MAX)
        if self.saturated < 0 or self.synapses < 0:
            raise QuantizationError(f"{n}: negative count (saturated {self.saturated}, synapses {self.synapses})")

    @property
    def values(self) -> np.ndarray:
        """The stored mantissas, flat (a CSR matrix's entries, a kernel's taps)."""
        return self.mant.data if self.kind == "dense" else self.mant.reshape(-1)

    @property
    def max_abs(self) -> int:
        """Largest |mantissa| (0 for no weights)."""
        m = self.values
        return int(np.abs(m).max()) if m.size else 0


@dataclass(eq=False)
class LifQ:
    """One LIF layer as Lava's bit-accurate ``LIFReset`` holds it (lava/proc/lif/models.py
    PyLifResetModelBitAcc): 12-bit ``dv``, 17-bit ``vth``, 13-bit ``bias_mant`` << 3-bit ``bias_exp``."""
    node: str
    dv: int
    vth: int
    bias_mant: np.ndarray = field(metadata={"json": False})
    bias_exp: int
    bias_saturated: int
    decay_error: float  # |dv / 4096 - k|
    threshold_error: float  # |vth / S - th| / th

    def __post_init__(self):
        if not 0 <= self.vth <= F.VTH_MAX:
            raise QuantizationError(f"{self.node}: threshold {self.vth} outside the 17-bit vth range")
        _check_range(self.node, "decay dv", [self.dv], 0, F.DECAY_UNITY - 1)
        _check_range(self.node, "bias mantissas", self.bias_mant, *F.BIAS_MANT_RANGE)
        _check_range(self.node, "bias exponent", [self.bias_exp], *F.BIAS_EXP_RANGE)
        if np.ndim(self.bias_mant) != 1:
            raise QuantizationError(f"{self.node}: bias mantissas must be one per neuron, shape "
                                    f"{np.shape(self.bias_mant)}")

    @property
    def bias_eff(self) -> np.ndarray:
        return self.bias_mant.astype(np.int64) << self.bias_exp


@dataclass
class ScaleGroup:
    """Streams that share one integer unit S = 2^log2_scale (they are added as integers)."""
    members: List[str]
    lif_consumers: List[str]  # LIF layers whose summed input is in this unit
    scale: float
    log2_scale: int
    limited_by: str  # the format bound that chose S
    calibrated_max_abs: float

    def __post_init__(self):
        if not self.members or not self.limited_by:
            raise QuantizationError(f"scale group {self.members}: needs members and the bound that set its scale")
        if self.scale != 2.0 ** self.log2_scale:
            raise QuantizationError(f"scale group {self.members[0]}: scale {self.scale} is not 2^{self.log2_scale}")


# a row shows a synapse's or a neuron's figures only if the node has them (report keys unchanged)
SYNAPSE_FIELDS = ("weight_exp", "weight_rel_rms_error", "mantissa_utilization", "synapses")
LIF_FIELDS = ("dv", "vth", "bias_exp", "threshold_rel_error", "decay_error", "calibrated_max_membrane")


@dataclass
class QuantLayer:
    """One row of the per-layer quantization report (``QuantNet.layers``); field order is the
    report's column order."""
    node: str
    kind: str  # NIR node type
    log2_scale: Optional[int]  # its stream's unit (None: spikes, no scale)
    weights_saturated: int = 0
    bias_saturated: int = 0
    calibrated_max_abs: float = 0.0
    weight_exp: Optional[int] = None
    weight_rel_rms_error: Optional[float] = None
    mantissa_utilization: Optional[float] = None
    synapses: Optional[int] = None
    dv: Optional[int] = None
    vth: Optional[int] = None
    bias_exp: Optional[int] = None
    threshold_rel_error: Optional[float] = None
    decay_error: Optional[float] = None
    calibrated_max_membrane: Optional[float] = None

    def __post_init__(self):
        for group in (SYNAPSE_FIELDS, LIF_FIELDS):
            if len({getattr(self, f) is None for f in group}) > 1:
                raise QuantizationError(f"{self.node}: report row has only some of {', '.join(group)}")
        if self.weights_saturated < 0 or self.bias_saturated < 0:
            raise QuantizationError(f"{self.node}: negative saturation count")

    @classmethod
    def of(cls, node: str, kind: str, log2_scale, max_abs: float, syn: Optional[SynQ] = None,
           lif: Optional[LifQ] = None, max_membrane: float = 0.0) -> "QuantLayer":
        row = cls(node, kind, log2_scale, calibrated_max_abs=max_abs)
        if syn is not None:
            row.weights_saturated, row.weight_exp, row.weight_rel_rms_error = syn.saturated, syn.exp, syn.rel_rms_error
            row.mantissa_utilization, row.synapses = syn.mant_utilization, int(syn.synapses)
        if lif is not None:
            row.dv, row.vth, row.bias_exp, row.bias_saturated = lif.dv, lif.vth, lif.bias_exp, lif.bias_saturated
            row.threshold_rel_error, row.decay_error = lif.threshold_error, lif.decay_error
            row.calibrated_max_membrane = max_membrane
        return row

    @property
    def clipped(self) -> int:
        return self.weights_saturated + self.bias_saturated

    def to_json(self) -> dict:
        skip = (SYNAPSE_FIELDS if self.weight_exp is None else ()) + (LIF_FIELDS if self.dv is None else ())
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


@dataclass
class QuantNet:
    plan: LavaPlan = field(metadata={"json": False})  # the plan these parameters belong to
    scale: Dict[str, float]  # node (graded stream, host input, LIF input) -> S
    syn: Dict[str, SynQ] = field(default_factory=dict)
    lif: Dict[str, LifQ] = field(default_factory=dict)
    lhs_bias: Dict[str, np.ndarray] = field(default_factory=dict)  # product operand -> int bias
    lhs_bias_exp: Dict[str, int] = field(default_factory=dict)  # its exponent (mantissa grid of 2^exp)
    groups: List[ScaleGroup] = field(default_factory=list)
    layers: List[QuantLayer] = field(default_factory=list)
    calibration: dict = field(default_factory=dict)

    def quantize_inputs(self, host_values: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        out = {}
        for h, v in host_values.items():
            q = np.round(v * self.scale[h]).astype(np.int64)
            over = int((np.abs(q) >= F.STATE_MAX).sum())
            if over:
                raise QuantizationError(f"input stream '{h}': {over} value(s) exceed the 24-bit graded payload "
                                        f"at scale 2^{int(np.log2(self.scale[h]))}; recalibrate on wider data")
            out[h] = q
        return out

    def dequantize(self, node: str, ints: np.ndarray) -> np.ndarray:
        return np.asarray(ints, dtype=np.float64) / self.scale[node]

    def saturation_total(self) -> int:
        return sum(r.clipped for r in self.layers)

    def quantization_report(self) -> "QuantizationSection":
        """The report's quantization section: scale groups, per-layer rows, clip count."""
        return QuantizationSection(list(self.groups), list(self.layers), self.saturation_total())


@dataclass
class QuantizationSection:
    """The drift ladder's quantization section (field order: the JSON's key order): the scale
    groups, one QuantLayer row per node, and the weights or biases clipped to fit their format."""
    groups: List[ScaleGroup]
    layers: List[QuantLayer]
    weights_or_biases_clipped: int
