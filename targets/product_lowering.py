"""The synaptic DSSA lowering of a whole plan, verified on operands the reference interpreter
records from the run's first samples (passes.dssa_lowering does the per-product work).

It lives with the targets because recording needs the reference interpreter; the flows run it
as their ``lower-dssa-synaptic`` pass (resformer_deploy.flows.lava_passes). A Lava target run
directly, without the flow's artifacts, calls it itself (library use; commands use the flows).
"""
import numpy as np
import torch

from exporters.nir_ext import SpikeMatMul
from resformer_deploy.passes.dssa_lowering import lower_product, verify_lowering

from targets.reference import ReferenceTarget

RECORD_SAMPLES = 4  # samples whose recorded operands verify each lowering


def lower_products(graph, plan, x, T, record_samples: int = RECORD_SAMPLES, quant=None):
    """Synaptic lowering of every SpikeMatMul, each verified on random operands and on
    operands recorded by the reference interpreter from the first samples. Fixed point:
    lowered with the integer operand bias and verified in integer units."""
    mms = {n: graph.nodes[n] for n in plan.neuro if isinstance(graph.nodes[n], SpikeMatMul)}
    watch = sorted({v.lhs for v in mms.values()} | {v.rhs for v in mms.values()})
    rec = ReferenceTarget().run(graph, x[:record_samples], T, record_spikes=False, dtype=torch.float64,
                                record_nodes=watch).values
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
