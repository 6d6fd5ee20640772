"""The one place a job sizes a run before it starts: estimate, tell, refuse.

``size_run`` asks the target's cost model for a run's time and peak memory, hands the line the
CLI prints to ``say`` and raises MemoryBudgetError (a one-line user error naming an option that
would help) when the peak does not fit the memory budget (util/memory_budget.py). A target whose
cost model needs its flow's artifacts (fixed point: the quantized network) gives no estimate
before the flow: the job calls ``size_run`` again with ``prepared``::

    >>> from resformer_deploy.api.sizing import size_run
    >>> est = size_run(tgt, graph, 8, 4, "simulate: 8 samples", say=print)  # doctest: +SKIP
    estimate: ~1 s, peak ~1.2 GiB (...)
"""
from typing import Callable, Optional

from resformer_deploy.api.options import Say, silent

__all__ = ["size_run"]


def size_run(tgt, graph, n: int, T: int, what: str, prepared=None, advice: Optional[Callable[[], str]] = None,
             say: Say = silent, **options):
    """The target's Estimate of running ``graph`` on ``n`` samples for ``T`` steps with the run's
    keywords ``options`` (analysis.equivalence.estimate_run), said and checked; None (nothing said)
    when the target can estimate only after its flow (``prepared`` None). ``what`` names the run in
    a refusal; ``advice()`` is asked only then."""
    from resformer_deploy.analysis.equivalence import check_run_estimate, estimate_run, run_estimate_line

    est = estimate_run(tgt, graph, n, T, prepared=prepared, **options)
    if est is None and prepared is None:
        return None
    say(run_estimate_line(tgt, est))
    check_run_estimate(tgt, est, what, advice)
    return est
