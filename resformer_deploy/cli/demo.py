"""`resformer-deploy demo [--model digits|cifar|dvsg]`: one shipped trained model through the whole
chain -- PyTorch accuracy on its held-out split, NIR export, Lava floating point (both DSSA
lowerings), Loihi 2 fixed point (Lava + the bit-exact emulator), core plan, energy, report.

`digits` runs on scikit-learn's 8x8 digits split; `cifar` and `dvsg` on the data set their
training record names, re-generated (deterministically, data.generators.recorded) under
``--data-dir`` and checked against the recorded labels before anything runs."""
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import click

from resformer_deploy.cli.checks import run_checks
from resformer_deploy.cli.common import COUNT, COUNT0
from resformer_deploy.errors import DeployError
from resformer_deploy.reporting.html import REPORT_FILES
from resformer_deploy.util.outputs import check_outputs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass(frozen=True)
class DemoModel:
    checkpoint: Path
    lava_samples: int  # default samples on Lava (float, each lowering; and fixed point)
    batch_size: int    # PyTorch evaluation batch (the 64x64 attention maps bound dvsg's)
    dssa: str          # DSSA lowerings run on float Lava
    ladder_samples: int  # held-out samples of the drift ladder's fixed-point rung (0: all)


# dvsg at 64x64, T=16 (6.5 M neurons a step): the synaptic lowering's product neurons need ~43 GiB
# on lava-cpu even for one sample (the preflight estimate), so its demo runs fused; the ladder's
# per-neuron records of all 359 held-out samples would take 43.7 GiB (check_ladder_recording), so
# the ladder runs on 48 of them and the whole split streams through the emulator (evaluate); with 96
# the emulator rung's spike record and working memory (15.1 GiB, its estimate) did not fit beside
# the 7.9 GiB the ladder holds by then (budget 11.4 GiB on a 24 GiB machine)
DEMO_MODELS = {
    "digits": DemoModel(EXAMPLES / "digits" / "digits_resformer.pt", 20, 64, "both", 0),
    "cifar": DemoModel(EXAMPLES / "cifar_digits" / "cifar_digits_resformer.pt", 4, 64, "both", 0),
    "dvsg": DemoModel(EXAMPLES / "dvs_digits" / "dvs_digits_resformer.pt", 2, 16, "fused", 48),
}
DEFAULT_DIGITS_CHECKPOINT = DEMO_MODELS["digits"].checkpoint


@dataclass
class DemoSplit:
    x: object          # torch.Tensor: the held-out inputs, preprocessed
    y: object          # torch.Tensor: their labels
    source: str        # what they are
    calibration: object = None  # flows.fixed_point.CalibrationData (None: the flow's choice, digits training)
    given: bool = False  # the inputs are handed to the drift ladder (else it takes the digits split itself)
    data: object = None  # analysis.data_inputs.ModelData of a generated split (streamed by evaluate)


def _digits_split(ck, checkpoint, rec, check) -> DemoSplit:
    from resformer_deploy.data.digits import load_digits_split
    split = load_digits_split()
    check(len(split.y_test), "the digits held-out split")
    fp = str(rec.get("split", {}).get("test_index_sha256") or "")
    if fp and fp != split.fingerprint():
        raise DeployError(f"{checkpoint}: held-out split differs from the one recorded at training "
                          f"(index hash {fp[:12]} vs {split.fingerprint()[:12]})")
    return DemoSplit(split.x_test, split.y_test, "digits held-out split")


def _generated_split(ck, checkpoint, rec, data_dir, calib_samples, check) -> DemoSplit:
    from resformer_deploy.analysis.data_inputs import DataArgs
    from resformer_deploy.cli.data import open_data_args
    from resformer_deploy.data.generators.recorded import ensure_generated, labels_sha256, recipe

    want = recipe(rec.get("dataset"), checkpoint)
    if rec.get("n_test") is not None:  # the options checked before minutes of generation
        check(int(rec["n_test"]), f"{want['generator'].rsplit('.', 1)[-1]} (training record)")
    root = ensure_generated(want, Path(data_dir) / want["generator"].rsplit(".", 1)[-1], checkpoint,
                            say=click.echo)
    preset = (rec.get("preset") or {}).get("preset", "auto")
    args = DataArgs(data=str(root), preset=preset, calib_data=str(root), calib_split="train")
    md, cal = open_data_args(args, ck.config, ck.variant, calib_samples, True)
    x, y, _ = md.take(len(md.source), "demo")
    want_labels = rec.get("test_label_sha256")
    if want_labels and labels_sha256(y) != want_labels:
        raise DeployError(f"{checkpoint}: the labels of {md.source.describe()} differ from those recorded at "
                          f"training (sha256 {labels_sha256(y)[:12]} vs {want_labels[:12]})")
    return DemoSplit(x, y, md.describe(), cal, given=True, data=md)


def demo_split(ck, checkpoint, data_dir, calib_samples: int = 128, check=lambda n, what: None) -> DemoSplit:
    """The held-out split a checkpoint was trained for: the digits split for a 1x8x8 digits
    model, else the generated data set its training record names. ``check(n, what)``: called
    with the split's size as soon as it is known (before any data is generated)."""
    c = ck.config
    from resformer_deploy.model.checkpoint import evaluation_record
    rec = evaluation_record(ck.meta)  # fields of the expected types only: the file may hold anything
    if (c.in_channels, c.img_size, c.num_classes) == (1, 8, 10):
        return _digits_split(ck, checkpoint, rec, check)
    if not (isinstance(rec.get("dataset"), dict) and rec["dataset"].get("generator")):
        raise DeployError(f"{checkpoint}: variant '{ck.variant}' ({c.in_channels}x{c.img_size}x{c.img_size} input, "
                          f"{c.num_classes} classes); demo needs a model of the digits split (1x8x8 input, 10 "
                          f"classes) or one whose training record names a generated data set (evaluation.dataset."
                          f"generator), e.g. the shipped {', '.join(m.checkpoint.name for m in DEMO_MODELS.values())}")
    return _generated_split(ck, checkpoint, rec, data_dir, calib_samples, check)


@click.command("demo")
@click.option("--model", "model_name", type=click.Choice(list(DEMO_MODELS)), default="digits", show_default=True,
              help="Shipped trained model: digits (8x8), cifar (32x32 generated images), dvsg (64x64 generated "
                   "DVS events, T=16).")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=str),
              help="Trained checkpoint instead of the shipped one of --model (digits, or with a generated "
                   "data set in its training record).")
@click.option("--batch-size", type=COUNT, help="PyTorch evaluation batch (default: 64; dvsg 16).")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=str),
              help="Also write the results as JSON to this file.")
@click.option("--lava-samples", type=COUNT0,
              help="Held-out samples run through NIR and Lava (0: PyTorch and emulator only; default: digits 20, "
                   "cifar 4, dvsg 2).")
@click.option("--dssa", type=click.Choice(["fused", "synaptic", "both"]),
              help="DSSA lowering(s) run on float Lava (default: both; dvsg fused, the synaptic one needs ~43 GiB "
                   "there); fixed point runs fused.")
@click.option("--eval-samples", type=COUNT0,
              help="Held-out samples of the drift ladder's emulator rung (0: the whole split; default: 0, dvsg 48); "
                   "with fewer, the whole split also streams through the emulator.")
@click.option("--calib-samples", type=COUNT, default=128, show_default=True,
              help="Calibration samples for the quantization (the training split of the model's data).")
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
    spec = DEMO_MODELS[model_name]
    checkpoint = checkpoint or str(spec.checkpoint)
    lava_samples = spec.lava_samples if lava_samples is None else lava_samples
    batch_size = batch_size or spec.batch_size
    dssa = dssa or spec.dssa
    eval_samples = spec.ladder_samples if eval_samples is None else eval_samples
    data_dir = data_dir or str(Path(out_dir) / "data")
    nir_path = Path(out_dir) / f"{Path(checkpoint).stem}.nir"
    check_outputs([checkpoint], files=[json_out, nir_path if lava_samples > 0 else None],
                  dirs=[out_dir, data_dir], file_sets={f"{out_dir}/report": REPORT_FILES} if fixed_point else None)
    import torch
    from resformer_deploy.model.checkpoint import evaluation_record, load_checkpoint
    from resformer_deploy.util.progress import Progress
    from resformer_deploy.reporting.tables import table, write_json
    from resformer_deploy.training.loop import accuracy, predict

    ck = load_checkpoint(checkpoint, unsafe_option=None)  # demo has no --unsafe-load: weights only

    def check(n_test, what):
        bad = [f"{opt} {n} exceeds the {n_test} held-out samples of {what}"
               for opt, n in (("--lava-samples", lava_samples), ("--eval-samples", eval_samples)) if n > n_test]
        if bad:
            raise DeployError("; ".join(bad))

    split = demo_split(ck, checkpoint, data_dir, calib_samples, check=check)
    n_test = len(split.y)
    check(n_test, split.source)
    rec = evaluation_record(ck.meta)
    c = ck.config
    click.echo(f"model: {ck.variant} from {checkpoint} (T={c.T}, {c.in_channels}x{c.img_size}x{c.img_size} "
               f"input, {c.neuron.upper()} neurons)\nheld-out data: {split.source}")
    runs_whole_split = fixed_point and whole_split and split.data is not None and 0 < eval_samples < n_test
    if fixed_point:  # every later stage sized now, not after minutes of PyTorch and Lava
        _preflight(ck, split, min(lava_samples, n_test), eval_samples or n_test, batch_size, runs_whole_split)
    with Progress(n_test, "PyTorch evaluation") as bar:
        logits = predict(ck.model, split.x, batch_size=batch_size, progress=bar.update)
    pred = logits.argmax(-1)
    acc = accuracy(pred, split.y)
    per_class = []
    for k in range(c.num_classes):
        mask = split.y == k
        per_class.append((k, int(mask.sum()), f"{100 * accuracy(pred[mask], split.y[mask]):.1f}%"))
    click.echo(table(per_class, ["class", "samples", "accuracy"]))
    recorded = rec.get("test_accuracy")
    click.echo(f"\nheld-out accuracy (PyTorch): {100 * acc:.2f}% on {len(pred)} samples"
               + (f"; recorded at training: {100 * recorded:.2f}%" if recorded is not None else ""))
    result = {"checkpoint": checkpoint, "variant": ck.variant, "data": split.source, "samples": len(pred),
              "accuracy": acc, "recorded_accuracy": recorded, "per_class": [
                  {"class": k, "samples": n, "accuracy": float(a.rstrip("%")) / 100} for k, n, a in per_class],
              "predictions": pred.tolist(), "torch_version": torch.__version__}
    n = min(lava_samples, n_test)
    if lava_samples > 0:
        from exporters.nir_io import write_nir
        from exporters.torch_to_nir import export_model
        write_nir(export_model(ck.model), nir_path)
        lowerings = ["fused", "synaptic"] if dssa == "both" else [dssa]
        click.echo(f"\nexported {nir_path} ({nir_path.stat().st_size / 1e6:.1f} MB); running {n} held-out samples "
                   f"on lava-cpu (Loihi2SimCfg floating point), DSSA {' and '.join(lowerings)}")
        reports = run_checks(ck, split.x[:n], split.source, "lava-cpu", ["float32"], dssa=lowerings)
        result["lava"] = reports
        click.echo("\nLava vs PyTorch on the same samples:")
        click.echo(table(_lava_rows(reports, pred[:n], split.y[:n], n, accuracy),
                         ["DSSA", "samples", "Lava acc", "PyTorch acc", "same class", "min layer spikes",
                          "processes", "latency", "s/sample"]))
    if fixed_point:
        quantized = []  # the ladder's quantized network: the whole split runs it (same calibration, same network)
        result["fixed_point"] = _fixed_point(ck, checkpoint, split, n, eval_samples, calib_samples, out_dir,
                                             quantized.append)
        if runs_whole_split:
            result["fixed_point"]["whole_split"] = _whole_split(ck, checkpoint, split, calib_samples, batch_size,
                                                                logits, quantized[0])
    if json_out:
        write_json(json_out, result)
        click.echo(f"wrote {json_out}")


def _preflight(ck, split: DemoSplit, lava_samples: int, eval_samples: int, batch_size: int,
               whole_split: bool) -> None:
    """The drift ladder's rungs and the whole split's streamed evaluation sized from the plan and
    refused, with the figures, before any work (analysis.drift.check_rungs_fit, check_evaluation)."""
    import torch
    from exporters.torch_to_nir import export_model
    from resformer_deploy.analysis.drift import check_rungs_fit, choose_rungs
    from resformer_deploy.analysis.evaluation import check_evaluation
    from resformer_deploy.model.precision import model_in_dtype

    def say(m):
        click.echo(f"  preflight: {m}", err=True)
    with model_in_dtype(ck.model, torch.float64) as m:
        graph = export_model(m.eval(), "float64")
    check_rungs_fit(say, choose_rungs(subset=lava_samples > 0), graph, eval_samples, lava_samples, ck.config.T,
                    "fused", 8)
    if whole_split:
        check_evaluation(graph, split.data, "loihi2-emu", T=ck.config.T, batch_size=batch_size, torch_runs=False,
                         say=lambda m: say(f"whole split: {m}"))


def _lava_rows(reports, pred, y, n, accuracy):
    import torch
    rows = []
    for rep in reports:
        ti = rep["target_info"]
        lava_acc = accuracy(torch.tensor(rep["predictions_target"]), y)
        rows.append((rep["target_options"]["dssa"], n, f"{100 * lava_acc:.2f}%", f"{100 * accuracy(pred, y):.2f}%",
                     f"{100 * rep['prediction_agreement']:.1f}%", f"{rep['min_layer_identical_pct']:.3f}%",
                     ti["processes"], ti["latency"], f"{rep['seconds']['target'] / n:.3f}"))
    return rows


def _fixed_point(ck, checkpoint, split: DemoSplit, n: int, eval_samples: int, calib_samples: int, out_dir,
                 on_quantized=None) -> dict:
    from resformer_deploy.reporting.deploy import build_report
    from resformer_deploy.reporting.drift import ladder_table
    from resformer_deploy.reporting.html import write_report_files

    ne = eval_samples or len(split.y)
    inputs: Optional[tuple] = (split.x[:ne], split.y[:ne], split.source) if split.given else None
    cal = (split.calibration.source if split.calibration is not None else
           f"{calib_samples} samples of the digits training split")
    whole = "the whole held-out split" if ne == len(split.y) else f"{ne} held-out samples"
    click.echo(f"\nLoihi 2 fixed point: quantize (calibration: {cal}), run {n} samples on loihi2-sim "
               f"(Loihi2SimCfg fixed_pt) and {whole} on the bit-accurate emulator")
    rep = build_report(ck, checkpoint, "fused", n, eval_samples, calib_samples, inputs=inputs,
                       calibration=split.calibration, say=lambda m: click.echo(f"  {m} ...", err=True),
                       on_quantized=on_quantized)
    lad, mp = rep["ladder"], rep["mapping"]
    click.echo(ladder_table(lad))
    click.echo(f"emulator bit-exact with fixed-point Lava: {lad['emulator_bit_exact_vs_lava']}; accuracy drop "
               f"{lad['accuracy_drop_pp']:+.2f} pp (goal <= {lad['goal_max_drop_pp']:g} pp); run-time "
               f"saturations: {sum(sum(v.values()) for v in lad['saturation'].values())}")
    t = mp["totals"]
    click.echo(f"Loihi 2 plan: {t['neuro_cores']} neuro cores + {t['embedded_programs']} embedded-core programs "
               f"on {t['chips']} chip(s), {len(mp['violations'])} design-rule violation(s); "
               f"{rep['energy']['fixed']['sops']:,.0f} SOPs = {rep['energy']['fixed']['energy_mJ'] * 1e3:.4f} uJ "
               f"per image")
    paths = write_report_files(Path(out_dir) / "report", rep)
    click.echo(f"report: {paths[-2]} (+ JSON and PNG figures)")
    out = {k: rep[k] for k in ("ladder", "mapping")}
    out["energy"] = {k: rep["energy"][k] for k in ("torch", "fixed")}
    return out


def _whole_split(ck, checkpoint, split: DemoSplit, calib_samples: int, batch_size: int, logits,
                 quantized=None) -> dict:
    """The whole held-out split through the bit-accurate emulator, streamed (no per-neuron
    records), beside the PyTorch model: accuracy and agreement where the ladder ran a subset.
    ``logits``: the float32 PyTorch scores of the split computed at the start (not computed again);
    ``quantized``: the ladder's quantized network, run as it is (dvsg: quantizing again took 145 s),
    else the split's calibration is quantized here."""
    from resformer_deploy.analysis.evaluation import evaluate
    from resformer_deploy.util.progress import Progress

    click.echo(f"\nfixed point on the whole held-out split ({len(split.y)} samples), streamed through loihi2-emu:")
    ev = evaluate(ck, split.data, "loihi2-emu", checkpoint=checkpoint, batch_size=batch_size,
                  calibration=split.calibration, calib_samples=calib_samples, say=click.echo, bar=Progress,
                  torch_scores=logits, artifacts=None if quantized is None else
                  {"lava_plan": quantized.plan, "quantized_net": quantized})
    click.echo(f"  emulator accuracy {100 * ev['top1']:.2f}% vs PyTorch float32 {100 * ev['torch_top1']:.2f}% "
               f"({100 * (ev['top1'] - ev['torch_top1']):+.2f} pp), same class {100 * ev['agreement_with_torch']:.2f}% "
               f"of {ev['samples']}; {ev['throughput']['samples_per_second']:.2f} samples/s")
    return {k: ev[k] for k in ("target", "samples", "top1", "torch_top1", "agreement_with_torch", "throughput",
                               "seconds", "target_info")}
