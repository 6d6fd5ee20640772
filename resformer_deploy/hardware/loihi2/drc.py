"""Design-rule checks of a Loihi 2 CorePlan (core_plan.py): plain functions ``check_xxx(plan, quant) -> [str]``.

Every check runs and every violation is collected (``run_drc``), so one compile reports all
problems at once. ``quant`` (optional) maps layer or node names to {"weight_bits": int,
"graded_bits": int}; without it the precision checks are skipped and listed as such.

Stock-model rules (``STOCK_MODEL_CHECKS``, ``stock_model_findings``): plain functions
``stock_xxx(lava_plan, qn) -> [str]`` on the Lava plan and its quantized network, each naming
every process whose parameters Lava's stock process models (lava-nc 0.10.0 proc/*/models.py,
which real hardware's own models mirror) would not honour, and every process that has no stock
model at all (the fused DSSA product: an embedded-core program). An empty list means the network
runs on plain ``Loihi2SimCfg(select_tag='fixed_pt')`` as the project computes it.
"""
from typing import Callable, List, Optional, Tuple

import numpy as np

from exporters.nir_ext import SpikeMatMul
from resformer_deploy.fixed_point import formats as F
from resformer_deploy.hardware.loihi2 import limits as L

NOT_QUANTIZED = "not checked: network not quantized"


def _unmappable(row, metric):
    return next((u for u in row.unmappable if u.metric == metric), None)


def check_core_neurons(plan, quant=None) -> List[str]:
    out = []
    for r in plan.layers:
        u = _unmappable(r, "neurons")
        if r.max_core_neurons > L.MAX_NEURONS_PER_CORE:
            out.append(f"{r.layer}: a core holds {r.max_core_neurons} neurons > {L.MAX_NEURONS_PER_CORE}"
                       + (" (one neuron cannot be split)" if u else ""))
    return out


def _per_core(plan, metric, key, limit, what) -> List[str]:
    out = []
    for r in plan.layers:
        if getattr(r, key) > limit:
            u = _unmappable(r, metric)
            out.append(f"{r.layer}: " + (
                f"one neuron needs {u.one_neuron_needs} {what} > {limit}; split the input / use a different "
                f"lowering" if u else f"a core needs {getattr(r, key)} {what} > {limit}"))
    return out


def check_core_memory(plan, quant=None) -> List[str]:
    return _per_core(plan, "memory", "max_core_memory", L.CORE_MEMORY_BYTES, "bytes of core memory")


def check_fan_in(plan, quant=None) -> List[str]:
    return _per_core(plan, "fan_in", "max_fan_in", L.MAX_FANIN_AXONS_PER_CORE, "fan-in axons")


def check_fan_out(plan, quant=None) -> List[str]:
    return [f"{r.layer}: a core needs {r.max_fan_out_routes} output axon routes > "
            f"{L.MAX_FANOUT_ROUTES_PER_CORE} (a neuron projects to up to {r.max_neuron_fan_out_cores} cores)"
            for r in plan.layers if r.max_fan_out_routes > L.MAX_FANOUT_ROUTES_PER_CORE]


def check_delays(plan, quant=None) -> List[str]:
    return [f"{d.layer}: synaptic delay {d.delay} steps on the input from {d.src} > "
            f"{L.MAX_SYNAPTIC_DELAY} (insert relay neurons to chain delays)"
            for d in plan.delays if d.realised == "synaptic delay" and d.delay > L.MAX_SYNAPTIC_DELAY]


def check_embedded_cores(plan, quant=None) -> List[str]:
    t = plan.totals
    cap = t.chips * L.USABLE_EMBEDDED_CORES_PER_CHIP
    if t.embedded_programs > cap:
        return [f"fused DSSA: {t.embedded_programs} embedded-core programs > {cap} usable embedded cores on "
                f"{t.chips} chip(s); use --dssa synaptic"]
    return []


def check_unsupported(plan, quant=None) -> List[str]:
    return list(plan.problems)


def check_weight_bits(plan, quant=None) -> List[str]:
    return [f"{name}: {q['weight_bits']}-bit weight mantissa > {L.WEIGHT_MANTISSA_BITS}"
            for name, q in (quant or {}).items() if q.get("weight_bits", 0) > L.WEIGHT_MANTISSA_BITS]


def check_graded_bits(plan, quant=None) -> List[str]:
    return [f"{name}: graded payload needs {q['graded_bits']} bits > {L.GRADED_PAYLOAD_BITS}"
            for name, q in (quant or {}).items() if q.get("graded_bits", 0) > L.GRADED_PAYLOAD_BITS]


def check_weight_exponent(plan, quant=None) -> List[str]:
    lo, hi = L.WEIGHT_EXP_RANGE
    return [f"{name}: weight exponent {q['weight_exp']} outside [{lo}, {hi}]"
            for name, q in (quant or {}).items() if "weight_exp" in q and not lo <= q["weight_exp"] <= hi]


def check_clipping(plan, quant=None) -> List[str]:
    return [f"{name}: {q['clipped']} weight/bias value(s) clipped by quantization"
            for name, q in (quant or {}).items() if q.get("clipped", 0)]


QUANT_CHECKS = (check_weight_bits, check_weight_exponent, check_graded_bits, check_clipping)
DRC_CHECKS: List[Callable] = [check_unsupported, check_core_neurons, check_core_memory, check_fan_in, check_fan_out,
                              check_delays, check_embedded_cores, *QUANT_CHECKS]


def run_drc(plan, quant: Optional[dict] = None) -> Tuple[List[str], List[str]]:
    """Run every check; return (violations, skipped checks with the reason)."""
    violations, skipped = [], []
    for check in DRC_CHECKS:
        if check in QUANT_CHECKS and quant is None:
            skipped.append(f"{check.__name__}: {NOT_QUANTIZED}")
            continue
        violations += check(plan, quant)
    return violations, skipped


# ---------------------------------------------------------------- stock Lava process models
# The stock Conv declares its geometry Vars int8 (lava/proc/conv/models.py AbstractPyConvModel)
STOCK_CONV_GEOMETRY_MAX = 127
# The stock DelaySparse refuses delays beyond Loihi 2's 6 bits (lava/proc/sparse/models.py)
STOCK_DELAY_MAX = 63


def stock_conv_weight_exp(lava_plan, qn=None) -> List[str]:
    """The stock Conv models ignore weight_exp (lava-nc issue 803): any other than 0 is lost."""
    if qn is None:
        return []
    return [f"{n}: Conv weight_exp {s.exp} is ignored by Lava's stock Conv models (lava-nc issue 803); "
            f"quantize with exponent {F.CONV_WEIGHT_EXP}"
            for n, s in qn.syn.items() if s.kind == "conv" and s.exp != F.CONV_WEIGHT_EXP]


def stock_conv_geometry(lava_plan, qn=None) -> List[str]:
    out = []
    for n, spec in lava_plan.synapses.items():
        if spec.kind != "conv":
            continue
        geo = {"kernel size": max(np.shape(spec.weight)[2:]), "stride": max(spec.stride),
               "padding": max(spec.padding), "dilation": max(spec.dilation), "groups": spec.groups}
        out += [f"{n}: Conv {what} {v} > {STOCK_CONV_GEOMETRY_MAX}: the stock Conv model holds it in int8 (wraps)"
                for what, v in geo.items() if v > STOCK_CONV_GEOMETRY_MAX]
    return out


def stock_delays(lava_plan, qn=None) -> List[str]:
    """An edge delay d > 1 is a DelaySparse with delays d - 1 (targets.lava_worker)."""
    return [f"{b}: delay {d} on the input from {a} needs a DelaySparse delay {d - 1} > {STOCK_DELAY_MAX} "
            f"(the stock model refuses it)"
            for (a, b), d in sorted(lava_plan.edge_delay.items()) if b in lava_plan.neuro and d - 1 > STOCK_DELAY_MAX]


def stock_process_models(lava_plan, qn=None) -> List[str]:
    """Fused DSSA products are a project process (FusedSpikeMatMul) with no stock model."""
    if lava_plan.dssa != "fused":
        return []
    return [f"{n}: FusedSpikeMatMul has no stock Lava process model: needs an embedded-core program "
            f"(or --dssa synaptic, which uses stock processes only)"
            for n in lava_plan.neuro if isinstance(lava_plan.graph.nodes[n], SpikeMatMul)]


STOCK_MODEL_CHECKS: List[Callable] = [stock_conv_weight_exp, stock_conv_geometry, stock_delays, stock_process_models]


def stock_model_findings(lava_plan, qn=None) -> List[str]:
    """Every process a stock Lava model would not run as planned, by name (all checks run)."""
    out = []
    for check in STOCK_MODEL_CHECKS:
        out += check(lava_plan, qn)
    return out
