"""`resformer-deploy compile`: map the neuromorphic partition onto Loihi 2 cores and run the DRC
(the job: resformer_deploy.api.compile; rendered here)."""
import json
from pathlib import Path

import click

from resformer_deploy.cli.common import (calib_samples_option, checkpoint_options, data_options, dssa_option,
                                        load_cli_checkpoint, netx_bias_grid_option)
from resformer_deploy.errors import DeployError, summarize
from resformer_deploy.util.outputs import check_outputs

ARTIFACT_NAME = "loihi2_network.h5"


def stock_models_line(findings, quantized: bool) -> str:
    """One line (and one per finding) on the processes Lava's stock models would not run as planned."""
    scope = "" if quantized else " (number formats not checked: add --quantize)"
    if not findings:
        return f"stock models: every process runs on Lava's stock fixed_pt models as planned{scope}"
    return "\n".join([f"stock models: {len(findings)} process(es) need more than Lava's stock models{scope}:"]
                      + [f"  {f}" for f in findings])


@click.command("compile")
@click.argument("model", type=click.Path(dir_okay=False, path_type=str))
@click.option("--target", default="loihi2", show_default=True,
              help="A registered target that supports mapping (`resformer-deploy targets`).")
@click.option("-o", "--out-dir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Directory for loihi2_plan.json and, with --quantize, the deployable artifact "
                   "loihi2_network.h5 (each written atomically).")
@dssa_option(help="DSSA products: embedded-core programs (fused) or synaptic primitives.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan JSON instead of the table.")
@click.option("--quantize", is_flag=True,
              help="Quantize first (calibration data) so the DRC also checks weight exponents and graded "
                   "payload widths (simulates the network: small models only).")
@calib_samples_option()
@netx_bias_grid_option
@checkpoint_options
@data_options(evaluation=False)
def compile_cmd(model, target, out_dir, dssa, as_json, quantize, calib_samples, netx_bias_grid, variant, img_size, T,
                num_classes, unsafe_load, data_args):
    """Map a checkpoint or NIR file onto Loihi 2 neuro cores and check the design rules.

    Partitions every neuron layer of the neuromorphic part into cores under the per-core limits
    (neurons, memory, fan-in axons, fan-out routes; see resformer_deploy/hardware/loihi2/limits.py
    for each number and its source), writes OUT_DIR/loihi2_plan.json and prints a per-layer
    table; with --quantize also OUT_DIR/loihi2_network.h5, the deployable artifact (see `deploy`).
    Every design-rule violation is listed at once; with violations the plan is still written and
    the command exits with code 2. The plan is an estimate: executing it on a chip
    needs Intel's non-public lava-loihi.
    """
    from resformer_deploy import api
    from resformer_deploy.reporting.tables import write_json

    out, artifact = Path(out_dir) / api.PLAN_NAME, Path(out_dir) / ARTIFACT_NAME
    check_outputs([model, *data_args.paths()], files=[out] + ([artifact] if quantize else []), dirs=[out_dir])
    opts = api.CompileOptions(target=api.mapping_target(target), dssa=dssa, quantize=quantize,
                              calib_samples=calib_samples, netx_bias_grid=netx_bias_grid)
    if not Path(model).exists():
        raise DeployError(f"{model}: no such file")
    if data_args.calib_data is not None and not quantize:
        raise DeployError(f"--calib-data {data_args.calib_data}: compile quantizes only with --quantize; nothing is "
                          f"calibrated")
    net = api.load_graph(model, lambda p: load_cli_checkpoint(p, variant, img_size, T, num_classes, unsafe_load))
    cal = None
    if data_args.calib_data is not None:
        _, cal = api.open_data(data_args, net.checkpoint, calib_samples, True, say=lambda m: click.echo(m, err=True),
                               config=net.config, variant=net.variant)
    res = api.compile(net, opts, calibration=cal, say=lambda m: click.echo(m, err=True))
    plan_json = res.plan_json
    write_json(out, plan_json)  # creates OUT_DIR (and parents) if needed
    if quantize:  # the deployable artifact (resformer-deploy deploy writes the same file)
        from resformer_deploy.cli.deploy import artifact_line
        fig = api.write_artifact(artifact, res, net, data_args.preset)
        if not as_json:
            click.echo(artifact_line(artifact, fig))
    click.echo(json.dumps(plan_json, indent=2) if as_json else plan_text(res, out))
    if res.violations:
        raise DeployError(f"{len(res.violations)} design-rule violation(s): {summarize(list(res.violations), 3)} "
                          f"(all listed in {out})")


def plan_text(res, out) -> str:
    """The per-layer table, totals, warnings and checks of a compile result."""
    from resformer_deploy.reporting.tables import table
    rows = [(r.layer, r.kind, f"{r.neurons:,}", f"{r.synapses:,}", f"{r.synaptic_memory_bytes:,}",
             f"{r.memory_bytes:,}", r.cores, f"{r.max_fan_in:,}", f"{r.max_fan_out_routes:,}",
             r.limiting) for r in res.layers]
    lines = [table(rows, ["layer", "kind", "neurons", "synapses", "syn. memory B", "memory B", "cores",
                          "max fan-in", "max routes", "limiting"])]
    t = res.totals
    lines.append(f"\ntotal: {t.neuro_cores:,} neuro cores, {t.chips} chip(s), {t.neurons:,} neurons, "
                 f"{t.synapses:,} synapses, {t.memory_bytes / 2 ** 20:.2f} MiB "
                 f"({t.synaptic_memory_bytes / 2 ** 20:.2f} MiB synaptic); "
                 f"{t.embedded_programs} embedded-core program(s) (DSSA {res.dssa})")
    lines += [f"warning: {w}" for w in res.plan.warnings] + [f"drc skipped: {s}" for s in res.skipped]
    lines.append(stock_models_line(list(res.stock_models), res.quantized))
    lines.append(f"hardware: {res.hardware['message']}")
    return "\n".join(lines + list(res.estimate_lines) + [f"wrote {out}"])
