"""`resformer-deploy drift`: the drift ladder, any registered targets as rungs (the job:
resformer_deploy.api.drift), each ladder printed as it finishes, optionally written as JSON, and
failed (exit 2) when fixed point does not hold up."""
import click

from resformer_deploy.cli.common import (asked, calib_samples_option, checkpoint_options, dssa_option,
                                        eval_samples_option, json_out_option, lava_samples_option,
                                        load_cli_checkpoint, seed_option)
from resformer_deploy.errors import DeployError


def _note(m: str) -> None:
    click.echo(m, err=True)


def _show(ladder) -> None:
    from resformer_deploy.reporting.drift import ladder_text
    click.echo(ladder_text(ladder))


def _finish(res, json_out) -> None:
    if json_out:
        from resformer_deploy.reporting.tables import write_json
        write_json(json_out, res.to_json())
        click.echo(f"wrote {json_out}")
    if res.failures:
        raise DeployError("fixed-point verification failed: " + "; ".join(res.failures))


def _target_list(value):
    return None if value is None else tuple(t.strip() for t in value.split(",") if t.strip())


@click.command("drift")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=str))
@checkpoint_options
@click.option("--targets", "targets", metavar="A,B,...",
              help="Registered targets to run as rungs, roles from their capabilities (float; fixed point; "
                   "a fixed-point target's bit-exact twin runs the whole set). Default: chosen by capability.")
@dssa_option(both=True)
@lava_samples_option(help="Samples the float and fixed-point-check rungs run (0: only the fixed-point rung).")
@eval_samples_option(help="Samples of the fixed-point rung (0: the full held-out digits split).")
@calib_samples_option(help="Calibration samples (digits training split) for the quantization scales.")
@seed_option
@json_out_option()
def drift_cmd(checkpoint, variant, img_size, T, num_classes, unsafe_load, targets, dssa, lava_samples, eval_samples,
              calib_samples, seed, json_out):
    """Drift ladder PyTorch float -> float targets -> fixed-point targets, any registered target a rung.

    Every rung but PyTorch's is compared with the PyTorch model per LIF layer; each
    fixed-point-check rung is also checked bit for bit against the fixed-point rung."""
    from resformer_deploy import api
    from resformer_deploy.util.outputs import check_outputs

    check_outputs([checkpoint], files=[json_out])
    opts = api.DriftOptions(targets=_target_list(targets), dssa=asked(dssa, "dssa"),
                            lava_samples=asked(lava_samples, "lava_samples"),
                            eval_samples=asked(eval_samples, "eval_samples"), calib_samples=calib_samples, seed=seed)
    opts.rungs()  # roles first: a bad list fails in one line before the checkpoint is read
    ck = load_cli_checkpoint(checkpoint, variant, img_size, T, num_classes, unsafe_load)
    _finish(api.drift(ck, opts, checkpoint=checkpoint, note=_note, on_ladder=_show), json_out)
