"""The Loihi 2 core mapping and its design-rule check as ``Pass`` objects (wrapping, not
rewriting, resformer_deploy.hardware.loihi2.map_to_loihi2 and run_drc)."""
import numpy as np
import scipy.sparse as sp

from resformer_deploy.hardware.loihi2 import map_to_loihi2, run_drc
from resformer_deploy.hardware.loihi2.drc import stock_model_findings
from resformer_deploy.passes.manager import Pass


def quant_for_drc(qn) -> dict:
    """Per-layer facts the DRC's number-format checks use: weight mantissa bits and exponent,
    graded payload bits (calibrated maximum at the chosen scale), clipped values."""
    out = {}
    for row in qn.layers:
        d = {"clipped": row.clipped}
        if row.node in qn.syn:
            s = qn.syn[row.node]
            # dense: a scipy CSR of mantissas; conv: the int64 kernel (fixed_point/network.py SynQ)
            m = s.mant.data if sp.issparse(s.mant) else np.asarray(s.mant)
            top = int(np.abs(m).max()) if m.size else 0
            d["weight_exp"] = s.exp
            d["weight_bits"] = int(top).bit_length()  # magnitude bits; the sign is separate, as in Lava
        if row.kind != "LIF" and row.log2_scale is not None and row.calibrated_max_abs > 0:
            d["graded_bits"] = int(round(row.calibrated_max_abs * 2.0 ** row.log2_scale)).bit_length() + 1
        out[row.node] = d
    return out


def _drc(art, _opts):
    qn = art.get("quantized_net")  # with it, the number-format rules are checked too
    return {"drc": run_drc(art["core_plan"], None if qn is None else quant_for_drc(qn))}


MAP_TO_LOIHI2 = Pass("map-to-loihi2", lambda art, _o: {"core_plan": map_to_loihi2(art["lava_plan"])},
                     requires=("lava_plan",), ensures=("core_plan",),
                     doc="neuron layers tiled onto neuro cores under the per-core limits (the plan's DSSA lowering)")
RUN_DRC = Pass("run-drc", _drc, requires=("core_plan",), ensures=("drc",), uses=("quantized_net",),
               doc="every design rule at once: (violations, skipped checks)")
CHECK_STOCK_MODELS = Pass("check-stock-models",
                          lambda art, _o: {"stock_models": stock_model_findings(art["lava_plan"],
                                                                                art.get("quantized_net"))},
                          requires=("lava_plan",), ensures=("stock_models",), uses=("quantized_net",),
                          doc="every process a stock Lava model (the chip's, too) would not run as planned")
