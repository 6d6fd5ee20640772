"""`resformer-deploy report`: the deployment report (api.report) written, its headline said."""
import click

from resformer_deploy.cli.common import (asked, calib_samples_option, checkpoint_argument, checkpoint_option_set,
                                         data_options, dssa_option, eval_samples_option, lava_samples_option,
                                         warn_skipped)
from resformer_deploy.reporting.html import REPORT_FILES
from resformer_deploy.util.outputs import check_outputs


@click.command("report")
@checkpoint_argument
@checkpoint_option_set
@click.option("-o", "--out-dir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Directory for report.json, report.html and the PNG figures.")
@dssa_option()
@lava_samples_option(help="Samples run on float and fixed-point Lava (0: emulator only).")
@eval_samples_option(help="Evaluation samples (0: all of --data, or the full held-out digits split).")
@calib_samples_option()
@data_options()
def report(checkpoint, checkpoint_opts, out_dir, dssa, lava_samples, eval_samples, calib_samples, data_args):
    """Deployment report for Loihi 2: drift ladder, firing rates, energy, core plan (JSON + HTML + PNG).

    OUT_DIR appears whole or not at all: it is built next to itself and renamed into place; an
    existing OUT_DIR is replaced only if it is empty or holds a previous report (else refused)."""
    check_outputs([checkpoint, *data_args.paths()], file_sets={out_dir: REPORT_FILES})
    from resformer_deploy import api

    r = api.report(api.load(checkpoint, checkpoint_opts), out_dir,
                   api.ReportOptions(dssa, asked(lava_samples, "lava_samples"), asked(eval_samples, "eval_samples"),
                                     calib_samples, data_args),
                   api.Messages(say=click.echo, note=lambda m: click.echo(m, err=True), skipped=warn_skipped),
                   checkpoint=checkpoint)
    click.echo(f"accuracy: PyTorch {100 * r.torch_accuracy:.2f}% -> fixed point "
               f"{100 * r.fixed_accuracy:.2f}% on {r.fixed_samples} samples" if r.fixed_accuracy is not None else
               f"fixed point: {100 * r.fixed_agreement:.2f}% same class as PyTorch")
    click.echo(f"Loihi 2: {r.neuro_cores} neuro cores, {r.chips} chip(s), {r.violations} design-rule violation(s), "
               f"{r.without_stock_model} process(es) without a stock Lava model; energy "
               f"{r.energy_mJ * 1e3:.4f} uJ per image (fixed point)")
    for p in r.paths:
        click.echo(f"wrote {p}")
