"""`resformer-deploy demo [--model digits|cifar|dvsg]`: one shipped trained model through the whole
chain (resformer_deploy.api.demo), each stage rendered here as it finishes."""
import click

from resformer_deploy.api.demo import DEMO_MODELS
from resformer_deploy.cli.common import COUNT, COUNT0, calib_samples_option, json_out_option
from resformer_deploy.reporting.html import REPORT_FILES
from resformer_deploy.util.outputs import check_outputs


@click.command("demo")
@click.option("--model", "model_name", type=click.Choice(list(DEMO_MODELS)), default="digits", show_default=True,
              help="Shipped trained model: digits (8x8), cifar (32x32 generated images), dvsg (64x64 generated "
                   "DVS events, T=16).")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=str),
              help="Trained checkpoint instead of the shipped one of --model (digits, or with a generated "
                   "data set in its training record).")
@click.option("--batch-size", type=COUNT, help="PyTorch evaluation batch (default: 64; dvsg 16).")
@json_out_option(help="Also write the results as JSON to this file.")
@click.option("--lava-samples", type=COUNT0,
              help="Held-out samples run through NIR and Lava (0: PyTorch and emulator only; default: digits 20, "
                   "cifar 4, dvsg 2).")
@click.option("--dssa", type=click.Choice(["fused", "synaptic", "both"]),
              help="DSSA lowering(s) run on float Lava (default: both; dvsg fused, the synaptic one needs ~43 GiB "
                   "there); fixed point runs fused.")
@click.option("--eval-samples", type=COUNT0,
              help="Held-out samples of the drift ladder's emulator rung (0: the whole split; default: 0, dvsg 48); "
                   "with fewer, the whole split also streams through the emulator.")
@calib_samples_option(help="Calibration samples for the quantization (the training split of the model's data).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=str), default="build/demo",
              show_default=True, help="Where the exported NIR file and the report are written.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=str),
              help="Where generated data sets are kept and reused (default: OUT_DIR/data).")
@click.option("--fixed-point/--no-fixed-point", default=True, show_default=True,
              help="Also quantize for Loihi 2, run fixed point (Lava + emulator) and write the report.")
@click.option("--whole-split/--no-whole-split", default=True, show_default=True,
              help="When the ladder runs fewer held-out samples, stream the whole split through the emulator.")
def demo(model_name, checkpoint, batch_size, json_out, lava_samples, dssa, eval_samples, calib_samples, out_dir,
         data_dir, fixed_point, whole_split):
    """The whole pipeline on a shipped trained model: PyTorch accuracy on its held-out split, export
    to NIR, run on Lava (both DSSA lowerings), Loihi 2 fixed point, accuracy and equivalence tables."""
    from resformer_deploy import api
    from resformer_deploy.api.options import Messages
    from resformer_deploy.reporting.tables import write_json
    from resformer_deploy.util.progress import Progress

    o = api.DemoOptions(model_name, checkpoint, batch_size, lava_samples, dssa, eval_samples, calib_samples, out_dir,
                        data_dir, fixed_point, whole_split).resolved()
    check_outputs([o.checkpoint], files=[json_out, o.nir_path if o.lava_samples > 0 else None],
                  dirs=[out_dir, o.data_dir], file_sets={f"{out_dir}/report": REPORT_FILES} if fixed_point else None)
    result = api.demo(o, Messages(say=click.echo, note=lambda m: click.echo(m, err=True), bars=Progress),
                      show=lambda stage: click.echo(stage_text(stage)))
    if json_out:
        write_json(json_out, result.to_json())
        click.echo(f"wrote {json_out}")


def stage_text(stage) -> str:
    """A demo stage's typed result as the lines the command prints."""
    from resformer_deploy import api
    from resformer_deploy.reporting.tables import table
    if isinstance(stage, api.DemoSetup):
        c = stage.config
        return (f"model: {stage.variant} from {stage.checkpoint} (T={c.T}, {c.in_channels}x{c.img_size}x{c.img_size} "
                f"input, {c.neuron.upper()} neurons)\nheld-out data: {stage.data}")
    if isinstance(stage, api.TorchAccuracy):
        rec = stage.recorded_accuracy
        return (table([(k.index, k.samples, f"{100 * k.accuracy:.1f}%") for k in stage.per_class],
                      ["class", "samples", "accuracy"])
                + f"\n\nheld-out accuracy (PyTorch): {100 * stage.accuracy:.2f}% on {stage.samples} samples"
                + (f"; recorded at training: {100 * rec:.2f}%" if rec is not None else ""))
    if isinstance(stage, api.LavaStart):
        return (f"\nexported {stage.nir_path} ({stage.nir_bytes / 1e6:.1f} MB); running {stage.samples} held-out "
                f"samples on {stage.target} (Loihi2SimCfg floating point), DSSA {' and '.join(stage.lowerings)}")
    if isinstance(stage, tuple):  # the Lava runs, one per lowering
        return "\nLava vs PyTorch on the same samples:\n" + table(
            [(r.dssa, r.samples, f"{100 * r.accuracy:.2f}%", f"{100 * r.torch_accuracy:.2f}%",
              f"{100 * r.prediction_agreement:.1f}%", f"{r.min_layer_identical_pct:.3f}%", r.processes, r.latency,
              f"{r.seconds_per_sample:.3f}") for r in stage],
            ["DSSA", "samples", "Lava acc", "PyTorch acc", "same class", "min layer spikes", "processes", "latency",
             "s/sample"])
    if isinstance(stage, api.FixedPointStart):
        whole = "the whole held-out split" if stage.whole else f"{stage.ladder_samples} held-out samples"
        return (f"\nLoihi 2 fixed point: quantize (calibration: {stage.calibration}), run {stage.samples} samples on "
                f"{stage.check_target} (Loihi2SimCfg fixed_pt) and {whole} on the bit-accurate emulator")
    if isinstance(stage, api.FixedPointResult):
        return fixed_point_text(stage)
    if isinstance(stage, api.WholeSplitStart):
        return (f"\nfixed point on the whole held-out split ({stage.samples} samples), streamed through "
                f"{stage.target}:")
    if isinstance(stage, api.WholeSplit):
        return (f"  emulator accuracy {100 * stage.top1:.2f}% vs PyTorch float32 {100 * stage.torch_top1:.2f}% "
                f"({100 * (stage.top1 - stage.torch_top1):+.2f} pp), same class "
                f"{100 * stage.agreement_with_torch:.2f}% of {stage.samples}; {stage.samples_per_second:.2f} samples/s")
    from resformer_deploy.cli.checks import check_text  # a verification record of one Lava run
    return check_text(stage, stage.precision, stage.target_options.get("dssa"))


def fixed_point_text(fp) -> str:
    from resformer_deploy.reporting.drift import ladder_table
    lad, mp = fp.ladder, fp.mapping
    t, fixed = mp.plan.totals, fp.energy["fixed"]
    return "\n".join([
        ladder_table(lad),
        f"emulator bit-exact with fixed-point Lava: {lad.emulator_bit_exact_vs_lava}; accuracy drop "
        f"{lad.accuracy_drop_pp:+.2f} pp (goal <= {lad.goal_max_drop_pp:g} pp); run-time "
        f"saturations: {sum(sum(v.values()) for v in lad.saturation.values())}",
        f"Loihi 2 plan: {t.neuro_cores} neuro cores + {t.embedded_programs} embedded-core programs "
        f"on {t.chips} chip(s), {len(mp.violations)} design-rule violation(s); "
        f"{fixed.sops:,.0f} SOPs = {fixed.energy_mJ * 1e3:.4f} uJ per image",
        f"report: {fp.report_paths[-2]} (+ JSON and PNG figures)"])
