"""What a run needs, as functions of its sample count, and the search for the largest count that
fits the memory budget (issue 27): api/sizing.py lowers a default count or lowering the user did
not ask for with them, and advises on what was asked for and refused. The sizes are the
commands' own estimates (analysis/equivalence.py for verify, the targets' cost models for
simulate)."""
from typing import Callable

import torch

from resformer_deploy.util.memory_budget import budget_bytes


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


def verification_sizer(model, target: str):
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
            from resformer_deploy.flows.artifacts import Prepared
            plans[dssa] = Prepared.sizing(lava_plan(graph, dssa))
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
