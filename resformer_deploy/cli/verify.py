"""`resformer-deploy verify`: a target checked against the PyTorch model (api.verify), each
comparison's table or each drift ladder printed as it is done; exit 2 when it does not hold up."""
import click

from resformer_deploy.api.verify import DEFAULT_SAMPLES
from resformer_deploy.cli.common import (COUNT, asked, calib_samples_option, checkpoint_argument,
                                         checkpoint_option_set, data_options, dssa_option, eval_samples_option,
                                         json_out_option, lava_processes_option, lava_samples_option, seed_option,
                                         warn_skipped)
from resformer_deploy.errors import DeployError
from resformer_deploy.util.outputs import check_outputs


@click.command("verify")
@checkpoint_argument
@checkpoint_option_set
@click.option("--target", default="reference", show_default=True, help="Registered target to run.")
@click.option("--samples", type=COUNT, default=DEFAULT_SAMPLES, show_default=True,
              help="Samples to verify; with a fixed-point target it bounds every rung of the drift ladder whose own "
                   "count (--eval-samples, --lava-samples) is not given. A default that does not fit the memory "
                   "budget is lowered to what fits (and said so).")
@click.option("--precision", type=click.Choice(["float64", "float32", "both"]), default="both",
              show_default=True, help="float64 proves graph equivalence; float32 shows deployment rounding.")
@click.option("--form", type=click.Choice(["extension", "standard"]), default="extension", show_default=True)
@dssa_option(default="both", both=True, help="DSSA lowering on Lava targets.")
@lava_processes_option
@seed_option
@lava_samples_option(help="loihi2-sim: samples run on float and fixed-point Lava.")
@eval_samples_option(help="loihi2-sim: samples for the fixed-point accuracy (0: all of --data, or the full held-out "
                          "digits split).")
@calib_samples_option(help="loihi2-sim: calibration samples (--calib-data, or the digits training split) for the "
                           "quantization scales.")
@json_out_option()
@data_options()
def verify(checkpoint, checkpoint_opts, target, samples, precision, form, dssa, lava_processes, seed, lava_samples,
           eval_samples, calib_samples, json_out, data_args):
    """Export, run on a target and compare every LIF layer with the PyTorch model.

    With --target loihi2-sim: the drift ladder PyTorch float -> float Lava -> fixed-point Lava
    (quantized for Loihi 2), with the fixed-point accuracy on the full held-out split from the
    bit-accurate emulator, which is checked against the fixed-point Lava run spike for spike.
    """
    check_outputs([checkpoint, *data_args.paths()], files=[json_out])
    from targets import get_target
    from resformer_deploy import api
    from resformer_deploy.cli.checks import check_text
    from resformer_deploy.reporting.drift import ladder_text
    from resformer_deploy.reporting.tables import write_json
    from resformer_deploy.util.progress import Progress

    get_target(target)  # unknown target: fail before any work starts
    ck = api.load(checkpoint, checkpoint_opts)
    options = api.VerifyOptions(target, asked(samples, "samples"), precision, form, asked(dssa, "dssa"), seed,
                                asked(lava_samples, "lava_samples"), asked(eval_samples, "eval_samples"),
                                calib_samples, data_args, lava_processes)
    messages = api.Messages(say=click.echo, note=lambda m: click.echo(m, err=True), bars=Progress,
                            skipped=warn_skipped)
    r = api.verify(ck, options, messages, checkpoint=checkpoint,
                   on_check=lambda rep, prec, low: click.echo(check_text(rep, prec, low)),
                   on_ladder=lambda ladder: click.echo(ladder_text(ladder)))
    if json_out:
        write_json(json_out, r.ladder.to_json() if r.ladder is not None else
                   {"checkpoint": checkpoint, "variant": ck.variant, "inputs": r.inputs,
                    "skipped": [{"name": n, "reason": why} for n, why in r.skipped], "reports": list(r.checks)})
        click.echo(f"wrote {json_out}")
    if r.ladder is not None and not r.passed:
        raise DeployError("fixed-point verification failed: " + "; ".join(r.ladder.failures))
    if not r.passed:
        raise DeployError("verification failed: the target does not reproduce the PyTorch model "
                          "(see the table above)")
