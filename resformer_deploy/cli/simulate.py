"""`resformer-deploy simulate`: a NIR file run on a target (api.simulate), as a table and JSON."""
import click

from resformer_deploy.api.simulate import DEFAULT_SAMPLES
from resformer_deploy.cli.common import (COUNT, asked, calib_samples_option, data_options, dssa_option,
                                         json_out_option, lava_processes_option, seed_option, warn_skipped)
from resformer_deploy.util.outputs import check_outputs


@click.command("simulate")
@click.argument("model", type=click.Path(dir_okay=False, path_type=str))
@click.option("--target", default="lava-cpu", show_default=True)
@click.option("--samples", type=COUNT, default=DEFAULT_SAMPLES, show_default=True)
@dssa_option()
@lava_processes_option
@seed_option
@calib_samples_option(
    help="Fixed-point targets (loihi2-sim, loihi2-emu): calibration samples for the quantization scales.")
@json_out_option()
@data_options()
def simulate(model, target, samples, dssa, lava_processes, seed, calib_samples, json_out, data_args):
    """Run a NIR file on a target: predictions, accuracy (digits or --data), time, process count."""
    check_outputs([model, *data_args.paths()], files=[json_out])
    from resformer_deploy import api
    from resformer_deploy.reporting.tables import table, write_json
    from resformer_deploy.util.progress import Progress

    note = lambda m: click.echo(m, err=True)  # noqa: E731
    r = api.simulate(model, api.SimulateOptions(target, asked(samples, "samples"), dssa, seed, calib_samples,
                                                data_args, lava_processes),
                     api.Messages(say=click.echo, note=note, bars=Progress, skipped=warn_skipped))
    rows = [("samples", r.samples), ("inputs", r.inputs), ("T", r.T), ("wall time", f"{r.seconds:.1f} s"),
            ("per sample", f"{r.seconds / r.samples:.3f} s"),
            ("output", "x".join(map(str, r.output_shape)) + ("" if r.per_class else " per step (not class scores: "
                                                             f"no predictions); mean {r.output_mean:.4g}"))]
    if r.accuracy is not None:
        rows.append(("accuracy", f"{100 * r.accuracy:.2f}%"))
    rows += [(k, r.stats[k]) for k in ("processes", "latency", "steps", "saturation") if k in r.stats]
    click.echo(table(rows, ["item", "value"]))
    if json_out:
        write_json(json_out, {"model": model, "target": target, "dssa": dssa, "lava_processes": lava_processes,
                              "samples": r.samples,
                              "inputs": r.inputs, "predictions": r.predictions, "accuracy": r.accuracy,
                              "output_shape": list(r.output_shape), "seconds": r.seconds,
                              "info": {k: v for k, v in r.stats.items() if k != "products"},
                              "data": r.data, "calibration": r.calibration})
        click.echo(f"wrote {json_out}")
