"""Which real Loihi 2 systems a core plan fits (anchors.SYSTEMS: Oheo Gulch, Kapoho Point, Hala Point).

A plan fits a system when its design-rule check is clean and every chip-level resource it needs is
within the system's chips: neuro cores (128 per chip), embedded-core programs (3 usable per chip),
neurons (1 M per chip) and synapses (120 M per chip), all from limits.py. A refusal names every
resource that does not fit, with the figures.
"""
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from resformer_deploy.hardware.loihi2 import limits as L
from resformer_deploy.hardware.loihi2.anchors import SYSTEMS


def system_chips() -> Dict[str, int]:
    return {name: int(a.value) for name, a in SYSTEMS.items()}


def refusals(totals, chips: int, violations: Sequence[str] = ()) -> List[str]:
    """Why a plan with ``totals`` (core_plan.PlanTotals or its JSON) does not fit ``chips`` chips ([]: fits)."""
    def count(key: str) -> int:
        return totals[key] if isinstance(totals, Mapping) else getattr(totals, key)
    need = [("neuro cores", count("neuro_cores"), L.NEURO_CORES_PER_CHIP),
            ("embedded-core programs", count("embedded_programs"), L.USABLE_EMBEDDED_CORES_PER_CHIP),
            ("neurons", count("neurons"), L.MAX_NEURONS_PER_CHIP),
            ("synapses", count("synapses"), L.MAX_SYNAPSES_PER_CHIP)]
    out = [f"{what}: needs {n:,} > {per * chips:,} ({per:,} per chip x {chips:,})"
           for what, n, per in need if n > per * chips]
    out += [f"design rule: {v}" for v in violations]
    return out


def fit_table(totals, violations: Sequence[str] = ()) -> List[dict]:
    """One row per system: {system, chips, fits, refused_by}."""
    rows = []
    for name, chips in system_chips().items():
        why = refusals(totals, chips, violations)
        rows.append({"system": name, "chips": chips, "fits": not why, "refused_by": why})
    return rows


def largest_fitting(sizes: Sequence[int], totals_at: Callable[[int], Optional[tuple]], chips: int) -> Optional[int]:
    """The largest of ``sizes`` (ascending) whose plan fits ``chips`` chips; ``totals_at(size)`` gives
    (totals, violations), or None for a size the model cannot be built at. Binary search: the resources
    grow with the image size. None: not even the smallest fits."""
    lo, hi, best = 0, len(sizes) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        got = totals_at(sizes[mid])
        if got is not None and not refusals(got[0], chips, got[1]):
            best, lo = sizes[mid], mid + 1
        else:
            hi = mid - 1
    return best
