"""`resformer-deploy compile`: map the neuromorphic partition onto Loihi 2 cores and run the DRC."""
import json
from pathlib import Path

import click

from resformer_deploy.cli.common import COUNT, checkpoint_options, data_options, netx_bias_grid_option, load_cli_checkpoint
from resformer_deploy.errors import DeployError, summarize
from resformer_deploy.util.outputs import check_outputs



ARTIFACT_NAME = "loihi2_network.h5"


def _is_nir(path: str) -> bool:
    if path.lower().endswith((".nir", ".h5", ".hdf5")):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


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
@click.option("--dssa", type=click.Choice(["fused", "synaptic"]), default="fused", show_default=True,
              help="DSSA products: embedded-core programs (fused) or synaptic primitives.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan JSON instead of the table.")
@click.option("--quantize", is_flag=True,
              help="Quantize first (calibration data) so the DRC also checks weight exponents and graded "
                   "payload widths (simulates the network: small models only).")
@click.option("--calib-samples", type=COUNT, default=128, show_default=True)
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
    artifact = Path(out_dir) / ARTIFACT_NAME
    check_outputs([model, *data_args.paths()], files=[Path(out_dir) / "loihi2_plan.json"]
                  + ([artifact] if quantize else []), dirs=[out_dir])
    from targets import broken_targets, names_with
    from targets.loihi2_hardware import hardware_runtime
    from resformer_deploy.flows import prepare
    from resformer_deploy.reporting.tables import table, write_json

    mappable = names_with(supports_mapping=True)  # the registry's list, not one kept here
    if target in broken_targets():  # a plug-in that failed to load: its own one-line reason
        raise DeployError(broken_targets()[target])
    if target not in mappable:
        raise DeployError(f"unknown compile target '{target}' (targets that support mapping: "
                          f"{', '.join(mappable) or 'none'})")
    if not Path(model).exists():
        raise DeployError(f"{model}: no such file")
    if data_args.calib_data is not None and not quantize:
        raise DeployError(f"--calib-data {data_args.calib_data}: compile quantizes only with --quantize; nothing is "
                          f"calibrated")
    if _is_nir(model):
        from exporters.nir_io import read_nir
        from resformer_deploy.analysis.data_inputs import graph_model
        graph = read_nir(model)
        model_of = lambda: graph_model(graph, model)  # noqa: E731  (read only for --calib-data)
    else:
        from exporters.torch_to_nir import export_model
        ck = load_cli_checkpoint(model, variant, img_size, T, num_classes, unsafe_load)
        graph = export_model(ck.model)
        model_of = lambda: (ck.config, ck.variant)  # noqa: E731
    cal = None
    if data_args.calib_data is not None:
        from resformer_deploy.cli.data import open_data_args
        _, cal = open_data_args(data_args, *model_of(), calib_samples, True, out=lambda m: click.echo(m, err=True))
    # the target's flow: plan, [calibrate and quantize: the number-format rules need the quantized
    # network, calibrated on non-evaluation data (--calib-data or the flow's choice),] map onto
    # cores, design-rule check
    if netx_bias_grid and not quantize:
        raise DeployError("--netx-bias-grid chooses how the network is quantized: add --quantize")
    prepared = prepare(target, graph, dssa=dssa, quantize=quantize, calib_samples=calib_samples if quantize else None,
                       calibration=cal, netx_bias_grid=netx_bias_grid if quantize else None)
    if quantize:
        click.echo(f"quantized on {prepared['quantized_net'].calibration['source']}", err=True)
    plan = prepared["core_plan"]
    violations, skipped = prepared["drc"]
    est_json, est_lines = None, []
    if quantize:  # Loihi 2 latency, throughput, energy and systems, from the emulator's activity on real samples
        from resformer_deploy.flows.fixed_point import graph_time_steps
        from resformer_deploy.analysis.loihi2_cost import ESTIMATE_SAMPLES, cost_section
        ci = prepared["calibration_inputs"]
        est_json, est_lines = cost_section(graph, prepared, graph_time_steps(graph), ci.x[:ESTIMATE_SAMPLES],
                                           ci.source, violations)
    hw = hardware_runtime()
    data = plan.to_json(violations, skipped, hw)
    data["input"] = model
    if est_json is not None:
        data["loihi2_estimate"] = est_json
    if quantize:
        data["calibration"] = prepared["quantized_net"].calibration
    # what Lava's stock process models (and so the chip's own) would not run as planned, by process
    data["stock_models"] = {"checked_quantized": bool(quantize), "findings": prepared["stock_models"]}
    out = Path(out_dir) / "loihi2_plan.json"
    write_json(out, data)  # creates OUT_DIR (and parents) if needed
    if quantize:  # the deployable artifact (resformer-deploy deploy writes the same file)
        from resformer_deploy.cli.deploy import artifact_line, write_deploy_artifact
        fig = write_deploy_artifact(artifact, prepared, graph, model, data_args.preset)
        if not as_json:
            click.echo(artifact_line(artifact, fig))
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        rows = [(r["layer"], r["kind"], f"{r['neurons']:,}", f"{r['synapses']:,}", f"{r['synaptic_memory_bytes']:,}",
                 f"{r['memory_bytes']:,}", r["cores"], f"{r['max_fan_in']:,}", f"{r['max_fan_out_routes']:,}",
                 r["limiting"]) for r in data["layers"]]
        click.echo(table(rows, ["layer", "kind", "neurons", "synapses", "syn. memory B", "memory B", "cores",
                                "max fan-in", "max routes", "limiting"]))
        t = plan.totals
        click.echo(f"\ntotal: {t.neuro_cores:,} neuro cores, {t.chips} chip(s), {t.neurons:,} neurons, "
                   f"{t.synapses:,} synapses, {t.memory_bytes / 2 ** 20:.2f} MiB "
                   f"({t.synaptic_memory_bytes / 2 ** 20:.2f} MiB synaptic); "
                   f"{t.embedded_programs} embedded-core program(s) (DSSA {dssa})")
        for w in plan.warnings:
            click.echo(f"warning: {w}")
        for s in skipped:
            click.echo(f"drc skipped: {s}")
        click.echo(stock_models_line(prepared["stock_models"], quantize))
        click.echo(f"hardware: {hw['message']}")
        for line in est_lines:
            click.echo(line)
        click.echo(f"wrote {out}")
    if violations:
        raise DeployError(f"{len(violations)} design-rule violation(s): {summarize(violations, 3)} "
                          f"(all listed in {out})")
