"""`resformer-deploy evaluate`: accuracy of a checkpoint on a data set, in PyTorch or on a target
(resformer_deploy/analysis/evaluation.py)."""
import click

from resformer_deploy.cli.common import COUNT, checkpoint_options, data_options, load_cli_checkpoint
from resformer_deploy.util.outputs import check_outputs

PER_CLASS_ROWS = 20  # more classes than this: per-class accuracy in the JSON only
SKIPPED_SHOWN = 10


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=str))
@checkpoint_options
@data_options(required=True)
@click.option("--target", default="torch", show_default=True,
              help="'torch' (the PyTorch model) or a registered target: reference, loihi2-emu, lava-cpu, "
                   "loihi2-sim, ...")
@click.option("--limit", type=COUNT, help="Evaluate the first N samples only.")
@click.option("--batch-size", type=COUNT, default=32, show_default=True,
              help="Samples per batch (memory is bounded by it, not by the data set).")
@click.option("--dssa", type=click.Choice(["fused", "synaptic"]), default="fused", show_default=True,
              help="DSSA lowering on Lava targets.")
@click.option("--calib-samples", type=COUNT, default=128, show_default=True,
              help="Fixed-point targets: calibration samples (of --calib-data, else the flow's choice).")
@click.option("--workers", type=click.IntRange(0, 64), default=2, show_default=True,
              help="Decoding threads (0: decode in the main thread).")
@click.option("--torch-precision", type=click.Choice(["auto", "float32", "float64"]), default="auto",
              show_default=True, help="PyTorch model beside a target (agreement): auto = float64 beside a float "
                                      "target (exact agreement), float32 beside a fixed-point one.")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=str),
              help="Write the results, per-sample predictions included, as JSON.")
def evaluate_cmd(checkpoint, variant, img_size, T, num_classes, unsafe_load, data_args, target, limit, batch_size,
                 dssa, calib_samples, workers, torch_precision, json_out):
    """Top-1/top-5 and per-class accuracy of CHECKPOINT on --data, on a target.

    Streams the data set in batches in index order (memory does not grow with it), with the
    official evaluation preprocessing (--preset auto). On a target other than 'torch' the graph
    is exported and prepared once (fixed point: quantized on --calib-data, never the evaluation
    samples), every batch runs on it, and each prediction is compared with PyTorch's.
    """
    check_outputs([checkpoint, *data_args.paths()], files=[json_out])
    from targets import get_target
    from resformer_deploy.analysis.evaluation import TORCH, evaluate
    from resformer_deploy.cli.data import open_data_args
    from resformer_deploy.reporting.tables import write_json
    from resformer_deploy.util.progress import Progress

    caps = None if target == TORCH else get_target(target).capabilities  # unknown target: before any work
    ck = load_cli_checkpoint(checkpoint, variant, img_size, T, num_classes, unsafe_load)
    quantizes = caps is not None and caps.needs_quantized_net
    md, cal = open_data_args(data_args, ck.config, ck.variant, calib_samples, quantizes,
                             f"target '{target}' runs floating point")
    n = len(md.source) if limit is None else min(limit, len(md.source))
    click.echo(f"evaluate {ck.variant} on target '{target}': {n:,} of {len(md.source):,} samples, batches of "
               f"{batch_size}, T={ck.config.T}")
    rep = evaluate(ck, md, target, checkpoint=checkpoint, limit=limit, batch_size=batch_size, dssa=dssa,
                   calibration=cal, calib_samples=calib_samples, workers=workers, torch_precision=torch_precision,
                   say=click.echo, bar=Progress)
    click.echo(summary_text(rep))
    for s in rep["skipped"][:SKIPPED_SHOWN]:
        click.echo(f"warning: skipped {s['reason']}", err=True)
    if len(rep["skipped"]) > SKIPPED_SHOWN:
        click.echo(f"warning: ... {len(rep['skipped']) - SKIPPED_SHOWN} more skipped (listed in the JSON)", err=True)
    if json_out:
        write_json(json_out, rep)
        click.echo(f"wrote {json_out}")


def summary_text(rep: dict) -> str:
    """The metrics table (and per-class table) of an evaluation record."""
    from resformer_deploy.reporting.tables import table
    pct = lambda v: "" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    tp = rep["throughput"]
    rows = [("samples", f"{rep['samples']:,}" + (f" ({len(rep['skipped'])} skipped)" if rep["skipped"] else "")),
            ("top-1", pct(rep["top1"])), (f"top-{rep['top5_k']}", pct(rep["top5"]))]
    if rep["agreement_with_torch"] is not None:
        rows += [(f"PyTorch top-1 ({rep['torch_precision']})", pct(rep["torch_top1"])),
                 ("same class as PyTorch", pct(rep["agreement_with_torch"]))]
    rows += [("throughput", f"{tp['samples_per_second']:.2f} samples/s" if tp["samples_per_second"] else ""),
             ("data loading", f"{pct(tp['loading_share'])} of {tp['wall_seconds']:.1f} s waiting for data")]
    out = [table(rows, ["metric", "value"])]
    classes = rep["per_class"]
    if len(classes) <= PER_CLASS_ROWS:
        out.append(table([(c["class"], c["name"], c["samples"], pct(c["accuracy"])) for c in classes],
                         ["class", "name", "samples", "top-1"]))
    else:
        out.append(f"per-class accuracy of {len(classes):,} classes: in the JSON (--json-out)")
    return "\n".join(out)
