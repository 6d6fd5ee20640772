"""Printing the drift ladder (verify --target loihi2-sim) as tables, JSON and a verdict."""
import click

from resformer_deploy.errors import DeployError
from resformer_deploy.reporting.tables import table, write_json


def _pct(v):
    return "" if v is None else f"{100 * v:.2f}%"


def quantization_rows(layers):
    rows = []
    for r in layers:
        sat = r["weights_saturated"] + r["bias_saturated"]
        rows.append((r["node"], r["kind"], "" if r["log2_scale"] is None else f"2^{r['log2_scale']}",
                     r.get("weight_exp", ""), "" if "mantissa_utilization" not in r else
                     f"{r['mantissa_utilization']:.2f}", "" if "weight_rel_rms_error" not in r else
                     f"{r['weight_rel_rms_error']:.4f}", r.get("vth", ""), r.get("dv", ""), r.get("bias_exp", ""),
                     sat))
    return rows


QUANT_HEADERS = ["node", "kind", "scale S", "w exp", "mant use", "w rel err", "vth", "dv", "b exp", "clipped"]


def ladder_table(rep) -> str:
    rows = []
    for r in rep["rungs"]:
        fd = r.get("first_divergence")
        rows.append((r["rung"], r["target"], r["samples"], _pct(r.get("accuracy")),
                     _pct(r.get("prediction_agreement_with_torch")) if "prediction_agreement_with_torch" in r
                     else "", f"{r['min_layer_identical_pct']:.4f}%" if "min_layer_identical_pct" in r else "",
                     r.get("total_mismatches", ""), "" if "layers" not in r else
                     ("none" if fd is None else f"{fd['node']} @ step {fd['step']}"), f"{r['seconds']:.1f}"))
    return table(rows, ["rung", "target", "samples", "accuracy", "same class", "min layer", "mismatch",
                        "first divergence", "s"])


def print_ladder(rep, out=click.echo):
    d = rep["dssa"]
    out(f"\n[{d} DSSA] quantization (calibration: {rep['calibration']['source']}, margin "
        f"{rep['calibration']['margin']}x):")
    out(table(quantization_rows(rep["quantization"]["layers"]), QUANT_HEADERS))
    out(f"[{d} DSSA] scale groups: " + "; ".join(f"2^{g['log2_scale']} <- {g['limited_by']}"
                                                 for g in rep["quantization"]["groups"]))
    out(f"\n[{d} DSSA] drift ladder (vs PyTorch float64; spikes compared per LIF layer, all steps):")
    out(ladder_table(rep))
    emu = next(r for r in rep["rungs"] if r["target"] == "loihi2-emu")
    out(f"[{d} DSSA] fixed-point emulator, per LIF layer spike agreement with PyTorch:")
    out(table([(l["node"], f"{l['identical_pct']:.3f}%", l["mismatches"], f"{l['torch_rate']:.3f}",
                f"{l['target_rate']:.3f}") for l in emu["layers"]],
              ["LIF layer", "identical", "mismatch", "torch rate", "fixed rate"]))
    for r in rep["rungs"]:
        if "emulator_match" in r:
            e = r["emulator_match"]
            out(f"[{d} DSSA] emulator vs fixed-point Lava on {r['samples']} samples: {e['spike_mismatches']} of "
                f"{e['compared_spikes']} spikes differ, logits max |diff| {e['logits_max_abs_diff']:.3g} -> "
                + ("BIT-EXACT" if e["bit_exact"] else "NOT bit-exact"))
    sat = rep["saturation"]
    out(f"[{d} DSSA] run-time saturation (24-bit wraps/clips/overflows) on the evaluation set: "
        + ("none" if not sat else "; ".join(f"{n}: {v}" for n, v in sat.items())))
    out(f"[{d} DSSA] clipped weights/biases at quantization: {rep['quantization']['weights_or_biases_clipped']}")
    if rep["accuracy_drop_pp"] is not None:
        out(f"[{d} DSSA] accuracy: PyTorch {_pct(rep['rungs'][0]['accuracy'])} -> fixed point "
            f"{_pct(emu['accuracy'])} (drop {rep['accuracy_drop_pp']:+.2f} pp; goal <= "
            f"{rep['goal_max_drop_pp']:g} pp: {'met' if rep['accuracy_goal_met'] else 'NOT met'})")


def run_drift(ck, checkpoint, lowerings, lava_samples, eval_samples, calib_samples, seed, json_out, lava=True):
    from resformer_deploy.analysis.drift import drift_ladder

    reports = []
    for low in lowerings:
        click.echo(f"verify {ck.variant} fixed point ({low} DSSA): drift ladder", err=True)
        rep = drift_ladder(ck.model, eval_samples, lava_samples if lava else 0, calib_samples, low, seed=seed,
                           progress=lambda m: click.echo(f"  {m} ...", err=True), lava=lava)
        print_ladder(rep)
        reports.append(rep)
    if json_out:
        write_json(json_out, {"checkpoint": checkpoint, "variant": ck.variant, "ladders": reports})
        click.echo(f"wrote {json_out}")
    bad = []
    for rep in reports:
        for r in rep["rungs"]:
            if r["target"] == "lava-cpu" and r["total_mismatches"]:
                bad.append(f"{rep['dssa']}: float Lava differs from PyTorch")
        if rep["emulator_bit_exact_vs_lava"] is False:
            bad.append(f"{rep['dssa']}: emulator is not bit-exact with fixed-point Lava")
        if rep["accuracy_goal_met"] is False:
            bad.append(f"{rep['dssa']}: fixed-point accuracy drop {rep['accuracy_drop_pp']:.2f} pp > "
                       f"{rep['goal_max_drop_pp']:g} pp")
    if bad:
        raise DeployError("fixed-point verification failed: " + "; ".join(bad))
