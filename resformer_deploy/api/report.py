"""The deployment report for Loihi 2 (`report`): drift ladder, firing rates, energy and core plan,
written as report.json, report.html and PNG figures into one directory, whole or not at all.

    >>> from resformer_deploy import api
    >>> ck = api.load("examples/digits/digits_resformer.pt")
    >>> r = api.report(ck, "digits-report", api.ReportOptions(lava_samples=0, eval_samples=20))
    >>> r.fixed_samples, r.chips
    (20, 2)
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

from resformer_deploy.api.options import DataOptions, Messages

if TYPE_CHECKING:  # imports torch: only for the type checker
    from resformer_deploy.reporting.deploy import DeploymentReport

__all__ = ["ReportOptions", "ReportResult", "report"]


@dataclass(frozen=True)
class ReportOptions:
    """``dssa``: the DSSA lowering of the ladder and the core plan; ``lava_samples`` (float and
    fixed-point Lava; 0: the emulator only) and ``eval_samples`` (the fixed-point accuracy; 0: all
    of the data, or the whole held-out digits split): None is the default (10, 0), lowered to fit
    the memory budget; a value given is refused when it does not fit."""
    dssa: str = "fused"
    lava_samples: Optional[int] = None
    eval_samples: Optional[int] = None
    calib_samples: int = 128
    data: DataOptions = field(default_factory=DataOptions)


@dataclass(frozen=True)
class ReportResult:
    """The files written and the report's headline figures; the whole report in ``report``
    (reporting.deploy.DeploymentReport, as report.json holds it)."""
    paths: List[str]
    report: "DeploymentReport"
    torch_accuracy: Optional[float]  # PyTorch float on the evaluation samples
    fixed_accuracy: Optional[float]  # fixed point (None: no labels)
    fixed_samples: int
    fixed_agreement: Optional[float]  # fixed point's predictions equal to PyTorch's, fraction
    neuro_cores: int
    chips: int
    violations: int  # design-rule violations of the core plan
    without_stock_model: int  # processes that have no stock Lava model
    energy_mJ: float  # per image, fixed point


def report(ck, out_dir: str, options: ReportOptions = ReportOptions(), messages: Messages = Messages(), *,
           checkpoint: str = "") -> ReportResult:
    """Build the report of ``ck`` (api.load) and write it to ``out_dir`` (replaced only if empty
    or holding a previous report); the ladder's counts not given are lowered to fit first."""
    from resformer_deploy.api.data import open_data
    from resformer_deploy.api import sizing
    from resformer_deploy.api.drift import DEFAULT_LAVA_SAMPLES
    from resformer_deploy.api.verify import ladder_inputs
    from resformer_deploy.reporting.deploy import build_report
    from resformer_deploy.reporting.html import write_report_files

    o = options
    md, cal = open_data(o.data, ck, o.calib_samples, True, say=messages.say)
    asked = {k for k, v in (("eval", o.eval_samples), ("lava", o.lava_samples)) if v is not None}
    eval_samples = o.eval_samples or 0
    lava_samples = DEFAULT_LAVA_SAMPLES if o.lava_samples is None else o.lava_samples
    _, eval_samples, lava_samples, inputs = sizing.size_ladder(ck, [o.dssa], eval_samples, lava_samples,
                                                               ladder_inputs(md, eval_samples), asked,
                                                               lava=lava_samples > 0, note=messages.note)
    rep = build_report(ck, str(checkpoint or getattr(ck, "path", "")), o.dssa, lava_samples, eval_samples,
                       o.calib_samples, say=lambda m: messages.note(f"  {m} ..."), inputs=inputs, calibration=cal,
                       sizing=sizing)
    messages.skipped([why for _, why in (md.bad if md else [])])
    paths = write_report_files(Path(out_dir), rep)
    lad, m = rep.ladder, rep.mapping
    emu, totals = lad.fixed_point, m.plan.totals  # the rung of that role, wherever it stands
    return ReportResult([str(p) for p in paths], rep, lad.reference.accuracy, emu.accuracy, emu.samples,
                        emu.prediction_agreement_with_torch, totals.neuro_cores, totals.chips,
                        len(m.violations), len(m.stock_models), rep.energy.fixed.energy_mJ)
