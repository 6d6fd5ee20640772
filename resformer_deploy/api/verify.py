"""Verify a target against the PyTorch model (`verify`): export, run, and compare every LIF layer
spike for spike, per precision and DSSA lowering; on a fixed-point target the drift ladder
(api.drift) instead, since quantized spikes differ from the float model's by design.

    >>> from resformer_deploy import api
    >>> from targets import names_with
    >>> ck = api.load("examples/digits/digits_resformer.pt")
    >>> r = api.verify(ck, api.VerifyOptions(target=names_with(engine="pytorch")[0], samples=4, precision="float64"))
    >>> r.passed, r.verdicts
    (True, ['exact'])
"""
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

from resformer_deploy.api.options import DataOptions, Messages

if TYPE_CHECKING:  # imports torch: only for the type checker
    from resformer_deploy.analysis.equivalence import EquivalenceReport
    from resformer_deploy.api.drift import DriftResult

__all__ = ["DEFAULT_SAMPLES", "VerifyOptions", "VerifyResult", "ladder_inputs", "run_checks", "verify"]

DEFAULT_SAMPLES = 8
PRECISIONS = {"float64": ("float64",), "float32": ("float32",), "both": ("float64", "float32")}
LOWERINGS = {"fused": ("fused",), "synaptic": ("synaptic",), "both": ("fused", "synaptic")}


@dataclass(frozen=True)
class VerifyOptions:
    """``samples``, ``dssa`` ("fused", "synaptic", "both"), ``lava_samples`` and ``eval_samples``:
    None is the default (8 samples, both lowerings, 10 Lava samples, the whole evaluation set),
    lowered to fit the memory budget (said through ``Messages.note``); a value given is run as
    asked or refused with advice. ``precision``: "float64" (proves graph equivalence), "float32"
    (deployment rounding) or "both"; ``form``: the NIR form exported and read back. A fixed-point
    target runs the drift ladder: ``samples`` then bounds every rung whose own count is not given.
    ``lava_processes``: "merged" runs a lava-cpu check's process models in one worker process
    (targets.LAVA_PROCESSES; refused by targets without it, the fixed-point ones among them)."""
    target: str
    samples: Optional[int] = None
    precision: str = "both"
    form: str = "extension"
    dssa: Optional[str] = None
    seed: int = 0  # of random inputs (models that are not digits-shaped, without data)
    lava_samples: Optional[int] = None
    eval_samples: Optional[int] = None
    calib_samples: int = 128
    data: DataOptions = field(default_factory=DataOptions)
    lava_processes: str = "separate"


@dataclass(frozen=True)
class VerifyResult:
    """``checks``: one analysis.equivalence.EquivalenceReport per (precision, lowering) run on a
    float target, ``ladder`` (api.drift.DriftResult) on a fixed-point one; the other is empty / None."""
    checkpoint: str
    variant: str
    target: str
    inputs: Optional[str]  # what the samples are (float targets; each ladder says its own)
    checks: Tuple["EquivalenceReport", ...]
    ladder: Optional["DriftResult"]
    skipped: List[Tuple[str, str]]  # (sample, reason) that --skip-bad left out of the data

    @property
    def passed(self) -> bool:
        return self.ladder.passed if self.ladder is not None else all(c.passed for c in self.checks)

    @property
    def verdicts(self) -> List[str]:
        """"exact", "rounding" or "fail" per check (float targets)."""
        return [c.verdict for c in self.checks]


def ladder_inputs(md, eval_samples: int):
    """The drift ladder's evaluation inputs (x, y, description) from the user's data (``eval_samples``
    0: all of it), or None for its own (digits held-out split or random inputs)."""
    if md is None:
        return None
    x, y, _ = md.take(eval_samples or len(md.source), "--eval-samples")
    return x, y, md.describe()


def run_checks(ck, x, target: str, precisions: Sequence[str], form: str = "extension",
               lowerings: Optional[Sequence[str]] = None, messages: Messages = Messages(),
               on_check: Callable = lambda rep, precision, lowering: None,
               options: Optional[dict] = None) -> List["EquivalenceReport"]:
    """verify_model for each precision and lowering, every run estimated first (each estimate
    said) and refused before the first starts if one does not fit; ``on_check`` gets each report
    as it is done; ``options``: the target's other run options (Target.run_options, e.g. merge)."""
    from resformer_deploy.analysis.equivalence import verify_model
    from resformer_deploy.api import sizing

    runs = [(prec, {**(options or {}), **({"dssa": low} if low else {})})
            for prec in precisions for low in (lowerings or ("",))]
    sizing.size_verification(ck.model, x.shape[0], target, runs, say=messages.say)
    reports = []
    for prec, opts in runs:
        rep = verify_model(ck.model, x, target, prec, form, bars=messages.bars, sizing=sizing, **opts)
        reports.append(rep)
        on_check(rep, prec, opts.get("dssa"))
    return reports


def verify(ck, options: VerifyOptions, messages: Messages = Messages(), *, checkpoint: str = "",
           on_check: Callable = lambda rep, precision, lowering: None,
           on_ladder: Callable = lambda ladder: None) -> VerifyResult:
    """Verify ``ck`` (api.load) on ``options.target``; ``on_check`` / ``on_ladder`` get each
    comparison / ladder as it is done. The result says whether the target reproduces the model."""
    from targets import get_target
    from resformer_deploy.api.data import open_data

    o, target = options, options.target
    tgt = get_target(target)
    caps = tgt.capabilities
    extra = tgt.run_options(None, o.lava_processes)  # merged on a target without it: refused here
    md, cal = open_data(o.data, ck, o.calib_samples, caps.needs_quantized_net,
                        f"target '{target}' runs floating point", messages.say)
    checkpoint = str(checkpoint or getattr(ck, "path", ""))
    if caps.needs_quantized_net:  # fixed point: the drift ladder, with Lava rungs on a Lava target
        ladder = _ladder(ck, o, caps, md, cal, checkpoint, messages, on_ladder)
        return VerifyResult(checkpoint, ck.variant, target, None, (), ladder, _skipped(md))
    from resformer_deploy.analysis.equivalence import verification_inputs
    from resformer_deploy.api.sizing import fit_verification

    lowerings = None
    if "dssa" in caps.options:  # the target lowers DSSA products one way or another
        lowerings = list(LOWERINGS[o.dssa or "both"])
    precisions = list(PRECISIONS[o.precision])
    samples, lowerings = fit_verification(ck.model, o.samples or DEFAULT_SAMPLES, target, precisions, lowerings,
                                          o.samples is not None, o.dssa is not None, messages.note)
    x, source = verification_inputs(ck.model, samples, o.seed, packed=True, data=md)
    skipped = _skipped(md)  # known once the samples are read
    messages.skipped([why for _, why in skipped])
    messages.say(f"verify {ck.variant} on target '{target}' ({o.form} form): {int(x.shape[0])} samples of "
                 f"{source}, T={ck.config.T}")
    checks = run_checks(ck, x, target, precisions, o.form, lowerings, messages, on_check, extra)
    return VerifyResult(checkpoint, ck.variant, target, source, tuple(checks), None, skipped)


def _skipped(md) -> List[Tuple[str, str]]:
    return [(n, why) for n, why in (md.bad if md else [])]


def _ladder(ck, o: VerifyOptions, caps, md, cal, checkpoint: str, messages: Messages, on_ladder):
    from resformer_deploy.analysis.drift import default_eval_count, rungs_by_capability
    from resformer_deploy.api.drift import DEFAULT_LAVA_SAMPLES, run_ladders
    from resformer_deploy.api.sizing import size_ladder

    asked = {k for k, v in (("dssa", o.dssa), ("eval", o.eval_samples), ("lava", o.lava_samples)) if v is not None}
    eval_samples = o.eval_samples or 0
    lava_samples = DEFAULT_LAVA_SAMPLES if o.lava_samples is None else o.lava_samples
    if o.samples is not None:  # one samples count bounds every rung whose own count is not given
        cfg = ck.config
        if "eval" not in asked:
            eval_samples = min(o.samples, len(md.source) if md else
                               default_eval_count((cfg.in_channels, cfg.img_size, cfg.img_size)))
        lava_samples = lava_samples if "lava" in asked else min(lava_samples, o.samples)
        asked |= {"eval", "lava"}
        messages.note(f"--samples {o.samples} bounds the ladder: {eval_samples} evaluation samples, "
                      f"{lava_samples} Lava samples")
    lava = caps.engine == "lava"
    rungs = rungs_by_capability(o.target, subset=lava and lava_samples > 0)
    lowerings, eval_samples, lava_samples, inputs = size_ladder(
        ck, LOWERINGS[o.dssa or "both"], eval_samples, lava_samples, ladder_inputs(md, eval_samples), asked,
        lava=lava, targets=rungs, note=messages.note)
    result = run_ladders(ck, checkpoint, lowerings, lava_samples, eval_samples, o.calib_samples, o.seed, lava=lava,
                         targets=rungs, inputs=inputs, calibration=cal, note=messages.note, on_ladder=on_ladder)
    messages.skipped([why for _, why in _skipped(md)])
    return result
