"""Defaults that fit the memory budget (issue 27): a count or a lowering the user did not ask for
is lowered to what fits, and the output says so; only what the user asked for is refused, with
the advice naming an option that would help. The sizes are the commands' own estimates
(analysis/equivalence.py for verify, the targets' cost models for simulate)."""
from typing import Callable, List, Optional, Sequence

import torch

from resformer_deploy.util.memory_budget import ENV, budget_bytes, size


def largest_that_fits(fits: Callable[[int], bool], most: int) -> int:
    """The largest n in 1..most with ``fits(n)`` (true up to some n: estimates grow with the
    sample count), 0 when none does. Bisection: a handful of estimates, not ``most``."""
    lo, hi = 0, max(0, int(most))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _sizer(model, target: str):
    """need(n, precision, opts): the verification's estimated peak on n samples, from one export."""
    from exporters.torch_to_nir import export_model
    from targets import get_target
    from resformer_deploy.analysis.equivalence import DTYPES, estimate_verification
    from resformer_deploy.model.precision import model_in_dtype

    tgt = get_target(target)
    with model_in_dtype(model, torch.float32) as m:  # sizes do not depend on the precision (preflight)
        graph = export_model(m.eval(), "float32")

    def need(n: int, precision: str, opts: dict) -> int:
        return estimate_verification(model, n, graph, tgt, DTYPES[precision], **opts).peak_bytes
    return need


def _runs(precisions, lowerings) -> list:
    return [(p, {"dssa": low} if low else {}) for p in precisions for low in (lowerings or [None])]


def fit_verification(model, n: int, target: str, precisions: Sequence[str], lowerings: Optional[List[str]],
                     samples_given: bool, dssa_given: bool, say) -> tuple:
    """(samples, lowerings) of a verification that fit: a lowering of the default ``--dssa both``
    that does not fit even on the fewest samples is left out, then a default ``--samples`` is
    lowered to the most that fit; ``say`` tells each change. What was asked for is kept as it is
    (preflight refuses it with advice)."""
    lows = list(lowerings) if lowerings else None
    if samples_given and (dssa_given or not lows or len(lows) < 2):
        return n, lows  # nothing left to the defaults
    need = _sizer(model, target)
    budget = budget_bytes()

    def fits(k: int, lows) -> bool:
        return all(need(k, p, o) <= budget for p, o in _runs(precisions, lows))

    if lows and len(lows) > 1 and not dssa_given:
        k = n if samples_given else 1
        keep = [low for low in lows if fits(k, [low])]
        if keep and len(keep) < len(lows):
            for low in (x for x in lows if x not in keep):
                worst = max(need(k, p, o) for p, o in _runs(precisions, [low]))
                say(f"note: the default --dssa both: the {low} lowering needs about {size(worst)} on {k} "
                    f"sample(s) > memory budget {size(budget)}; running --dssa {', '.join(keep)} only")
            lows = keep
    if not samples_given and not fits(n, lows):
        most = largest_that_fits(lambda k: fits(k, lows), n - 1)
        if most:
            say(f"note: the default --samples {n} does not fit the memory budget {size(budget)}: running "
                f"{most} sample(s), the most that fit")
            n = most
    return n, lows


def verification_advice(model, n: int, target: str, precision: str, opts: dict) -> str:
    """An option that would make a refused verification run fit: fewer samples, the fused
    lowering, float32, else a smaller --T or a larger budget."""
    need = _sizer(model, target)
    budget = budget_bytes()
    most = largest_that_fits(lambda k: need(k, precision, opts) <= budget, n - 1)
    if most:
        return f"use --samples {most} (the most that fit)"
    if opts.get("dssa") == "synaptic" and need(n, precision, {**opts, "dssa": "fused"}) <= budget:
        return "use --dssa fused (the synaptic lowering does not fit even on 1 sample)"
    if precision == "float64" and need(n, "float32", opts) <= budget:
        return "use --precision float32"
    return f"use a smaller --T, or set {ENV} (bytes) if more memory is free"


def fit_default_count(n: int, fits: Callable[[int], bool], option: str, say) -> int:
    """A default count ``option`` lowered to the most that fit (told by ``say``); unchanged when it
    fits or when not even 1 does (the command's own check refuses it then)."""
    if fits(n):
        return n
    most = largest_that_fits(fits, n - 1)
    if most:
        say(f"note: the default {option} {n} does not fit the memory budget {size(budget_bytes())}: running "
            f"{most}, the most that fit")
        return most
    return n


def count_advice(n: int, fits: Callable[[int], bool], option: str, dssa: Optional[str] = None,
                 fused_fits: Optional[Callable[[], bool]] = None) -> str:
    """The advice of a refused run of ``n`` samples: the count that fits, else the fused lowering,
    else a smaller --T or a larger budget."""
    most = largest_that_fits(fits, n - 1)
    if most:
        return f"use {option} {most} (the most that fit)"
    if dssa == "synaptic" and fused_fits is not None and fused_fits():
        return "use --dssa fused"
    return f"use a smaller --T, or set {ENV} (bytes) if more memory is free"


def simulate_sizer(tgt, graph, T: int, run_kw: dict, node_values: int, out_values: int):
    """fits(n, **options) of a simulate run: the target's estimate (a fixed-point target sized from
    the flow's plan before calibration), else every node's float64 value for the batch (cli
    simulate's bound before the flow)."""
    from resformer_deploy.analysis.equivalence import estimate_run

    plans = {}

    def prepared_for(dssa: str):
        if not tgt.capabilities.needs_quantized_net:
            return None
        if dssa not in plans:
            from resformer_deploy.flows import lava_plan
            plans[dssa] = {"lava_plan": lava_plan(graph, dssa)}
        return plans[dssa]

    def need(n: int, **kw) -> int:
        kw = {**run_kw, **kw}
        est = estimate_run(tgt, graph, n, T, prepared=prepared_for(kw.get("dssa", "fused")), **kw)
        bound = 8 * n * (node_values + T * out_values)
        if est is None:
            return bound
        # a fixed-point target is checked against both: the bound before its flow, its estimate after
        return max(est.peak_bytes, bound) if tgt.capabilities.needs_quantized_net else est.peak_bytes

    def fits(n: int, **kw) -> bool:
        return need(n, **kw) <= budget_bytes()
    return fits
