"""The one place a job sizes its work before it starts: fit its defaults, estimate, tell, refuse.

A count or a lowering the user did not ask for is lowered to what fits the memory budget, and a
note says so (issue 27; the searches and what a run needs are analysis/sizing.py's). Then each
function asks a cost model (analysis/: a target's run, a verification's runs, an
evaluation's batches, the drift ladder's rungs and records) for the time and peak memory of what
a job is about to run, hands the line the CLI prints to ``say`` and raises MemoryBudgetError (a
one-line user error naming an option that would help) when the peak does not fit the memory
budget (util/memory_budget.py). Jobs call them before any work. A step sized in the middle of an
analysis (an evaluation once exported, the ladder's rungs before the PyTorch record, a rung once
calibrated) is sized by the function the job hands down as ``sizing`` (this module: analysis may
not import the API), so no other code tells or refuses. A target whose cost model needs its
flow's artifacts (fixed point: the quantized network) gives no estimate before the flow: the job
calls ``size_run`` again with ``prepared``::

    >>> from resformer_deploy.api.sizing import size_run
    >>> est = size_run(tgt, graph, 8, 4, "simulate: 8 samples", say=print)  # doctest: +SKIP
    estimate: ~1 s, peak ~1.2 GiB (...)
"""
from typing import Callable, List, Optional, Sequence, Tuple

from resformer_deploy.api.options import Say, silent

__all__ = ["fit_run", "fit_verification", "size_estimate", "size_evaluation", "size_ladder", "size_rungs",
           "size_run", "size_verification"]


def size_run(tgt, graph, n: int, T: int, what: str, prepared=None, advice: Optional[Callable[[], str]] = None,
             say: Say = silent, bound: Optional[Tuple[int, str]] = None, **options):
    """The target's Estimate of running ``graph`` on ``n`` samples for ``T`` steps with the run's
    keywords ``options`` (analysis.equivalence.estimate_run), said and checked; None (nothing said)
    when the target can estimate only after its flow (``prepared`` None): ``bound`` (bytes, what
    they are) is checked then instead. ``what`` names the run in a refusal; ``advice()`` is asked
    only then."""
    from resformer_deploy.analysis.equivalence import check_run_estimate, estimate_run, run_estimate_line
    from resformer_deploy.util.memory_budget import check_bytes

    est = estimate_run(tgt, graph, n, T, prepared=prepared, **options)
    if est is None and prepared is None:
        if bound is not None:
            check_bytes(*bound)
        return None
    say(run_estimate_line(tgt, est))
    check_run_estimate(tgt, est, what, advice)
    return est


def size_estimate(est, say: Say = silent):
    """An estimate made by the step it sizes (analysis.evaluation.EvaluationEstimate,
    analysis.equivalence.VerificationEstimate: each has its line and its check), said and checked."""
    return _said_and_checked(est, say)


def _said_and_checked(est, say: Say):
    from resformer_deploy.analysis.equivalence import rss_bytes
    say(est.line(rss_bytes()))
    est.check()
    return est


def size_evaluation(graph, data, target: str, *, T: int, batch_size: int, torch_runs: bool = True,
                    say: Say = silent):
    """An evaluation on ``target`` that a job runs after other work (demo's whole split), sized
    before that work (analysis.evaluation.evaluation_estimate: the estimate prepare_evaluation will
    make), said and checked."""
    from resformer_deploy.analysis.evaluation import evaluation_estimate
    return _said_and_checked(evaluation_estimate(graph, data, target, T=T, batch_size=batch_size,
                                                 torch_runs=torch_runs), say)


def size_verification(model, n: int, target: str, runs, say: Say = silent) -> list:
    """Every run of a verification ([(precision, target options)]) on ``n`` samples estimated
    (analysis.equivalence.estimate_verification) and said before any starts; refused, with an
    option that would help (``_verification_advice``), if one does not fit."""
    import torch
    from exporters.torch_to_nir import export_model
    from targets import get_target
    from resformer_deploy.analysis.equivalence import DTYPES, estimate_verification, rss_bytes
    from resformer_deploy.model.precision import model_in_dtype

    tgt = get_target(target)
    with model_in_dtype(model, torch.float32) as m:  # sizes do not depend on the precision
        graph = export_model(m.eval(), "float32")
    out = []
    for precision, opts in runs:
        tag = precision + (f", {opts['dssa']} DSSA" if opts.get("dssa") else "")
        est = estimate_verification(model, n, graph, tgt, DTYPES[precision], tag, **opts)
        say(est.line(rss_bytes()))
        out.append(est)
    for (precision, opts), est in zip(runs, out):
        est.check(lambda: _verification_advice(model, n, target, precision, opts))
    return out


def size_rungs(choices, graph, n_eval: int, lava_samples: int, T: int, dssa: str, element_bytes: int,
               say: Say = silent) -> None:
    """Every drift-ladder rung's run sized before the PyTorch record (dvsg: 136 s for 48 samples;
    analysis.drift.rung_sizes), said, and refused with the figures of every rung that does not fit
    and the options that would help (analysis.drift.ladder_advice)."""
    from resformer_deploy.analysis.drift import SUBSET_ROLES, ladder_advice, rung_sizes
    from resformer_deploy.util.memory_budget import MemoryBudgetError, budget_bytes, size
    bad, budget, roles = [], budget_bytes(), set()
    for ch, n, est, beside in rung_sizes(choices, graph, n_eval, lava_samples, T, dssa, element_bytes):
        say(f"sized before calibration: {ch.target} on {n} samples ~{size(est.peak_bytes)} beside the ladder's "
            f"{size(beside)}")
        if est.peak_bytes + beside > budget:
            roles.add(ch.role)
            bad.append(f"{ch.target} on {n} samples needs about {size(est.peak_bytes)} ({est.basis}) beside the "
                       f"ladder's {size(beside)} (PyTorch record and chunk"
                       + (", fixed-point spikes" if ch.role in SUBSET_ROLES else "") + ")")
    if bad:
        raise MemoryBudgetError(f"drift ladder: {len(bad)} rung(s) do not fit the memory budget {size(budget)}: "
                                + "; ".join(bad) + "; " + ladder_advice(roles, n_eval, lava_samples, dssa))


def size_ladder(ck, lowerings: Sequence[str], eval_samples: int, lava_samples: int, inputs, asked: set,
                lava: bool = True, targets=None, note: Say = silent):
    """(lowerings, eval_samples, lava_samples, inputs) of the drift ladders to run: the counts and
    lowerings not ``asked`` for (of "dssa", "eval", "lava") lowered to what fits the memory budget,
    each change handed to ``note`` (analysis.drift.fit_ladder); then the ladder's records are
    checked (refused, with the evaluation count that would fit). Each rung is sized again, from
    the ladder's own graph, before its PyTorch record (``size_rungs``)."""
    from resformer_deploy.analysis.drift import default_eval_count, fit_ladder

    cfg = ck.config
    n_eval = len(inputs[0]) if inputs is not None else (
        eval_samples or default_eval_count((cfg.in_channels, cfg.img_size, cfg.img_size)))
    if "eval" in asked:  # asked for: refused before any work when its records cannot fit
        _check_records(ck.model, n_eval)
    lava_n = lava_samples if lava else 0
    free = {"eval", "lava"} - asked if lava_n else {"eval"} - asked
    lowerings = list(lowerings)
    if free or (len(lowerings) > 1 and "dssa" not in asked):
        lowerings, n, lava_n = fit_ladder(ck.model, lowerings, n_eval, lava_n, asked, note, targets, lava)
        if n < n_eval:
            eval_samples = n
            if inputs is not None:
                x, y, what = inputs
                inputs = (x[:n], None if y is None else y[:n], f"{what}, first {n}")
            n_eval = n
    _check_records(ck.model, n_eval)
    return lowerings, eval_samples, lava_n if lava else lava_samples, inputs


def _check_records(model, n_eval: int) -> None:
    """The ladder's records of n_eval samples fit (model.summary.check_ladder_recording), else
    refused with the evaluation count that would fit."""
    from resformer_deploy.analysis.sizing import largest_that_fits
    from resformer_deploy.model.summary import check_ladder_recording
    from resformer_deploy.util.memory_budget import MemoryBudgetError

    def fits(n: int) -> bool:
        try:
            check_ladder_recording(model, n)
            return True
        except MemoryBudgetError:
            return False

    try:
        check_ladder_recording(model, n_eval)
    except MemoryBudgetError as e:
        most = largest_that_fits(fits, n_eval - 1)
        raise MemoryBudgetError(f"{e}; " + (f"use --eval-samples {most} (the most that fit)" if most else
                                            "use a smaller --T")) from None


def fit_run(tgt, graph, T: int, samples: Optional[int], default: int, run_kw: dict, node_values: int,
            out_values: int, note: Say = silent) -> Tuple[int, Callable[[int], str]]:
    """(samples, advice) of a target run (simulate), sized by analysis.sizing.simulate_sizer:
    ``samples`` as asked, or (None) ``default`` lowered to the most that fit, noted; ``advice(n)``:
    an option that would make a refused run of n samples fit (for ``size_run``)."""
    from resformer_deploy.analysis.sizing import largest_that_fits, simulate_sizer
    from resformer_deploy.util.memory_budget import ENV, budget_bytes, size

    fits = simulate_sizer(tgt, graph, T, run_kw, node_values, out_values)
    if samples is None:
        samples = default
        most = default if fits(default) else largest_that_fits(fits, default - 1)
        if most and most < default:  # not even 1: kept, size_run refuses it
            note(f"note: the default --samples {default} does not fit the memory budget {size(budget_bytes())}: "
                 f"running {most}, the most that fit")
            samples = most

    def advice(n: int) -> str:
        most = largest_that_fits(fits, n - 1)
        if most:
            return f"use --samples {most} (the most that fit)"
        if run_kw.get("dssa") == "synaptic" and fits(1, dssa="fused"):
            return "use --dssa fused"
        return f"use a smaller --T, or set {ENV} (bytes) if more memory is free"
    return samples, advice


def _runs(precisions, lowerings) -> list:
    return [(p, {"dssa": low} if low else {}) for p in precisions for low in (lowerings or [None])]


def fit_verification(model, n: int, target: str, precisions: Sequence[str], lowerings: Optional[List[str]],
                     samples_given: bool, dssa_given: bool, note: Say = silent) -> tuple:
    """(samples, lowerings) of a verification that fit: a lowering of the default ``--dssa both``
    that does not fit even on the fewest samples is left out, then a default ``--samples`` is
    lowered to the most that fit; ``note`` tells each change. What was asked for is kept as it is
    (``size_verification`` refuses it with advice)."""
    from resformer_deploy.analysis.sizing import largest_that_fits, verification_sizer
    from resformer_deploy.util.memory_budget import budget_bytes, size

    lows = list(lowerings) if lowerings else None
    if samples_given and (dssa_given or not lows or len(lows) < 2):
        return n, lows  # nothing left to the defaults
    need = verification_sizer(model, target)
    budget = budget_bytes()

    def fits(k: int, lows) -> bool:
        return all(need(k, p, o) <= budget for p, o in _runs(precisions, lows))

    if lows and len(lows) > 1 and not dssa_given:
        k = n if samples_given else 1
        keep = [low for low in lows if fits(k, [low])]
        if keep and len(keep) < len(lows):
            for low in (x for x in lows if x not in keep):
                worst = max(need(k, p, o) for p, o in _runs(precisions, [low]))
                note(f"note: the default --dssa both: the {low} lowering needs about {size(worst)} on {k} "
                     f"sample(s) > memory budget {size(budget)}; running --dssa {', '.join(keep)} only")
            lows = keep
    if not samples_given and not fits(n, lows):
        most = largest_that_fits(lambda k: fits(k, lows), n - 1)
        if most:
            note(f"note: the default --samples {n} does not fit the memory budget {size(budget)}: running "
                 f"{most} sample(s), the most that fit")
            n = most
    return n, lows


def _verification_advice(model, n: int, target: str, precision: str, opts: dict) -> str:
    """An option that would make a refused verification run fit: fewer samples, the fused
    lowering, float32, else a smaller --T or a larger budget."""
    from resformer_deploy.analysis.sizing import largest_that_fits, verification_sizer
    from resformer_deploy.util.memory_budget import ENV, budget_bytes

    need = verification_sizer(model, target)
    budget = budget_bytes()
    most = largest_that_fits(lambda k: need(k, precision, opts) <= budget, n - 1)
    if most:
        return f"use --samples {most} (the most that fit)"
    if opts.get("dssa") == "synaptic" and need(n, precision, {**opts, "dssa": "fused"}) <= budget:
        return "use --dssa fused (the synaptic lowering does not fit even on 1 sample)"
    if precision == "float64" and need(n, "float32", opts) <= budget:
        return "use --precision float32"
    return f"use a smaller --T, or set {ENV} (bytes) if more memory is free"
