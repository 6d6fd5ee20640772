"""The drift ladder (verify with a fixed-point target, drift, demo, report) as text tables."""
from resformer_deploy.analysis.drift import FIXED_POINT_CHECK, DriftLadder
from resformer_deploy.reporting.tables import table


def pct(v) -> str:
    """A fraction as a percentage, '' for None (no labels, nothing compared)."""
    return "" if v is None else f"{100 * v:.2f}%"


def quantization_rows(layers):
    """One row per QuantLayer (fixed_point/network.py); a figure the node lacks (None) is blank."""
    def blank(v, fmt=None):
        return "" if v is None else v if fmt is None else fmt.format(v)
    return [(r.node, r.kind, blank(r.log2_scale, "2^{}"), blank(r.weight_exp), blank(r.mantissa_utilization, "{:.2f}"),
             blank(r.weight_rel_rms_error, "{:.4f}"), blank(r.vth), blank(r.dv), blank(r.bias_exp), r.clipped)
            for r in layers]


QUANT_HEADERS = ["node", "kind", "scale S", "w exp", "mant use", "w rel err", "vth", "dv", "b exp", "clipped"]


def first_divergence_text(r) -> str:
    """'' for the reference rung (nothing compared), 'none' for a rung identical to PyTorch."""
    if r.layers is None:
        return ""
    fd = r.first_divergence
    return "none" if fd is None else f"{fd.node} @ step {fd.step}"


def ladder_table(rep: DriftLadder) -> str:
    rows = [(r.rung, r.target, r.samples, pct(r.accuracy), pct(r.prediction_agreement_with_torch),
             "" if r.min_layer_identical_pct is None else f"{r.min_layer_identical_pct:.4f}%",
             "" if r.total_mismatches is None else r.total_mismatches, first_divergence_text(r), f"{r.seconds:.1f}")
            for r in rep.rungs]
    return table(rows, ["rung", "target", "samples", "accuracy", "same class", "min layer", "mismatch",
                        "first divergence", "s"])


def ladder_text(rep: DriftLadder) -> str:
    """Everything ``verify`` (fixed point) and ``drift`` print about one ladder; rungs found by role."""
    d, out = rep.dssa, []
    out.append(f"\n[{d} DSSA] quantization (calibration: {rep.calibration.source}, margin "
               f"{rep.calibration.margin}x):")
    out.append(table(quantization_rows(rep.quantization.layers), QUANT_HEADERS))
    out.append(f"[{d} DSSA] scale groups: " + "; ".join(f"2^{g.log2_scale} <- {g.limited_by}"
                                                        for g in rep.quantization.groups))
    out.append(f"\n[{d} DSSA] drift ladder (vs PyTorch float64; spikes compared per LIF layer, all steps):")
    out.append(ladder_table(rep))
    fixed = rep.fixed_point
    out.append(f"[{d} DSSA] {fixed.rung} ({fixed.target}), per LIF layer spike agreement with PyTorch:")
    out.append(table([(layer.node, f"{layer.identical_pct:.3f}%", layer.mismatches, f"{layer.torch_rate:.3f}",
                       f"{layer.target_rate:.3f}") for layer in fixed.layers], ["LIF layer", "identical", "mismatch", "torch rate", "fixed rate"]))
    for r in rep.with_role(FIXED_POINT_CHECK):
        e = r.emulator_match
        out.append(f"[{d} DSSA] {fixed.target} vs {r.target} ({r.rung}) on {r.samples} samples: "
                   f"{e.spike_mismatches} of {e.compared_spikes} spikes differ, logits max |diff| "
                   f"{e.logits_max_abs_diff:.3g} -> " + ("BIT-EXACT" if e.bit_exact else "NOT bit-exact"))
    sat = rep.saturation
    out.append(f"[{d} DSSA] run-time saturation (24-bit wraps/clips/overflows) on the evaluation set: "
               + ("none" if not sat else "; ".join(f"{n}: {v}" for n, v in sat.items())))
    out.append(f"[{d} DSSA] clipped weights/biases at quantization: {rep.quantization.weights_or_biases_clipped}")
    if rep.accuracy_drop_pp is not None:
        out.append(f"[{d} DSSA] accuracy: PyTorch {pct(rep.reference.accuracy)} -> fixed point "
                   f"{pct(fixed.accuracy)} (drop {rep.accuracy_drop_pp:+.2f} pp; goal <= "
                   f"{rep.goal_max_drop_pp:g} pp: {'met' if rep.accuracy_goal_met else 'NOT met'})")
    return "\n".join(out)

