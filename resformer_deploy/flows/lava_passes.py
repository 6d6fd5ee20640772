"""Lava planning and the synaptic DSSA lowering as ``Pass`` objects (wrapping, not rewriting,
resformer_deploy.lava.plan.plan_lava and resformer_deploy.passes.product_lowering.lower_products)."""
from dataclasses import replace

from resformer_deploy.lava.plan import plan_lava
from resformer_deploy.passes.manager import Pass

from resformer_deploy.passes.product_lowering import check_products_fit, lower_products


def time_steps(graph, opts) -> int:
    """T of a run: the option, else the graph's own ``time_steps`` (4 if it has none)."""
    return int(opts.get("T") or (graph.metadata or {}).get("time_steps", 4))


def _plan(art, opts):
    return {"lava_plan": plan_lava(art["nir_graph"], opts.get("dssa", "fused"), timing=art["timing"])}


def _plan_to_simulate(art, opts):
    """The plan, and when the run will lower DSSA synaptically, its cost checked right away:
    a lowering that cannot fit is refused before calibration, recording or building."""
    out = _plan(art, opts)
    if opts.get("dssa") == "synaptic" and opts.get("lower_products", True):
        check_products_fit(art["nir_graph"], out["lava_plan"])
    return out


def _lower(art, opts):
    quant = art.get("quantized_net")
    plan = quant.plan if quant is not None else art["lava_plan"]  # fixed point: the plan it was quantized on
    g = art["nir_graph"]
    return {"product_lowerings": lower_products(g, plan, art["operand_samples"], time_steps(g, opts), quant=quant)}


PLAN_LAVA = Pass("plan-lava", _plan, requires=("nir_graph", "timing"), ensures=("lava_plan",), options=("dssa",),
                 doc="partition, Lava process per node, constant offsets (resformer_deploy.lava.plan)")
# the simulation flows' plan (lava-float, loihi2-fixed): the core mapper (loihi2-map) plans the
# synaptic lowering for the chip and builds no matrices, so it keeps PLAN_LAVA
PLAN_LAVA_TO_SIMULATE = replace(
    PLAN_LAVA, run=_plan_to_simulate, options=("dssa", "lower_products"),
    doc="partition, Lava process per node, constant offsets; dssa=synaptic: its cost, refused if it does not fit")
LOWER_DSSA_SYNAPTIC = Pass(
    "lower-dssa-synaptic", _lower, requires=("nir_graph", "lava_plan", "operand_samples"),
    ensures=("product_lowerings",), uses=("quantized_net",), options=("dssa", "T", "lower_products"),
    when=lambda o: o.get("dssa") == "synaptic" and o.get("lower_products", True),
    doc="each SpikeMatMul onto synaptic primitives, verified on recorded operands (fixed point when quantized)")
