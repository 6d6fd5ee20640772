"""The drift ladder: PyTorch float -> float targets -> fixed-point targets, each rung compared
with the PyTorch model per LIF layer, each fixed-point-check rung bit for bit with the
fixed-point rung (analysis/drift.py). Rungs are registered targets, chosen by capability unless
named.

    >>> from resformer_deploy import api
    >>> model = api.load("examples/digits/digits_resformer.pt")
    >>> result = api.drift(model, api.DriftOptions(lava_samples=0, eval_samples=64))
    >>> result.passed, result.ladders[0].fixed_point.samples, round(result.ladders[0].accuracy_drop_pp, 2)
    (True, 64, 0.0)
"""
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

from resformer_deploy.api.options import Say, silent

DEFAULT_LAVA_SAMPLES = 10  # samples of the float and fixed-point-check rungs, unless asked for
LOWERINGS = {"fused": ("fused",), "synaptic": ("synaptic",), "both": ("fused", "synaptic")}


@dataclass(frozen=True)
class DriftOptions:
    """``targets``: the rungs' targets (None: chosen by capability); ``dssa``: "fused",
    "synaptic" or "both" (a ladder each). ``lava_samples`` (the float and fixed-point-check rungs;
    0: none), ``eval_samples`` (the fixed-point rung; 0: the whole held-out split) and a "both"
    ``dssa``: None is the default (10, 0, fused), lowered to fit the memory budget with a note; a
    value given is refused, before any work, when it does not fit."""
    targets: Optional[Tuple[str, ...]] = None
    dssa: Optional[str] = None
    lava_samples: Optional[int] = None
    eval_samples: Optional[int] = None
    calib_samples: int = 128
    seed: int = 0

    @property
    def lowerings(self) -> Tuple[str, ...]:
        return LOWERINGS["fused" if self.dssa is None else self.dssa]

    def rungs(self) -> list:
        """The rungs' targets with their roles (analysis.drift.choose_rungs): a bad list is refused
        here, before any work."""
        from resformer_deploy.analysis.drift import choose_rungs
        lava = DEFAULT_LAVA_SAMPLES if self.lava_samples is None else self.lava_samples
        return choose_rungs(None if self.targets is None else list(self.targets), subset=lava > 0)

    @property
    def asked(self) -> set:
        return {k for k, v in (("dssa", self.dssa), ("eval", self.eval_samples), ("lava", self.lava_samples))
                if v is not None}


@dataclass(frozen=True)
class DriftResult:
    """One ladder (analysis.drift.DriftLadder: rungs, accuracy drop, calibration, quantization,
    saturation) per DSSA lowering; ``failures``: why fixed point does not hold up (empty: it does)."""
    checkpoint: str
    variant: str
    ladders: Tuple[object, ...]
    failures: Tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict:
        """The record `drift --json-out` writes."""
        return {"checkpoint": self.checkpoint, "variant": self.variant, "ladders": list(self.ladders)}


def run_ladders(ck, checkpoint: str, lowerings: Sequence[str], lava_samples: int, eval_samples: int,
                calib_samples: int, seed: int = 0, lava: bool = True, targets=None, inputs=None, calibration=None,
                note: Say = silent, on_ladder: Callable[[object], None] = lambda rep: None) -> DriftResult:
    """A drift ladder per lowering, counts as given (api.sizing.size_ladder first), each rung sized
    by api.sizing before it runs. ``on_ladder``: handed each ladder as it is done; ``inputs`` /
    ``calibration``: the evaluation set and calibration data (analysis.drift.drift_ladder), else
    the built-in ones."""
    from resformer_deploy.analysis.drift import drift_ladder
    from resformer_deploy.api import sizing

    reports = []
    for low in lowerings:
        note(f"verify {ck.variant} fixed point ({low} DSSA): drift ladder")
        rep = drift_ladder(ck.model, eval_samples, lava_samples if lava else 0, calib_samples, low, seed=seed,
                           progress=lambda m: note(f"  {m} ..."), lava=lava, targets=targets, inputs=inputs,
                           calibration=calibration, sizing=sizing)
        on_ladder(rep)
        reports.append(rep)
    return DriftResult(str(checkpoint), ck.variant, tuple(reports),
                       tuple(why for rep in reports for why in rep.failures()))


def drift(model, options: DriftOptions = DriftOptions(), *, checkpoint: str = "", note: Say = silent,
          on_ladder: Callable[[object], None] = lambda rep: None) -> DriftResult:
    """The drift ladder(s) of ``model`` (api.load) on the digits held-out split (random inputs for
    other models). Roles are checked before any work; counts not given are lowered to fit
    (``note`` says so), counts given and too large are refused (MemoryBudgetError)."""
    from resformer_deploy.api.sizing import size_ladder

    o = options
    lava_samples = DEFAULT_LAVA_SAMPLES if o.lava_samples is None else o.lava_samples
    eval_samples = 0 if o.eval_samples is None else o.eval_samples
    targets = [c.target for c in o.rungs()]
    lowerings, eval_samples, lava_samples, _ = size_ladder(model, o.lowerings, eval_samples, lava_samples, None,
                                                           o.asked, lava=lava_samples > 0, targets=targets, note=note)
    return run_ladders(model, checkpoint or getattr(model, "path", ""), lowerings, lava_samples, eval_samples,
                       o.calib_samples, o.seed, lava=lava_samples > 0, targets=targets, note=note,
                       on_ladder=on_ladder)
