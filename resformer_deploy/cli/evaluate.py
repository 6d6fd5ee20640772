"""`resformer-deploy evaluate`: accuracy of a checkpoint on a data set, in PyTorch or on a target,
in this process or shard by shard on a Ray cluster (--engine ray): options parsed here, the job
done by resformer_deploy.api.evaluate, its result rendered here."""
import dataclasses
import os

import click

from resformer_deploy.api.evaluate import MAX_DECODE_THREADS, RETRIES, EvaluateOptions
from resformer_deploy.cli.common import (COUNT, COUNT0, calib_samples_option, checkpoint_options, data_options,
                                        dssa_option, json_out_option, lava_processes_option, load_cli_checkpoint)
from resformer_deploy.engines import ENGINES
from resformer_deploy.engines.shards import MANIFEST, SHARD_DIR
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
@dssa_option(help="DSSA lowering on Lava targets.")
@lava_processes_option
@calib_samples_option(help="Fixed-point targets: calibration samples (of --calib-data, else the flow's choice).")
@click.option("--workers", type=click.IntRange(0, 4096),
              help="In process: decoding threads (default 2; 0: decode in the main thread; at most "
                   f"{MAX_DECODE_THREADS}). --engine ray: Ray workers (default: one per CPU of the cluster; a Lava "
                   "target: one per node).")
@click.option("--engine", type=click.Choice(ENGINES), default=ENGINES[0], show_default=True,
              help="Where the samples run: in this process, or in shards on a Ray cluster.")
@click.option("--address", metavar="ADDR",
              help="--engine ray: join this Ray cluster (e.g. HEAD_IP:6379, or 'auto'); default: start a local "
                   "Ray instance for the command and stop it at the end.")
@click.option("--shard-size", type=COUNT,
              help="--engine ray: samples per shard, a multiple of --batch-size (default: 8 batches).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=str),
              help="--engine ray: keep each finished shard here (written atomically), for --resume.")
@click.option("--resume", is_flag=True,
              help="--engine ray: skip the shards of the same run already in --out-dir.")
@click.option("--retries", type=COUNT0,
              help=f"--engine ray: times a worker that dies is restarted and its shard retried (default {RETRIES}).")
@click.option("--torch-precision", type=click.Choice(["auto", "float32", "float64"]), default="auto",
              show_default=True, help="PyTorch model beside a target (agreement): auto = float64 beside a float "
                                      "target (exact agreement), float32 beside a fixed-point one.")
@json_out_option(help="Write the results, per-sample predictions included, as JSON.")
def evaluate_cmd(checkpoint, variant, img_size, T, num_classes, unsafe_load, data_args, target, limit, batch_size,
                 dssa, lava_processes, calib_samples, workers, engine, address, shard_size, out_dir, resume, retries,
                 torch_precision, json_out):
    """Top-1/top-5 and per-class accuracy of CHECKPOINT on --data, on a target.

    Streams the data set in batches in index order (memory does not grow with it), with the
    official evaluation preprocessing (--preset auto). On a target other than 'torch' the graph
    is exported and prepared once (fixed point: quantized on --calib-data, never the evaluation
    samples), every batch runs on it, and each prediction is compared with PyTorch's. With
    --engine ray the data set is cut into shards run by Ray workers, the setup prepared once here
    and shipped once per worker; the merged result is the in-process one.
    """
    opts = EvaluateOptions(target=target, limit=limit, batch_size=batch_size, dssa=dssa, calib_samples=calib_samples,
                           workers=workers, torch_precision=torch_precision, engine=engine, address=address,
                           shard_size=shard_size, out_dir=out_dir, resume=resume, retries=retries,
                           lava_processes=lava_processes)
    opts.check()
    # a Ray run's manifest and shards are read back on --resume: inputs no other output may replace
    run_files = [os.path.join(out_dir, MANIFEST), os.path.join(out_dir, SHARD_DIR)] if opts.on_ray and out_dir else []
    check_outputs([checkpoint, *data_args.paths(), *run_files], files=[json_out], dirs=[out_dir])
    from resformer_deploy import api
    from resformer_deploy.reporting.tables import write_json
    from resformer_deploy.util.progress import Progress

    if not opts.on_ray and limit is not None:  # a folder scan stops at --limit (Ray workers reopen the whole set)
        data_args = dataclasses.replace(data_args, scan_limit=limit)
    quantizes = api.target_quantizes(target)  # unknown target: before any work
    ck = load_cli_checkpoint(checkpoint, variant, img_size, T, num_classes, unsafe_load)
    md, cal = api.open_data(data_args, ck, calib_samples, quantizes, f"target '{target}' runs floating point",
                            say=click.echo)
    n = len(md.source) if limit is None else min(limit, len(md.source))
    click.echo(f"evaluate {ck.variant} on target '{target}': {n:,} of {len(md.source):,} samples, batches of "
               f"{min(batch_size, max(n, 1)):,}, T={ck.config.T:,}")  # a batch never holds more than n
    res = api.evaluate(ck, md, opts, calibration=cal, checkpoint=checkpoint, say=click.echo,
                       warn=lambda m: click.echo(m, err=True), bar=Progress)
    click.echo(summary_text(res))
    if res.engine is not None:
        click.echo(engine_text(res.engine))
    for line in skipped_warnings([reason for _, reason in res.skipped]):
        click.echo(line, err=True)
    if json_out:
        write_json(json_out, res.to_json())
        click.echo(f"wrote {json_out}")


def skipped_warnings(reasons) -> list:
    """stderr lines for the samples --skip-bad left out (each reason names its file): the first
    SKIPPED_SHOWN, then how many more (all of them are in the JSON)."""
    lines = [f"warning: skipped {r}" for r in reasons[:SKIPPED_SHOWN]]
    if len(reasons) > SKIPPED_SHOWN:
        lines.append(f"warning: ... {len(reasons) - SKIPPED_SHOWN} more skipped (listed in the JSON)")
    return lines


def engine_text(engine: dict) -> str:
    """Shards, Ray's own times and the throughput per worker and per node of a sharded run."""
    from resformer_deploy.reporting.tables import table
    sec = engine["seconds"]
    rate = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
    head = (f"shards: {engine['shards_run']} run, {engine['shards_resumed']} resumed, of {engine['shards']} "
            f"(<= {engine['shard_size']} samples)")
    if not engine["shards_run"]:
        return head
    head += (f"; Ray {engine['address']}: start {sec['ray_start']:.1f} s, workers ready {sec['workers_ready']:.1f} s, "
             f"shards {sec['shards']:.1f} s, stop {sec['ray_stop']:.1f} s")
    workers = table([(w["worker"], w["host"], w["pid"], w["shards"], w["samples"], f"{w['seconds']:.1f}",
                      rate(w["samples_per_second"]), "yes" if w["restarted"] else "")
                     for w in engine["per_worker"]],
                    ["worker", "host", "pid", "shards", "samples", "busy s", "samples/s", "restarted"])
    nodes = table([(nd["node"], nd["host"], nd["ip"], nd["workers"], nd["samples"], rate(nd["samples_per_second"]))
                   for nd in engine["per_node"]], ["node", "host", "ip", "workers", "samples", "samples/s"])
    # a shard run again (its node lost, its worker's process dead): which, why, and where it completed
    retried = [f"retried: {r['shard']}: {'; '.join(r['reasons'])}; completed on node {r['completed_on']['node']} "
               f"({r['completed_on']['host']}, raylet {r['completed_on']['raylet']})"
               for r in engine.get("retried", [])]
    return "\n".join([head, workers, nodes, *retried])


def summary_text(res) -> str:
    """The metrics table (and per-class table) of an evaluation (api.EvaluationResult)."""
    from resformer_deploy.reporting.tables import table
    pct = lambda v: "" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    tp = res.throughput
    rows = [("samples", f"{res.samples:,}" + (f" ({len(res.skipped)} skipped)" if res.skipped else "")),
            ("top-1", pct(res.top1)), (f"top-{res.top5_k}", pct(res.top5))]
    if res.agreement_with_torch is not None:
        rows += [(f"PyTorch top-1 ({res.torch_precision})", pct(res.torch_top1)),
                 ("same class as PyTorch", pct(res.agreement_with_torch))]
    rows += [("throughput", f"{tp.samples_per_second:.2f} samples/s" if tp.samples_per_second else ""),
             ("data loading", f"{pct(tp.loading_share)} of {tp.wall_seconds:.1f} s waiting for data")]
    out = [table(rows, ["metric", "value"])]
    classes = res.per_class
    present = [c for c in classes if c.samples]  # e.g. a few ImageNet classes of the 1000
    shown = classes if len(classes) <= PER_CLASS_ROWS else present if len(present) <= PER_CLASS_ROWS else None
    wnid = bool(classes) and classes[0].wnid is not None
    if shown is None:
        out.append(f"per-class accuracy of {len(classes):,} classes: in the JSON (--json-out)")
    else:
        if shown is present and len(shown) < len(classes):
            out.append(f"per-class accuracy of the {len(present):,} classes with samples (of {len(classes):,}):")
        out.append(table([(c.index,) + ((c.wnid,) if wnid else ()) + (c.name, c.samples, pct(c.accuracy))
                          for c in shown], ["class"] + (["wnid"] if wnid else []) + ["name", "samples", "top-1"]))
    return "\n".join(out)
