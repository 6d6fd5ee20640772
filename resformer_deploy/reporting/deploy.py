"""Everything an engineer wants before booking Loihi 2 time, in one report (``report`` command):
the drift ladder (accuracy and spike agreement, float and fixed point), operations and energy
(PyTorch and fixed-point spikes), and the Loihi 2 core plan with its design-rule check."""
import time

import numpy as np

from resformer_deploy.analysis.drift import drift_ladder
from resformer_deploy.analysis.operations import count_graph, count_torch, energy_report
from resformer_deploy.reporting.tables import machine_description


def quant_for_drc(qn) -> dict:
    """Per-layer facts the DRC's number-format checks use: weight mantissa bits and exponent,
    graded payload bits (calibrated maximum at the chosen scale), clipped values."""
    out = {}
    for row in qn.layers:
        d = {"clipped": row["weights_saturated"] + row["bias_saturated"]}
        if row["node"] in qn.syn:
            s = qn.syn[row["node"]]
            top = int(np.abs(s.mant.data).max()) if s.mant.nnz else 0
            d["weight_exp"] = s.exp
            d["weight_bits"] = int(top).bit_length()  # magnitude bits; the sign is separate, as in Lava
        if row["kind"] != "LIF" and row["log2_scale"] is not None and row["calibrated_max_abs"] > 0:
            d["graded_bits"] = int(round(row["calibrated_max_abs"] * 2.0 ** row["log2_scale"])).bit_length() + 1
        out[row["node"]] = d
    return out


def build_report(ck, checkpoint: str, dssa: str = "fused", lava_samples: int = 10, eval_samples: int = 0,
                 calib_samples: int = 128, say=lambda m: None) -> dict:
    from resformer_deploy.hardware.loihi2 import map_to_loihi2, run_drc
    from targets.loihi2_hardware import hardware_runtime

    t0 = time.time()
    keep = {}
    ladder = drift_ladder(ck.model, eval_samples, lava_samples, calib_samples, dssa, progress=say,
                          lava=lava_samples > 0, keep=keep)
    say("counting operations")
    x, T, N = keep["x"], ck.config.T, keep["x"].shape[0]
    ct = count_torch(ck.model.double(), x)
    ck.model.float()
    cf = count_graph(keep["graph"], keep["emulator"].spikes, T, N)
    energy = {"samples": N, "torch_counts": ct, "fixed_counts": cf, "torch": energy_report(ct, N),
              "fixed": energy_report(cf, N)}
    say("mapping onto Loihi 2 cores")
    plan = map_to_loihi2(keep["quant"].plan, dssa)
    violations, skipped = run_drc(plan, quant_for_drc(keep["quant"]))
    mapping = plan.to_json(violations, skipped, hardware_runtime())
    qplan = keep["quant"].plan
    timing = {"pipeline_latency_steps": qplan.total_latency, "steps_per_sample": T,
              "note": "samples stream back to back: one result every T steps after the pipeline has filled"}
    return {"checkpoint": str(checkpoint), "variant": ck.variant, "T": T, "machine": machine_description(),
            "timing": timing,
            "ladder": ladder, "energy": energy, "mapping": mapping, "seconds": time.time() - t0}
