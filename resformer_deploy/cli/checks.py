"""The equivalence checks `verify` and `demo` print (run by api.verify.run_checks): the per-layer
spike-agreement table and a PASS / FAIL verdict that says why."""


def check_text(rep, prec: str, low=None) -> str:
    """The per-layer spike-agreement table and the verdict lines of one verification record
    (``prec``: its precision; ``low``: its DSSA lowering, None when the target has none)."""
    from resformer_deploy.reporting.tables import table
    from resformer_deploy.analysis.equivalence import LOGIT_REL_TOL

    tag = prec + (f", {low} DSSA" if low else "")
    lines = []
    rows = [(r.node, "x".join(map(str, r.shape)), f"{r.identical_pct:.4f}%", r.mismatches,
             r.near_threshold_mismatches, "" if r.first_mismatch_step is None else
             r.first_mismatch_step, f"{r.torch_rate:.3f}") for r in rep.layers]
    lines.append(f"\n[{tag}] per-layer spike agreement with PyTorch (all steps and samples):")
    lines.append(table(rows, ["LIF layer", "shape", "identical", "mismatch", "near-thr", "first step", "rate"]))
    fd = rep.first_divergence
    ti = rep.target_info
    extra = (f"; {ti['processes']} Lava processes, pipeline latency {ti['latency']} steps, "
             f"{ti['steps']} steps simulated" if "processes" in ti else "")
    lines.append(f"[{tag}] predictions identical: {100 * rep.prediction_agreement:.1f}% of {rep.samples}; "
        f"logits max rel. diff {rep.logits_max_rel_diff:.2e} (tol {LOGIT_REL_TOL:g}); min layer agreement "
        f"{rep.min_layer_identical_pct:.4f}%; mismatches {rep.total_mismatches}"
        f" ({rep.total_near_threshold} near-threshold); target time {rep.seconds['target']:.1f} s{extra}")
    lines.append(f"[{tag}] first divergence: " + ("none" if fd is None else
        f"{fd.node} ({fd.torch_module}) at step {fd.step}: {fd.mismatches} spike(s), "
        f"{fd.near_threshold} within 1e-4 of threshold"))
    roots = rep.root_divergences
    if rep.verdict == "exact":
        status = "PASS (exact: identical spikes in every layer, same classes)"
    elif rep.verdict == "rounding":
        status = (f"PASS (rounding: {rep.samples_identical} of {rep.samples} samples identical; "
                  f"{len(roots)} diverge, each first at near-threshold ties (float rounding, which "
                  f"differs between CPUs), then propagate)")
    else:
        bad = [r for r in roots if r.ties < r.mismatches]
        if bad:
            b = bad[0]
            why = (f"sample {b.sample} first diverges at {b.node} step {b.step} with "
                   f"{b.mismatches - b.ties} mismatch(es) farther than 1e-4 from the threshold "
                   f"(a real difference; {len(bad)} sample(s) like this)")
        elif roots and prec == "float64":
            why = f"float64 must be exact, but {len(roots)} sample(s) diverge (first at near-threshold ties)"
        else:
            why = "samples with identical spikes differ in class or logits (beyond float rounding)"
        status = "FAIL: " + why
    lines.append(f"[{tag}] {status}")
    return "\n".join(lines)
