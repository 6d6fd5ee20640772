"""`resformer-deploy info`: a checkpoint described (api.load + api.inspect_checkpoint), as a table or JSON."""
import json

import click

from resformer_deploy.cli.common import checkpoint_argument, checkpoint_option_set


@click.command("info")
@checkpoint_argument
@checkpoint_option_set
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def info(checkpoint, checkpoint_opts, as_json):
    """Describe a checkpoint: variant, parameter counts, T, image size, firing-rate buffers."""
    from resformer_deploy import api
    from resformer_deploy.reporting.tables import table

    described = api.inspect_checkpoint(api.load(checkpoint, checkpoint_opts))
    s = described.summary
    if as_json:
        click.echo(json.dumps(s.to_json(), indent=2))
        return
    c = s.config
    join = lambda v: "/".join(str(i) for i in v)  # noqa: E731
    official = described.official_params_ex_bn
    check = "" if official is None else (
        f"  (official {official:,}: {'match' if described.matches_official else 'MISMATCH'})")
    lines = [
        ("checkpoint", s.checkpoint),
        ("variant", f"{s.variant} (config {s.config_source})"),
        ("architecture", f"planes {join(c.planes)}, heads {join(c.num_heads)}, patches "
                         f"{join(c.patch_sizes)}, blocks {join(c.blocks)}, stem {c.stem}, "
                         f"neuron {c.neuron.upper()}, group size {c.group_size}"),
        ("input", f"{c.in_channels}x{c.img_size}x{c.img_size}, T={c.T}; stage sizes "
                  f"{join(s.stage_sizes)}, DSSA lenth {join(s.lenths)}"),
        ("classes", c.num_classes),
        ("parameters", f"{s.params_ex_bn:,} excluding BatchNorm, {s.params_total:,} total{check}"),
        ("state_dict", f"{s.state_dict_keys} keys ({s.state_dict_parameters} parameters, "
                       f"{s.state_dict_buffers} buffers)"),
    ]
    counters = [f"epoch {s.epoch}" if s.epoch is not None else "",
                f"max_acc1 {s.max_acc1:.2f}" if s.max_acc1 is not None else ""]
    if any(counters):
        lines.append(("training", ", ".join(c for c in counters if c)))
    ev = s.recorded_evaluation  # checked field by field in model/summary.py
    if ev:
        n = "" if ev.n_test is None else f" on {ev.n_test:,} held-out samples"
        lines.append(("recorded eval", f"{100 * ev.test_accuracy:.2f}%{n}"
                                       + (f" ({ev.dataset})" if ev.dataset else "")))
    width = max(len(k) for k, _ in lines)
    click.echo("\n".join(f"{k.ljust(width)}  {v}" for k, v in lines))
    fmt = lambda v: "n/a" if v is None else " ".join(f"{x:.4g}" for x in v)  # noqa: E731
    rows = [(r.layer, r.heads, fmt(r.firing_rate_x), fmt(r.firing_rate_attn), fmt(r.c1), fmt(r.c2))
            for r in s.firing_rates]
    click.echo("\nDSSA firing-rate buffers (per head) and attention scales c1, c2:")
    click.echo(table(rows, ["layer", "heads", "rate_x", "rate_attn", "c1", "c2"]))
    if not described.calibrated:
        click.echo("\nwarning: some firing-rate buffers are zero/non-finite; the model cannot run in eval "
                   "mode until calibrated (resformer_deploy.model.calibration).", err=True)
    for note in described.notes:
        click.echo(f"note: {note}", err=True)
