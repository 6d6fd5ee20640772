"""`resformer-deploy deploy`: write the deployable artifact of a model (one HDF5 file holding the
quantized network, targets/artifact) and, where Intel's lava-loihi is installed, run it on Loihi 2
(the job: resformer_deploy.api.deploy; rendered here)."""
import click

from resformer_deploy.cli.common import (COUNT, calib_samples_option, checkpoint_options, data_options, dssa_option,
                                        netx_bias_grid_option)
from resformer_deploy.errors import DeployError
from resformer_deploy.util.outputs import check_outputs


def artifact_line(path, fig) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(fig.types.items()))
    return (f"wrote {path}: {fig.layers} layer groups ({fig.netx_layers} in lava-dl netx schema; {kinds}), "
            f"{fig.bytes / 2 ** 20:.2f} MiB in {fig.seconds:.2f} s")


@click.command("deploy")
@click.argument("model", required=False, type=click.Path(dir_okay=False, path_type=str))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=str),
              help="The artifact file to write (HDF5, written atomically).")
@click.option("--artifact", "artifact_in", type=click.Path(dir_okay=False, path_type=str),
              help="Check (and, with lava-loihi, run) an artifact written before, instead of MODEL.")
@dssa_option(default="synaptic", help="DSSA products: synaptic primitives (stock Loihi 2 models) or fused (needs "
                                      "an embedded-core program; not runnable on the chip).")
@calib_samples_option()
@netx_bias_grid_option
@click.option("--samples", type=COUNT, default=4, show_default=True,
              help="Samples of --data run on the chip (with lava-loihi) or with --simulate.")
@click.option("--simulate", is_flag=True,
              help="Also run --samples samples of --data through the artifact on Lava's CPU simulator with "
                   "its stock process models only (Loihi2SimCfg fixed_pt, no exception map: the chip's "
                   "arithmetic) and check every output value and spike against the bit-accurate emulator.")
@checkpoint_options
@data_options()
def deploy_cmd(model, output, artifact_in, dssa, calib_samples, netx_bias_grid, samples, simulate, variant, img_size,
               T, num_classes, unsafe_load, data_args):
    """Write MODEL's deployable Loihi 2 artifact: one HDF5 file with the whole quantized network.

    MODEL is a checkpoint or NIR file; it is quantized (calibrated on --calib-data, or the flow's
    choice) and written to OUTPUT: weights, neuron parameters and delays as integers in hardware
    units (lava-dl netx layer schema where netx computes a layer exactly, extension groups
    otherwise), the graph's edges, the host stem and head, and metadata (checkpoint SHA-256,
    variant, image size, T, preset, calibration, DSSA lowering, versions). The file is read back
    before the command ends. `targets.artifact.load_network(OUTPUT)` rebuilds the Lava network from
    it without torch. With Intel's lava-loihi installed, the artifact then runs on Loihi 2
    (Loihi2HwCfg) on --samples samples of --data; --artifact FILE checks (and runs) a written one.
    """
    from resformer_deploy import api
    from resformer_deploy.cli.common import load_cli_checkpoint
    check_deploy_options(model, output, artifact_in, netx_bias_grid, simulate, dssa, data_args)
    check_outputs([p for p in (model, artifact_in) if p] + data_args.paths(), files=[output] if output else [])
    md, say = None, (lambda s: click.echo(s, err=True))
    if artifact_in is not None:
        if data_args.calib_data is not None:
            raise DeployError(f"--calib-data {data_args.calib_data}: an artifact is quantized already")
        art = api.read_artifact(artifact_in)
        m = art.meta
        click.echo(f"{artifact_in}: {m['variant']} @{m['img_size']}, T={m['T']}, DSSA {m['dssa']}, "
                   f"{sum(art.layer_types.values())} layer groups ({art.netx_layers} in netx schema), "
                   f"checkpoint sha256 {str(m['checkpoint_sha256'])[:16]}..., calibrated on {m['calibration_source']}")
        if data_args.data is not None:
            from resformer_deploy.model.variants import get_config
            cfg = get_config(m["variant"], img_size=int(m["img_size"]), T=int(m["T"]))
            md, _ = api.open_data(data_args, None, config=cfg, variant=m["variant"], why_not="")
    else:
        net = api.load_graph(model, lambda p: load_cli_checkpoint(p, variant, img_size, T, num_classes, unsafe_load))
        cal = None
        if data_args.data is not None or data_args.calib_data is not None:
            md, cal = api.open_data(data_args, net.checkpoint, calib_samples, True, say=say, config=net.config,
                                    variant=net.variant)
        res = api.deploy(net, output, api.DeployOptions(dssa, calib_samples, netx_bias_grid, samples),
                         calibration=cal, preset=data_args.preset, say=say)
        click.echo(artifact_line(output, res.figures))
        if res.violations:
            click.echo(f"design rules: {len(res.violations)} violation(s), e.g. {res.violations[0]} "
                       f"(`resformer-deploy compile --quantize` lists them)")
        art = res.artifact
    if simulate:
        simulate_on_stock_models(art, md, samples)
    runs, why = api.chip_available()
    if not runs:
        click.echo(f"Loihi 2: not run here: {why}")
    elif md is None:
        click.echo("Loihi 2: lava-loihi is installed; give --data to run samples on the chip")
    else:
        run = api.run_on_loihi2(art, md, samples)
        click.echo("Loihi 2 (Loihi2HwCfg): " + (f"classes {run.predictions} on {md.describe()}" if run.correct is None
                   else f"{run.correct}/{len(run.predictions)} correct on {md.describe()}; classes {run.predictions}"))


def check_deploy_options(model, output, artifact_in, netx_bias_grid, simulate, dssa, data_args) -> None:
    """Options that do not fit together: one error, before any work."""
    if (model is None) == (artifact_in is None):
        raise DeployError("deploy takes a MODEL to write an artifact from, or --artifact FILE, not "
                          + ("both" if model else "neither"))
    if model is not None and output is None:
        raise DeployError(f"deploy {model}: -o/--output OUT.h5 names the artifact to write")
    if artifact_in is not None and netx_bias_grid:
        raise DeployError(f"--artifact {artifact_in}: an artifact is quantized already; --netx-bias-grid applies "
                          f"when writing one from a MODEL")
    if artifact_in is not None and output is not None:
        raise DeployError(f"--artifact {artifact_in}: an artifact is read, not written; drop -o {output}")
    if simulate and data_args.data is None:
        raise DeployError("--simulate runs samples of --data: give --data (e.g. --data digits)")
    if simulate and model is not None and dssa != "synaptic":
        raise DeployError(f"--simulate --dssa {dssa}: the fused lowering's FusedSpikeMatMul processes have no stock "
                          f"Lava process model; use --dssa synaptic")


def simulate_on_stock_models(art, md, samples: int) -> None:
    """``deploy --simulate``: the artifact on stock-model Lava, checked against the emulator (api.simulate_artifact)."""
    from resformer_deploy import api
    from resformer_deploy.util.progress import Progress
    chk = api.simulate_artifact(art, md, samples, bar=Progress)
    right = f"{chk.correct}/{len(chk.predictions)} correct, " if chk.correct is not None else ""
    click.echo(f"Lava stock models (Loihi2SimCfg fixed_pt, no exception map; {chk.processes} processes, "
               f"{chk.seconds:.1f} s): {right}classes {chk.predictions}; vs loihi2-emu: {chk.output_mismatches} of "
               f"{chk.output_values:,} output values and {chk.spike_mismatches} of {chk.spikes:,} spikes differ")
    if not chk.bit_exact:
        raise DeployError("the artifact on Lava's stock models is not bit-exact with the emulator (a bug in the "
                          "toolchain; please report it with the artifact)")
