"""The drift ladder on the command line: `resformer-deploy verify --target <fixed point>` (run_drift)
and `resformer-deploy drift` (drift_cmd, any registered targets as rungs), printed, optionally
written as JSON, and failed (exit 2) when fixed point does not hold up."""
import click

from resformer_deploy.cli.common import COUNT, COUNT0, SEED, checkpoint_options, given, load_cli_checkpoint
from resformer_deploy.errors import DeployError
from resformer_deploy.reporting.drift import ladder_text
from resformer_deploy.reporting.tables import write_json


def ladder_asked() -> set:
    """The ladder's counts and lowering the user gave ("dssa", "eval", "lava"): the others are
    defaults, lowered to fit (fit_counts)."""
    return {k for k, o in (("dssa", "dssa"), ("eval", "eval_samples"), ("lava", "lava_samples")) if given(o)}


def fit_counts(ck, lowerings, eval_samples: int, lava_samples: int, inputs, asked: set, lava: bool = True,
               targets=None):
    """(lowerings, eval_samples, lava_samples, inputs) of the ladders to run: the counts and
    lowerings the user did not ask for (``asked``: those given of "dssa", "eval", "lava") lowered to
    what fits the memory budget, each change said on stderr (analysis.drift.fit_ladder); then the
    ladder's records are checked (refused, with the figures, when they do not fit)."""
    from resformer_deploy.analysis.drift import default_eval_count, fit_ladder

    cfg = ck.config
    n_eval = len(inputs[0]) if inputs is not None else (
        eval_samples or default_eval_count((cfg.in_channels, cfg.img_size, cfg.img_size)))
    if "eval" in asked:  # asked for: refused before any work when its records cannot fit
        _check_records(ck.model, n_eval)
    lava_n = lava_samples if lava else 0
    free = {"eval", "lava"} - asked if lava_n else {"eval"} - asked
    if free or (len(lowerings) > 1 and "dssa" not in asked):
        lowerings, n, lava_n = fit_ladder(ck.model, lowerings, n_eval, lava_n, asked,
                                          lambda m: click.echo(m, err=True), targets, lava)
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
    from resformer_deploy.model.summary import check_ladder_recording
    from resformer_deploy.util.memory_budget import MemoryBudgetError

    try:
        check_ladder_recording(model, n_eval)
    except MemoryBudgetError as e:
        from resformer_deploy.analysis.sizing import largest_that_fits
        most = largest_that_fits(lambda k: _fits_records(model, k), n_eval - 1)
        raise MemoryBudgetError(f"{e}; " + (f"use --eval-samples {most} (the most that fit)" if most else
                                            "use a smaller --T")) from None


def _fits_records(model, n: int) -> bool:
    from resformer_deploy.model.summary import check_ladder_recording
    from resformer_deploy.util.memory_budget import MemoryBudgetError
    try:
        check_ladder_recording(model, n)
        return True
    except MemoryBudgetError:
        return False


def run_drift(ck, checkpoint, lowerings, lava_samples, eval_samples, calib_samples, seed, json_out, lava=True,
              targets=None, inputs=None, calibration=None):
    """``targets``: the rungs' targets (None: chosen by capability, analysis.drift.rungs_by_capability);
    ``inputs`` / ``calibration``: --data and --calib-data (analysis.drift.drift_ladder)."""
    from resformer_deploy.analysis.drift import drift_ladder

    reports = []
    for low in lowerings:
        click.echo(f"verify {ck.variant} fixed point ({low} DSSA): drift ladder", err=True)
        rep = drift_ladder(ck.model, eval_samples, lava_samples if lava else 0, calib_samples, low, seed=seed,
                           progress=lambda m: click.echo(f"  {m} ...", err=True), lava=lava, targets=targets,
                           inputs=inputs, calibration=calibration)
        click.echo(ladder_text(rep))
        reports.append(rep)
    if json_out:
        write_json(json_out, {"checkpoint": checkpoint, "variant": ck.variant, "ladders": reports})
        click.echo(f"wrote {json_out}")
    bad = [why for rep in reports for why in rep.failures()]
    if bad:
        raise DeployError("fixed-point verification failed: " + "; ".join(bad))


def _target_list(value):
    return None if value is None else [t.strip() for t in value.split(",") if t.strip()]


@click.command("drift")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=str))
@checkpoint_options
@click.option("--targets", "targets", metavar="A,B,...",
              help="Registered targets to run as rungs, roles from their capabilities (float; fixed point; "
                   "a fixed-point target's bit-exact twin runs the whole set). Default: chosen by capability.")
@click.option("--dssa", type=click.Choice(["fused", "synaptic", "both"]), default="fused", show_default=True)
@click.option("--lava-samples", type=COUNT0, default=10, show_default=True,
              help="Samples the float and fixed-point-check rungs run (0: only the fixed-point rung).")
@click.option("--eval-samples", type=COUNT0, default=0, show_default=True,
              help="Samples of the fixed-point rung (0: the full held-out digits split).")
@click.option("--calib-samples", type=COUNT, default=128, show_default=True,
              help="Calibration samples (digits training split) for the quantization scales.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of random inputs (non-digits).")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=str))
def drift_cmd(checkpoint, variant, img_size, T, num_classes, unsafe_load, targets, dssa, lava_samples, eval_samples,
              calib_samples, seed, json_out):
    """Drift ladder PyTorch float -> float targets -> fixed-point targets, any registered target a rung.

    Every rung but PyTorch's is compared with the PyTorch model per LIF layer; each
    fixed-point-check rung is also checked bit for bit against the fixed-point rung."""
    from resformer_deploy.analysis.drift import choose_rungs
    from resformer_deploy.util.outputs import check_outputs

    check_outputs([checkpoint], files=[json_out])
    names = _target_list(targets)
    # roles first: a bad list fails in one line before the checkpoint is read
    chosen = choose_rungs(names, subset=lava_samples > 0)
    ck = load_cli_checkpoint(checkpoint, variant, img_size, T, num_classes, unsafe_load)
    lowerings, eval_samples, lava_samples, _ = fit_counts(
        ck, ["fused", "synaptic"] if dssa == "both" else [dssa], eval_samples, lava_samples, None,
        ladder_asked(), lava=lava_samples > 0, targets=[c.target for c in chosen])
    run_drift(ck, checkpoint, lowerings, lava_samples, eval_samples, calib_samples, seed, json_out,
              lava=lava_samples > 0, targets=[c.target for c in chosen])
