"""`resformer-deploy ops`: operation counts and energy (api.ops), as a table and two lines of
text; exit 2 when the target's counts and the reference's disagree."""
import click

from resformer_deploy.cli.common import (COUNT, checkpoint_argument, checkpoint_option_set, data_options,
                                         json_out_option)
from resformer_deploy.errors import DeployError
from resformer_deploy.util.outputs import check_outputs


@click.command("ops")
@checkpoint_argument
@checkpoint_option_set
@click.option("--target", default="reference", show_default=True, help="Target whose spikes are counted.")
@click.option("--samples", type=COUNT, default=16, show_default=True)
@click.option("--include-stem", is_flag=True, help="Add the stem convolution's MACs (4.6 pJ each).")
@click.option("--include-classifier", is_flag=True, help="Add the classifier's MACs (4.6 pJ each).")
@json_out_option()
@data_options()
def ops(checkpoint, checkpoint_opts, target, samples, include_stem, include_classifier, json_out, data_args):
    """Synaptic operations per layer and kind, and energy in the paper's convention
    (0.9 pJ per AC; stem and classifier MACs excluded unless asked), counted from PyTorch and
    from a target run, which must agree."""
    check_outputs([checkpoint, *data_args.paths()], files=[json_out])
    from targets import get_target
    from resformer_deploy import api
    from resformer_deploy.reporting.tables import table, write_json
    from resformer_deploy.util.progress import Progress

    get_target(target)  # unknown target: fail before the checkpoint is read
    r = api.ops(api.load(checkpoint, checkpoint_opts),
                api.OpsOptions(target, samples, include_stem, include_classifier, data_args),
                api.Messages(say=click.echo, bars=Progress))
    rows = [(c.layer, c.kind, f"{c.reference_ops / samples:,.1f}", f"{c.target_ops / samples:,.1f}",
             f"{c.rel_diff:.1e}") for c in r.layers]
    click.echo(f"{samples} samples of {r.inputs}; per image, summed over T={r.T} steps")
    click.echo(table(rows, ["layer", "kind", f"{r.reference} ops", f"{target} ops", "rel. diff"]))
    k = r.energy.per_image
    click.echo(f"\nper image: {r.energy.sops:,.0f} SOPs (conv {k['conv']:,.0f}, DSSA products "
               f"{k['dssa_product']:,.0f}); residual adds {k['residual_add']:,.0f} (not SOPs); stem MACs "
               f"{k['stem_mac']:,.0f}, classifier MACs {k['classifier_mac']:,.0f} "
               f"({'included' if include_stem or include_classifier else 'excluded'} as in the paper)")
    click.echo(f"energy per image: {r.energy.energy_mJ * 1e3:.4f} uJ (0.9 pJ/AC, 4.6 pJ/MAC); "
               f"{r.reference} vs {target} counts: max rel. diff {r.max_rel_diff:.1e}")
    if r.replayed:
        click.echo(f"(fixed point: PyTorch's counter replayed {target}'s own spikes; the float model's own spikes "
                   f"give counts that differ by up to {r.float_rel_diff:.1e}, the effect of quantization)")
    if json_out:
        write_json(json_out, {"checkpoint": checkpoint, "target": target, "samples": samples, "inputs": r.inputs,
                              "reference": r.reference, "reference_counts": r.reference_counts,
                              "target_counts": r.target_counts, "report": r.energy, "max_rel_diff": r.max_rel_diff,
                              "calibration": r.calibration})
        click.echo(f"wrote {json_out}")
    if not r.agree:
        raise DeployError(f"operation counts from {r.reference} and {target} disagree "
                          f"(max rel. diff {r.max_rel_diff:.1e})")
