"""The synaptic DSSA lowering of a whole plan, verified on operands the reference interpreter
records from the run's first samples (passes.dssa_lowering does the per-product work).

Recording runs the NIR interpreter (exporters/interpreter.py); the flows run this as their
``lower-dssa-synaptic`` pass (resformer_deploy.flows.lava_passes). A Lava target run directly,
without the flow's artifacts, calls it itself (library use; commands use the flows).
Before any work (recording, building) ``check_products_fit`` states the lowering's cost from
shapes and refuses, with the figures, every product that does not fit the memory budget.
"""
import numpy as np
import torch

from exporters.interpreter import CompiledGraph, interpret
from exporters.nir_ext import SpikeMatMul
from resformer_deploy.passes.dssa_lowering import check_synaptic_fits, lower_product, verify_lowering

RECORD_SAMPLES = 4  # samples whose recorded operands verify each lowering


def _products(graph, plan, quant=None):
    """{name: (SpikeMatMul, lhs operand bias)} of the plan, in the units the lowering is built in."""
    return {n: (graph.nodes[n], plan.bias[graph.nodes[n].lhs] if quant is None else quant.lhs_bias[graph.nodes[n].lhs])
            for n in plan.neuro if isinstance(graph.nodes[n], SpikeMatMul)}


def check_products_fit(graph, plan, quant=None, budget=None):
    """Cost of the synaptic lowering of every product, from shapes alone (nothing is built);
    DeployError naming every product that does not fit, with its figures (passes.dssa_lowering
    check_synaptic_fits). ``budget``: bytes (default util.memory_budget.budget_bytes())."""
    return check_synaptic_fits(_products(graph, plan, quant), budget)


def lower_products(graph, plan, x, T, record_samples: int = RECORD_SAMPLES, quant=None, budget=None):
    """Synaptic lowering of every SpikeMatMul, each verified on random operands and on
    operands recorded by the reference interpreter from the first samples. Fixed point:
    lowered with the integer operand bias and verified in integer units. Refused up front
    (check_products_fit) when it does not fit."""
    check_products_fit(graph, plan, quant, budget)
    mms = {n: mm for n, (mm, _) in _products(graph, plan).items()}
    watch = sorted({v.lhs for v in mms.values()} | {v.rhs for v in mms.values()})
    _, _, _, rec = interpret(CompiledGraph(graph, torch.float64), x[:record_samples], T, record_spikes=False,
                             record_nodes=watch)
    out = {}
    for n, mm in mms.items():
        low = lower_product(n, mm, plan.bias[mm.lhs] if quant is None else quant.lhs_bias[mm.lhs])
        lhs0 = rec[mm.lhs].flatten(0, 1).reshape(-1, low.sel_lhs.shape[1]).numpy() - plan.bias[mm.lhs]
        if quant is not None:
            lhs0 = np.round(lhs0 * quant.scale[mm.lhs])
        rhs = rec[mm.rhs].flatten(0, 1).reshape(-1, low.sel_rhs.shape[1]).numpy()
        verify_lowering(low, mm, recorded=[(lhs0, rhs)])
        out[n] = low if quant is None else low.to_fixed(quant.lhs_bias_exp[mm.lhs])
    return out
