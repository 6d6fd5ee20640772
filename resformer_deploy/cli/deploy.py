"""`resformer-deploy deploy`: write the deployable artifact of a model (one HDF5 file holding the
quantized network, targets/artifact) and, where Intel's lava-loihi is installed, run it on Loihi 2."""
from pathlib import Path

import click

from resformer_deploy.cli.common import COUNT, checkpoint_options, data_options, netx_bias_grid_option
from resformer_deploy.errors import DeployError
from resformer_deploy.util.outputs import check_outputs


def load_graph(model, variant, img_size, T, num_classes, unsafe_load):
    """(NIR graph, (config, variant) loader for --data) of a checkpoint or NIR file."""
    from resformer_deploy.cli.common import load_cli_checkpoint
    from resformer_deploy.cli.compile import _is_nir
    if not Path(model).exists():
        raise DeployError(f"{model}: no such file")
    if _is_nir(model):
        from exporters.nir_io import read_nir
        from resformer_deploy.analysis.data_inputs import graph_model
        graph = read_nir(model)
        return graph, lambda: graph_model(graph, model)
    from exporters.torch_to_nir import export_model
    ck = load_cli_checkpoint(model, variant, img_size, T, num_classes, unsafe_load)
    return export_model(ck.model), lambda: (ck.config, ck.variant)


def write_deploy_artifact(path, prepared, graph, model, preset: str = "auto") -> dict:
    """The artifact of a prepared (quantized) flow, written atomically and read back once (a file
    that does not load is never left as the result). Returns the writer's figures."""
    from targets.artifact import artifact_meta, read_artifact, write_artifact
    qn = prepared["quantized_net"]
    figures = write_artifact(path, qn, graph, artifact_meta(graph, qn, model, preset))
    art = read_artifact(path)
    figures["types"] = art.layer_types
    return figures


def artifact_line(path, fig) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(fig["types"].items()))
    return (f"wrote {path}: {fig['layers']} layer groups ({fig['netx_layers']} in lava-dl netx schema; {kinds}), "
            f"{fig['bytes'] / 2 ** 20:.2f} MiB in {fig['seconds']:.2f} s")


@click.command("deploy")
@click.argument("model", required=False, type=click.Path(dir_okay=False, path_type=str))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=str),
              help="The artifact file to write (HDF5, written atomically).")
@click.option("--artifact", "artifact_in", type=click.Path(dir_okay=False, path_type=str),
              help="Check (and, with lava-loihi, run) an artifact written before, instead of MODEL.")
@click.option("--dssa", type=click.Choice(["synaptic", "fused"]), default="synaptic", show_default=True,
              help="DSSA products: synaptic primitives (stock Loihi 2 models) or fused (needs an "
                   "embedded-core program; not runnable on the chip).")
@click.option("--calib-samples", type=COUNT, default=128, show_default=True)
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
    from targets.loihi2_hardware import lava_loihi_installed, loihi2_hardware_message
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
    check_outputs([p for p in (model, artifact_in) if p] + data_args.paths(), files=[output] if output else [])
    md = None
    if artifact_in is not None:
        from targets.artifact import read_artifact
        if data_args.calib_data is not None:
            raise DeployError(f"--calib-data {data_args.calib_data}: an artifact is quantized already")
        art = read_artifact(artifact_in)
        m = art.meta
        click.echo(f"{artifact_in}: {m['variant']} @{m['img_size']}, T={m['T']}, DSSA {m['dssa']}, "
                   f"{sum(art.layer_types.values())} layer groups ({art.netx_layers} in netx schema), "
                   f"checkpoint sha256 {str(m['checkpoint_sha256'])[:16]}..., calibrated on {m['calibration_source']}")
        if data_args.data is not None:
            from resformer_deploy.analysis.data_inputs import evaluation_data
            from resformer_deploy.model.variants import get_config
            cfg = get_config(m["variant"], img_size=int(m["img_size"]), T=int(m["T"]))
            md = evaluation_data(data_args, cfg, m["variant"])
    else:
        from resformer_deploy.flows import prepare
        graph, model_of = load_graph(model, variant, img_size, T, num_classes, unsafe_load)
        cal = None
        if data_args.data is not None or data_args.calib_data is not None:
            from resformer_deploy.cli.data import open_data_args
            md, cal = open_data_args(data_args, *model_of(), calib_samples, True, out=lambda s: click.echo(s, err=True))
        prepared = prepare("loihi2", graph, dssa=dssa, quantize=True, calib_samples=calib_samples, calibration=cal,
                           netx_bias_grid=netx_bias_grid)
        click.echo(f"quantized on {prepared['quantized_net'].calibration['source']}", err=True)
        fig = write_deploy_artifact(output, prepared, graph, model, data_args.preset)
        click.echo(artifact_line(output, fig))
        violations, _ = prepared["drc"]
        if violations:
            click.echo(f"design rules: {len(violations)} violation(s), e.g. {violations[0]} "
                       f"(`resformer-deploy compile --quantize` lists them)")
        from targets.artifact import read_artifact
        art = read_artifact(output)
    if simulate:
        simulate_on_stock_models(art, md, samples)
    if not lava_loihi_installed():
        click.echo(f"Loihi 2: not run here: {loihi2_hardware_message()}")
        return
    if md is None:
        click.echo("Loihi 2: lava-loihi is installed; give --data to run samples on the chip")
        return
    from targets.loihi2_hardware import run_on_chip
    x, y, _ = md.take(samples, "--samples")
    logits, _ = run_on_chip(art, x.numpy() if hasattr(x, "numpy") else x)
    pred = [int(c) for c in logits.mean(0).argmax(-1)]
    if y is None:
        click.echo(f"Loihi 2 (Loihi2HwCfg): classes {pred} on {md.describe()}")
        return
    correct = sum(int(p == int(t)) for p, t in zip(pred, y))
    click.echo(f"Loihi 2 (Loihi2HwCfg): {correct}/{len(pred)} correct on {md.describe()}; classes {pred}")


def simulate_on_stock_models(art, md, samples: int) -> None:
    """``deploy --simulate``: the artifact on stock-model Lava, checked against the emulator (targets.stock_check)."""
    from resformer_deploy.util.progress import Progress
    from targets.stock_check import check_on_stock_models
    x, y, _ = md.take(samples, "--samples")
    x = x.numpy() if hasattr(x, "numpy") else x
    steps = x.shape[0] * art.T + art.plan.total_latency
    with Progress(steps, f"Lava stock models, {x.shape[0]} sample(s)", unit="steps") as bar:
        chk = check_on_stock_models(art, x, progress=bar.update)
    pred = [int(c) for c in chk.logits.mean(0).argmax(-1)]
    right = f"{sum(int(p == int(t)) for p, t in zip(pred, y))}/{len(pred)} correct, " if y is not None else ""
    click.echo(f"Lava stock models (Loihi2SimCfg fixed_pt, no exception map; {chk.processes} processes, "
               f"{chk.seconds:.1f} s): {right}classes {pred}; vs loihi2-emu: {chk.output_mismatches} of "
               f"{chk.output_values:,} output values and {chk.spike_mismatches} of {chk.spikes:,} spikes differ")
    if not chk.bit_exact:
        raise DeployError("the artifact on Lava's stock models is not bit-exact with the emulator (a bug in the "
                          "toolchain; please report it with the artifact)")
