"""`resformer-deploy` command line.

Every user error (``DeployError``) is printed as one line ``error: ...`` with
exit code 2; a bug (``InternalError`` or any other exception) as one line
``error: internal error: ...`` with exit code 1, its traceback under ``--debug``
(cli.failures); Ctrl-C exits 130. Machine-readable output: ``--json``.
"""
import json
import signal
import sys
from pathlib import Path

import click

from resformer_deploy import __version__
from resformer_deploy.cli.checks import run_checks
from resformer_deploy.cli.common import (COUNT, COUNT0, SEED, checkpoint_options, data_options, given,
                                         load_cli_checkpoint)
from resformer_deploy.cli.failures import CLICK_CONTROL, report_failure
from resformer_deploy.errors import DEBUG_ENV, DeployError, one_line
from resformer_deploy.util.outputs import check_outputs
from resformer_deploy.reporting.html import REPORT_FILES


class Terminated(BaseException):
    """SIGTERM/SIGHUP turned into an exception, so every ``finally`` (temp files, Lava workers)
    runs as it does for Ctrl-C; Python's default for these signals exits without cleanup."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received = []  # signals seen: an exception raised inside a __del__/GC callback is swallowed


def _raise_terminated(signum, _frame):
    _received.append(signum)
    raise Terminated(signum)


class Group(click.Group):
    def list_commands(self, ctx):
        """`deploy` first (what a user of a deployment tool looks for), then the rest by name."""
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: (n != "deploy", n))

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Click's usage errors (bad option values, missing arguments) as one line ``error: ...``
        with exit 2, like every other user error, instead of its Usage/Try/Error block.

        Runs click's main with ``standalone_mode=False``: it then raises ClickException and Abort
        and *returns* the code of an Exit (``--help``, ``--version``, ``ctx.exit`` in ``invoke``
        below) instead of calling sys.exit (click/core.py, ``Command.main``). CliRunner.invoke and
        the console script both call ``main()``, so both get this handling."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:  # bare `resformer-deploy`: the help, as click shows it
            e.show()
            sys.exit(e.exit_code)
        except click.UsageError as e:  # BadParameter, MissingParameter, NoSuchOption, ...
            cmd = e.ctx.command_path if e.ctx else "resformer-deploy"
            click.echo(f"error: {cmd}: {one_line(e.format_message())} (see '{cmd} --help')", err=True)
            sys.exit(2)
        except click.ClickException as e:  # e.g. FileError
            click.echo(f"error: {one_line(e.format_message())}", err=True)
            sys.exit(e.exit_code)
        except click.Abort as e:  # Ctrl-C / EOF while click itself prompts or parses
            if isinstance(e.__context__, KeyboardInterrupt):
                click.echo("error: interrupted (SIGINT)", err=True)
                sys.exit(130)
            click.echo("error: aborted", err=True)
            sys.exit(1)
        # our commands return None; an int is the code of an Exit that click returned
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx):
        caught = (signal.SIGTERM, signal.SIGHUP)
        _received.clear()
        previous = {s: signal.signal(s, _raise_terminated) for s in caught}
        try:
            rv = super().invoke(ctx)
            if _received:  # the exception was swallowed somewhere: the user still asked to stop
                raise Terminated(_received[0])
            return rv
        except CLICK_CONTROL:  # ctx.exit, click.BadParameter, ... in a command: main() handles them
            raise
        except Exception as e:  # a DeployError (user error, exit 2), or a bug (exit 1)
            ctx.exit(report_failure(ctx, e))
        except KeyboardInterrupt:
            click.echo("error: interrupted (SIGINT)", err=True)
            ctx.exit(130)
        except Terminated as e:
            click.echo(f"error: terminated by {e}", err=True)
            ctx.exit(128 + e.signum)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


@click.group("resformer-deploy", cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="resformer-deploy")
@click.option("--debug", is_flag=True, envvar=DEBUG_ENV, show_envvar=True,
              help="On an error, print its traceback before the one-line message.")
def main(debug):
    """Deploy trained SpikingResformer models to neuromorphic targets.

    Pipeline: checkpoint -> model -> NIR -> passes -> Lava -> target -> report.
    """


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=str))
@checkpoint_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def info(checkpoint, variant, img_size, T, num_classes, unsafe_load, as_json):
    """Describe a checkpoint: variant, parameter counts, T, image size, firing-rate buffers."""
    from resformer_deploy.model.summary import checkpoint_summary
    from resformer_deploy.reporting.tables import table

    ck = load_cli_checkpoint(checkpoint, variant, img_size, T, num_classes, unsafe_load)
    s = checkpoint_summary(ck)
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    c = s["config"]
    join = lambda v: "/".join(str(i) for i in v)
    official = s["official_params_ex_bn"]
    check = "" if official is None else (
        f"  (official {official:,}: {'match' if official == s['params_ex_bn'] else 'MISMATCH'})")
    lines = [
        ("checkpoint", s["checkpoint"]),
        ("variant", f"{s['variant']} (config {s['config_source']})"),
        ("architecture", f"planes {join(c['planes'])}, heads {join(c['num_heads'])}, patches "
                         f"{join(c['patch_sizes'])}, blocks {join(c['blocks'])}, stem {c['stem']}, "
                         f"neuron {c['neuron'].upper()}, group size {c['group_size']}"),
        ("input", f"{c['in_channels']}x{c['img_size']}x{c['img_size']}, T={c['T']}; stage sizes "
                  f"{join(s['stage_sizes'])}, DSSA lenth {join(s['lenths'])}"),
        ("classes", c["num_classes"]),
        ("parameters", f"{s['params_ex_bn']:,} excluding BatchNorm, {s['params_total']:,} total{check}"),
        ("state_dict", f"{s['state_dict_keys']} keys ({s['state_dict_parameters']} parameters, "
                       f"{s['state_dict_buffers']} buffers)"),
    ]
    counters = [f"epoch {s['epoch']}" if s["epoch"] is not None else "",
                f"max_acc1 {s['max_acc1']:.2f}" if s["max_acc1"] is not None else ""]
    if any(counters):
        lines.append(("training", ", ".join(c for c in counters if c)))
    ev = s["recorded_evaluation"]  # checked field by field in model/summary.py
    if ev:
        n = "" if ev["n_test"] is None else f" on {ev['n_test']:,} held-out samples"
        lines.append(("recorded eval", f"{100 * ev['test_accuracy']:.2f}%{n}"
                                       + (f" ({ev['dataset']})" if ev["dataset"] else "")))
    width = max(len(k) for k, _ in lines)
    click.echo("\n".join(f"{k.ljust(width)}  {v}" for k, v in lines))
    fmt = lambda v: "n/a" if v is None else " ".join(f"{x:.4g}" for x in v)
    rows = [(r["layer"], r["heads"], fmt(r["firing_rate_x"]), fmt(r["firing_rate_attn"]), fmt(r["c1"]),
             fmt(r["c2"])) for r in s["firing_rates"]]
    click.echo("\nDSSA firing-rate buffers (per head) and attention scales c1, c2:")
    click.echo(table(rows, ["layer", "heads", "rate_x", "rate_attn", "c1", "c2"]))
    if not s["calibrated"]:
        click.echo("\nwarning: some firing-rate buffers are zero/non-finite; the model cannot run in eval "
                   "mode until calibrated (resformer_deploy.model.calibration).", err=True)
    for note in s["notes"]:
        click.echo(f"note: {note}", err=True)


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="NIR file to write (atomically).")
@checkpoint_options
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True,
              help="Storage type of weights (BN folding is done in float64).")
@click.option("--form", type=click.Choice(["extension", "standard"]), default="extension", show_default=True,
              help="'standard': dense 1-D graph with DSSA lowered to standard NIR nodes (tiny models only).")
@click.option("--compress", is_flag=True, help="gzip the HDF5 datasets (smaller, slower).")
def export(checkpoint, output, variant, img_size, T, num_classes, unsafe_load, dtype, form, compress):
    """Export a checkpoint to a NIR (HDF5) file in deployment-normal form."""
    check_outputs([checkpoint], files=[output])
    import time
    from pathlib import Path
    from exporters.nir_io import write_nir
    from exporters.torch_to_nir import export_model
    from resformer_deploy.analysis.nir_summary import graph_summary
    from resformer_deploy.analysis.equivalence import lower

    t0 = time.time()
    ck = load_cli_checkpoint(checkpoint, variant, img_size, T, num_classes, unsafe_load)
    graph = lower(export_model(ck.model, dtype), "extension" if form == "extension" else "standard")
    nbytes = write_nir(graph, output, compression="gzip" if compress else None)
    s = graph_summary(graph)
    click.echo(f"wrote {output}: {s['nodes']} nodes, {s['edges']} edges, {s['params']:,} parameters, "
               f"{s['neurons']:,} neurons per step, {len(s['extension_nodes'])} extension nodes, "
               f"{nbytes / 1e6:.1f} MB in {time.time() - t0:.1f} s "
               f"(variant {ck.variant}, T={ck.config.T}, {ck.config.img_size}x{ck.config.img_size})")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect(model, as_json):
    """Table of a NIR file's nodes (type, shape, parameters, partition) and totals."""
    from exporters.nir_io import read_nir
    from resformer_deploy.analysis.nir_summary import graph_summary
    from resformer_deploy.reporting.tables import table

    s = graph_summary(read_nir(model))
    if as_json:
        click.echo(json.dumps(s, indent=2, default=str))
        return
    rows = [(r["node"], r["type"].replace("resformer_deploy.", "ext:"), "x".join(map(str, r["shape"])),
             f"{r['params']:,}", f"{r['neurons']:,}" if r["neurons"] else "", r["fan_in"], r["partition"],
             r["role"]) for r in s["table"]]
    click.echo(table(rows, ["node", "type", "shape", "params", "neurons", "in", "partition", "role"]))
    meta = s["metadata"]
    click.echo(f"\n{s['nodes']} nodes, {s['edges']} edges; {s['params']:,} parameters "
               f"({s['params_neuromorphic']:,} neuromorphic, {s['params_host']:,} host); "
               f"{s['neurons']:,} neurons per step; extension nodes: {len(s['extension_nodes'])}")
    click.echo("types: " + ", ".join(f"{k} {v}" for k, v in sorted(s["types"].items())))
    if meta.get("format"):
        d = meta.get("discretisation", {})
        click.echo(f"model: {meta.get('model')} '{meta.get('variant')}', T={meta.get('time_steps')}, "
                   f"dt={d.get('dt')}, threshold test '{d.get('threshold_test')}', {d.get('reset')}")


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=str))
@checkpoint_options
@click.option("--target", default="reference", show_default=True, help="Registered target to run.")
@click.option("--samples", type=COUNT, default=8, show_default=True,
              help="Samples to verify; with a fixed-point target it bounds every rung of the drift ladder whose own "
                   "count (--eval-samples, --lava-samples) is not given. A default that does not fit the memory "
                   "budget is lowered to what fits (and said so).")
@click.option("--precision", type=click.Choice(["float64", "float32", "both"]), default="both",
              show_default=True, help="float64 proves graph equivalence; float32 shows deployment rounding.")
@click.option("--form", type=click.Choice(["extension", "standard"]), default="extension", show_default=True)
@click.option("--dssa", type=click.Choice(["fused", "synaptic", "both"]), default="both", show_default=True,
              help="DSSA lowering on Lava targets.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of random inputs (non-digits).")
@click.option("--lava-samples", type=COUNT0, default=10, show_default=True,
              help="loihi2-sim: samples run on float and fixed-point Lava.")
@click.option("--eval-samples", type=COUNT0, default=0, show_default=True,
              help="loihi2-sim: samples for the fixed-point accuracy (0: all of --data, or the full held-out "
                   "digits split).")
@click.option("--calib-samples", type=COUNT, default=128, show_default=True,
              help="loihi2-sim: calibration samples (--calib-data, or the digits training split) for the "
                   "quantization scales.")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=str))
@data_options()
def verify(checkpoint, variant, img_size, T, num_classes, unsafe_load, target, samples, precision, form, dssa, seed,
           lava_samples, eval_samples, calib_samples, json_out, data_args):
    """Export, run on a target and compare every LIF layer with the PyTorch model.

    With --target loihi2-sim: the drift ladder PyTorch float -> float Lava -> fixed-point Lava
    (quantized for Loihi 2), with the fixed-point accuracy on the full held-out split from the
    bit-accurate emulator, which is checked against the fixed-point Lava run spike for spike.
    """
    check_outputs([checkpoint, *data_args.paths()], files=[json_out])
    from targets import get_target
    from resformer_deploy.reporting.tables import write_json
    from resformer_deploy.analysis.equivalence import verification_inputs
    from resformer_deploy.cli.data import ladder_inputs, open_data_args

    caps = get_target(target).capabilities  # unknown target: fail before any work starts
    ck = load_cli_checkpoint(checkpoint, variant, img_size, T, num_classes, unsafe_load)
    md, cal = open_data_args(data_args, ck.config, ck.variant, calib_samples, caps.needs_quantized_net,
                             f"target '{target}' runs floating point")
    if caps.needs_quantized_net:  # fixed point: the drift ladder, with Lava rungs on a Lava target
        from resformer_deploy.analysis.drift import default_eval_count, rungs_by_capability
        from resformer_deploy.cli.drift import fit_counts, ladder_asked, run_drift
        asked = ladder_asked()
        if given("samples"):  # one --samples bounds every rung whose own count is not given
            if "eval" not in asked:
                eval_samples = min(samples, len(md.source) if md else
                                   default_eval_count((ck.config.in_channels, ck.config.img_size, ck.config.img_size)))
            lava_samples = lava_samples if "lava" in asked else min(lava_samples, samples)
            asked |= {"eval", "lava"}
            click.echo(f"--samples {samples} bounds the ladder: {eval_samples} evaluation samples, "
                       f"{lava_samples} Lava samples", err=True)
        lava = caps.engine == "lava"
        rungs = rungs_by_capability(target, subset=lava and lava_samples > 0)
        lowerings, eval_samples, lava_samples, inputs = fit_counts(
            ck, ["fused", "synaptic"] if dssa == "both" else [dssa], eval_samples, lava_samples,
            ladder_inputs(md, eval_samples), asked, lava=lava, targets=rungs)
        run_drift(ck, checkpoint, lowerings, lava_samples, eval_samples, calib_samples, seed, json_out, lava=lava,
                  targets=rungs, inputs=inputs, calibration=cal)
        _warn_skipped(md)
        return
    lowerings = None
    if "dssa" in caps.options:  # the target lowers DSSA products one way or another
        lowerings = ["fused", "synaptic"] if dssa == "both" else [dssa]
    precisions = ["float64", "float32"] if precision == "both" else [precision]
    from resformer_deploy.analysis.sizing import fit_verification
    samples, lowerings = fit_verification(ck.model, samples, target, precisions, lowerings, given("samples"),
                                          given("dssa"), lambda m: click.echo(m, err=True))  # defaults that fit
    x, source = verification_inputs(ck.model, samples, seed, packed=True, data=md)
    _warn_skipped(md)
    click.echo(f"verify {ck.variant} on target '{target}' ({form} form): {int(x.shape[0])} samples of {source}, "
               f"T={ck.config.T}")
    reports = run_checks(ck, x, source, target, precisions, form, lowerings)
    if json_out:
        write_json(json_out, {"checkpoint": checkpoint, "variant": ck.variant, "inputs": source,
                              "skipped": [{"name": n, "reason": why} for n, why in (md.bad if md else [])],
                              "reports": reports})
        click.echo(f"wrote {json_out}")
    if not all(r["passed"] for r in reports):
        raise DeployError("verification failed: the target does not reproduce the PyTorch model "
                          "(see the table above)")


def _warn_skipped(md) -> None:
    """The samples --skip-bad left out of --data, on stderr, as evaluate lists them."""
    from resformer_deploy.cli.evaluate import skipped_warnings
    for line in skipped_warnings([why for _, why in (md.bad if md else [])]):
        click.echo(line, err=True)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=str))
@click.option("--target", default="lava-cpu", show_default=True)
@click.option("--samples", type=COUNT, default=10, show_default=True)
@click.option("--dssa", type=click.Choice(["fused", "synaptic"]), default="fused", show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of random inputs (non-digits).")
@click.option("--calib-samples", type=COUNT, default=128, show_default=True,
              help="Fixed-point targets (loihi2-sim, loihi2-emu): calibration samples for the quantization scales.")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=str))
@data_options()
def simulate(model, target, samples, dssa, seed, calib_samples, json_out, data_args):
    """Run a NIR file on a target: predictions, accuracy (digits or --data), time, process count."""
    check_outputs([model, *data_args.paths()], files=[json_out])
    import time
    from math import prod
    from exporters.nir_io import interface, read_nir
    from targets import RunRequest, get_target
    from resformer_deploy.flows import flow_options, prepare
    from resformer_deploy.util.memory_budget import check_bytes
    from resformer_deploy.util.progress import Progress
    from resformer_deploy.reporting.tables import table, write_json
    from resformer_deploy.analysis.equivalence import check_run_estimate, estimate_run, inputs_for, run_estimate_line
    from resformer_deploy.training.loop import accuracy
    from resformer_deploy.cli.data import calibration_json

    tgt = get_target(target)
    graph = read_nir(model)
    T = int(graph.metadata.get("time_steps", 4))
    in_shape, out_shape, shapes = interface(graph)
    md = cal = None
    if data_args.data or data_args.calib_data:
        from resformer_deploy.analysis.data_inputs import graph_model
        from resformer_deploy.cli.data import open_data_args
        md, cal = open_data_args(data_args, *graph_model(graph, model), calib_samples,
                                 tgt.capabilities.needs_quantized_net, f"target '{target}' runs floating point")
    opts = {"dssa": dssa} if "dssa" in tgt.capabilities.options else {}  # options the target takes
    run_kw = dict(opts, record_spikes=False)
    from resformer_deploy.analysis.sizing import count_advice, fit_default_count, simulate_sizer
    fits = simulate_sizer(tgt, graph, T, run_kw, sum(prod(s) for s in shapes.values()), prod(out_shape))
    if not given("samples"):  # the default count lowered to what fits, said on stderr
        samples = fit_default_count(samples, fits, "--samples", lambda m: click.echo(m, err=True))
    advice = lambda: count_advice(samples, fits, "--samples", opts.get("dssa"),  # noqa: E731
                                  lambda: fits(1, dssa="fused"))
    if md is not None:
        x, labels, _ = md.take(samples, "--samples")
        samples, source = len(labels), md.describe()
        _warn_skipped(md)
    else:
        x, labels, source = inputs_for(in_shape, samples, seed)
    est = estimate_run(tgt, graph, samples, T, **run_kw)
    if est is not None:
        click.echo(run_estimate_line(tgt, est))
        check_run_estimate(tgt, est, f"simulate: {samples:,} samples of {model}", advice)
    else:  # no cost model before the flow: a step holds every node's value for the batch, float64
        n_values = sum(prod(s) for s in shapes.values())
        check_bytes(8 * samples * (n_values + T * prod(out_shape)),
                    f"simulate: {samples:,} samples x {n_values:,} values per step of {model}")
    # per-class scores give predictions; digits accuracy needs the 10 digit classes
    per_class = len(out_shape) == 1
    if labels is not None and md is None and out_shape != (10,):
        labels, source = None, f"{source}; no accuracy: the output is {out_shape}, not 10 class scores"
    # the target's flow (fixed point: calibrate and quantize first); the options it takes of ours
    prepared = prepare(tgt, graph, samples=x.double(), T=T, calibration=cal,
                       **flow_options(tgt, {**opts, "calib_samples": calib_samples}))
    if "quantized_net" in prepared:
        click.echo(f"quantized for Loihi 2 on {prepared['quantized_net'].calibration['source']}", err=True)
    if est is None:  # a cost model that needs the flow's artifacts
        est = estimate_run(tgt, graph, samples, T, prepared=prepared, **run_kw)
        click.echo(run_estimate_line(tgt, est))
        check_run_estimate(tgt, est, f"simulate: {samples:,} samples of {model}", advice)
    t0 = time.time()
    with Progress(tgt.steps(RunRequest.sizing(graph, samples, T, prepared=prepared, **opts)), f"{target} simulation",
                  unit="steps") as bar:
        res = tgt.run(RunRequest.of(graph, x.double(), T, record_spikes=False, progress=bar.update, prepared=prepared,
                                    **opts))
    info = res.stats.to_json()
    wall = time.time() - t0
    pred = res.output.mean(0).argmax(-1) if per_class else None
    acc = accuracy(pred, labels)
    rows = [("samples", samples), ("inputs", source), ("T", T), ("wall time", f"{wall:.1f} s"),
            ("per sample", f"{wall / samples:.3f} s"),
            ("output", "x".join(map(str, out_shape)) + ("" if per_class else " per step (not class scores: no "
                                                       f"predictions); mean {float(res.output.mean()):.4g}"))]
    if acc is not None:
        rows.append(("accuracy", f"{100 * acc:.2f}%"))
    for k in ("processes", "latency", "steps", "saturation"):
        if k in info:
            rows.append((k, info[k]))
    click.echo(table(rows, ["item", "value"]))
    if json_out:
        write_json(json_out, {"model": model, "target": target, "dssa": dssa, "samples": samples, "inputs": source,
                              "predictions": None if pred is None else pred.tolist(), "accuracy": acc,
                              "output_shape": [int(v) for v in out_shape], "seconds": wall,
                              "info": {k: v for k, v in info.items() if k != "products"},
                              "data": md.to_json() if md else None, "calibration": calibration_json(prepared)})
        click.echo(f"wrote {json_out}")


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=str))
@checkpoint_options
@click.option("--target", default="reference", show_default=True, help="Target whose spikes are counted.")
@click.option("--samples", type=COUNT, default=16, show_default=True)
@click.option("--include-stem", is_flag=True, help="Add the stem convolution's MACs (4.6 pJ each).")
@click.option("--include-classifier", is_flag=True, help="Add the classifier's MACs (4.6 pJ each).")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=str))
@data_options()
def ops(checkpoint, variant, img_size, T, num_classes, unsafe_load, target, samples, include_stem,
        include_classifier, json_out, data_args):
    """Synaptic operations per layer and kind, and energy in the paper's convention
    (0.9 pJ per AC; stem and classifier MACs excluded unless asked), counted from PyTorch and
    from a target run, which must agree."""
    check_outputs([checkpoint, *data_args.paths()], files=[json_out])
    from exporters.torch_to_nir import export_model
    from targets import RunRequest, capabilities_of, get_target
    from resformer_deploy.cli.data import calibration_json, open_data_args
    from resformer_deploy.flows import prepare
    from resformer_deploy.analysis.operations import (count_graph, count_torch, energy_report, max_rel_diff,
                                                      replay_counts)
    from resformer_deploy.reporting.tables import table, write_json
    from resformer_deploy.analysis.equivalence import (check_run_estimate, estimate_run, run_estimate_line,
                                                       torch_record_batch, verification_inputs)
    from resformer_deploy.util.progress import Progress
    from resformer_deploy.model.precision import model_in_dtype
    import torch

    tgt = get_target(target)
    ck = load_cli_checkpoint(checkpoint, variant, img_size, T, num_classes, unsafe_load)
    md, cal = open_data_args(data_args, ck.config, ck.variant, 128, tgt.capabilities.needs_quantized_net,
                             f"target '{target}' runs floating point")
    x, source = verification_inputs(ck.model, samples, data=md)
    x = x.double()
    # counted in float64 on both sides: float32 spikes near threshold flip between two differently
    # ordered computations (a count difference that is only rounding); float64 is exact here
    graph = export_model(ck.model, "float64")
    est = estimate_run(tgt, graph, samples, ck.config.T, dtype=torch.float64)
    if est is not None:  # before the PyTorch count and the flow: refuse what cannot fit
        click.echo(run_estimate_line(tgt, est))
        check_run_estimate(tgt, est, f"ops: {samples:,} samples")
    with model_in_dtype(ck.model, torch.float64) as m64:
        ct = count_torch(m64, x, batch=torch_record_batch(graph, ck.config.T, 8))
    caps, ref_name = tgt.capabilities, "PyTorch"
    # the target's flow with its default options (fixed point: quantized on 128 calibration samples)
    prepared = prepare(tgt, graph, samples=x, T=ck.config.T, calibration=cal)
    if est is None:
        est = estimate_run(tgt, graph, samples, ck.config.T, prepared=prepared, dtype=torch.float64)
        click.echo(run_estimate_line(tgt, est))
        check_run_estimate(tgt, est, f"ops: {samples:,} samples")
    # counts must agree exactly with an independent count: PyTorch's for float targets; a fixed-point
    # target's spikes differ from the float model's, so its bit-exact twin's (same prepared network)
    # or, without a twin, PyTorch's counter replaying the target's own spikes
    replayed = caps.arithmetic == "fixed" and caps.bit_exact_twin is None
    if caps.bit_exact_twin:
        twin = caps.bit_exact_twin
        twin_tgt = get_target(twin)
        with Progress(twin_tgt.steps(RunRequest.sizing(graph, samples, ck.config.T, prepared=prepared)),
                      f"{twin} run", unit="steps") as bar:
            emu = twin_tgt.run(RunRequest.of(graph, x, ck.config.T, prepared=prepared, progress=bar.update))
        ct_torch, ct = ct, count_graph(graph, emu.spikes, ck.config.T, samples)
        for k in ct:
            ct[k].torch_ops = ct_torch[k].ops if k in ct_torch else None
        ref_name = "emulator" if capabilities_of(twin).engine == "numpy" else twin
    with Progress(tgt.steps(RunRequest.sizing(graph, samples, ck.config.T, prepared=prepared)), f"{target} run",
                  unit="steps") as bar:
        res = tgt.run(RunRequest.of(graph, x, ck.config.T, prepared=prepared, progress=bar.update,
                                    dtype=torch.float64))
    cg = count_graph(graph, res.spikes, ck.config.T, samples)
    if replayed:
        ct = replay_counts(ck.model, graph, x, res.spikes, ct)
        ref_name = "PyTorch (replayed)"
    rows, worst = [], 0.0
    for path, v in ct.items():
        g = cg.get(path, {}).get("ops", float("nan"))
        rel = abs(g - v["ops"]) / max(1.0, abs(v["ops"]))
        worst = max(worst, rel)
        rows.append((path, v["kind"], f"{v['ops'] / samples:,.1f}", f"{g / samples:,.1f}", f"{rel:.1e}"))
    click.echo(f"{samples} samples of {source}; per image, summed over T={ck.config.T} steps")
    click.echo(table(rows, ["layer", "kind", f"{ref_name} ops", f"{target} ops", "rel. diff"]))
    rep = energy_report(cg, samples, include_stem, include_classifier)
    k = rep["per_image"]
    click.echo(f"\nper image: {rep['sops']:,.0f} SOPs (conv {k['conv']:,.0f}, DSSA products "
               f"{k['dssa_product']:,.0f}); residual adds {k['residual_add']:,.0f} (not SOPs); stem MACs "
               f"{k['stem_mac']:,.0f}, classifier MACs {k['classifier_mac']:,.0f} "
               f"({'included' if include_stem or include_classifier else 'excluded'} as in the paper)")
    click.echo(f"energy per image: {rep['energy_mJ'] * 1e3:.4f} uJ (0.9 pJ/AC, 4.6 pJ/MAC); "
               f"{ref_name} vs {target} counts: max rel. diff {worst:.1e}")
    if replayed:
        float_rel = max_rel_diff({k: v.torch_ops for k, v in ct.items()}, cg)
        click.echo(f"(fixed point: PyTorch's counter replayed {target}'s own spikes; the float model's own spikes "
                   f"give counts that differ by up to {float_rel:.1e}, the effect of quantization)")
    if json_out:
        write_json(json_out, {"checkpoint": checkpoint, "target": target, "samples": samples, "inputs": source,
                              "reference": ref_name, "reference_counts": ct, "target_counts": cg, "report": rep,
                              "max_rel_diff": worst, "calibration": calibration_json(prepared)})
        click.echo(f"wrote {json_out}")
    if worst > 1e-9:
        raise DeployError(f"operation counts from {ref_name} and {target} disagree (max rel. diff {worst:.1e})")



@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=str))
@checkpoint_options
@click.option("-o", "--out-dir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Directory for report.json, report.html and the PNG figures.")
@click.option("--dssa", type=click.Choice(["fused", "synaptic"]), default="fused", show_default=True)
@click.option("--lava-samples", type=COUNT0, default=10, show_default=True,
              help="Samples run on float and fixed-point Lava (0: emulator only).")
@click.option("--eval-samples", type=COUNT0, default=0, show_default=True,
              help="Evaluation samples (0: all of --data, or the full held-out digits split).")
@click.option("--calib-samples", type=COUNT, default=128, show_default=True)
@data_options()
def report(checkpoint, variant, img_size, T, num_classes, unsafe_load, out_dir, dssa, lava_samples, eval_samples,
           calib_samples, data_args):
    """Deployment report for Loihi 2: drift ladder, firing rates, energy, core plan (JSON + HTML + PNG).

    OUT_DIR appears whole or not at all: it is built next to itself and renamed into place; an
    existing OUT_DIR is replaced only if it is empty or holds a previous report (else refused)."""
    check_outputs([checkpoint, *data_args.paths()], file_sets={out_dir: REPORT_FILES})
    from resformer_deploy.reporting.deploy import build_report
    from resformer_deploy.reporting.html import write_report_files
    from resformer_deploy.cli.data import ladder_inputs, open_data_args

    ck = load_cli_checkpoint(checkpoint, variant, img_size, T, num_classes, unsafe_load)
    md, cal = open_data_args(data_args, ck.config, ck.variant, calib_samples, True)
    from resformer_deploy.cli.drift import fit_counts, ladder_asked
    _, eval_samples, lava_samples, inputs = fit_counts(ck, [dssa], eval_samples, lava_samples,
                                                       ladder_inputs(md, eval_samples), ladder_asked(),
                                                       lava=lava_samples > 0)
    rep = build_report(ck, checkpoint, dssa, lava_samples, eval_samples, calib_samples,
                       say=lambda m: click.echo(f"  {m} ...", err=True), inputs=inputs, calibration=cal)
    _warn_skipped(md)
    paths = write_report_files(Path(out_dir), rep)
    lad = rep["ladder"]
    emu = lad.fixed_point  # the rung of that role, wherever it stands
    m = rep["mapping"]["totals"]
    click.echo(f"accuracy: PyTorch {100 * lad.reference.accuracy:.2f}% -> fixed point "
               f"{100 * emu['accuracy']:.2f}% on {emu['samples']} samples" if emu["accuracy"] is not None else
               f"fixed point: {100 * emu['prediction_agreement_with_torch']:.2f}% same class as PyTorch")
    click.echo(f"Loihi 2: {m['neuro_cores']} neuro cores, {m['chips']} chip(s), "
               f"{len(rep['mapping']['violations'])} design-rule violation(s), "
               f"{len(rep['mapping'].get('stock_models', []))} process(es) without a stock Lava model; energy "
               f"{rep['energy']['fixed']['energy_mJ'] * 1e3:.4f} uJ per image (fixed point)")
    for p in paths:
        click.echo(f"wrote {p}")

from resformer_deploy.cli.compile import compile_cmd  # noqa: E402
from resformer_deploy.cli.demo import demo  # noqa: E402
from resformer_deploy.cli.deploy import deploy_cmd  # noqa: E402
from resformer_deploy.cli.drift import drift_cmd  # noqa: E402
from resformer_deploy.cli.evaluate import evaluate_cmd  # noqa: E402
from resformer_deploy.cli.targets import targets_cmd  # noqa: E402
main.add_command(compile_cmd)
main.add_command(demo)
main.add_command(deploy_cmd)
main.add_command(drift_cmd)
main.add_command(evaluate_cmd)
main.add_command(targets_cmd)


if __name__ == "__main__":
    main()
