"""The deployment report as PNG figures and one self-contained HTML page (figures inlined).

The page is the Jinja2 template templates/report.html.j2 (package data), rendered with
autoescaping: a layer name, a message or a path is always text, never markup. This module
formats the numbers (the rows of the tables); the template lays them out.
"""
import base64
import io
from pathlib import Path
from typing import TYPE_CHECKING

from resformer_deploy.analysis.drift import FIXED_POINT, FIXED_POINT_CHECK
from resformer_deploy.reporting.drift import first_divergence_text, pct, quantization_rows
from resformer_deploy.util.outputs import write_file_set

if TYPE_CHECKING:  # imports torch: only for the type checker
    from resformer_deploy.reporting.deploy import DeploymentReport

REPORT_FILES = ("report.json", "report.html", "firing_rates.png", "spike_agreement.png", "synaptic_ops.png",
                "cores_per_layer.png", "loihi2_time_per_layer.png")  # what a report directory may hold (write_file_set)


def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _short(name: str) -> str:
    return name.replace("layers_", "").replace("activation", "act")


def _finish(plt, fig, ax, out: dict, name: str, ticks, labels, ylabel: str, title: str, legend=None) -> None:
    """A per-layer figure's axes (layer names slanted under the bars), its legend (``legend``: its
    keywords, None: none) and its PNG into ``out[name]``."""
    ax.set_xticks(ticks, labels, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend is not None:
        ax.legend(**legend)
    out[name] = _fig_png(fig)
    plt.close(fig)


def figures(rep: "DeploymentReport") -> dict:
    """{file name: PNG bytes}: firing rates, spike agreement, synaptic operations, cores per layer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    lad = rep.ladder
    emu = lad.find(FIXED_POINT)
    names = [_short(r.node) for r in emu.layers]
    x = range(len(names))

    fig, ax = plt.subplots(figsize=(11, 3.8))
    w = 0.4
    ax.bar([i - w / 2 for i in x], [r.torch_rate for r in emu.layers], w, label="PyTorch float64")
    ax.bar([i + w / 2 for i in x], [r.target_rate for r in emu.layers], w, label="Loihi 2 fixed point")
    _finish(plt, fig, ax, out, "firing_rates.png", list(x), names, "firing rate (spikes / neuron / step)",
            f"Per-layer firing rates, {emu.samples} evaluation samples", legend={})

    fig, ax = plt.subplots(figsize=(11, 3.8))
    for r in lad.rungs:
        if r.layers is not None:  # every rung compared with PyTorch
            ax.plot(list(x), [layer.identical_pct for layer in r.layers], marker="o", ms=3,
                    label=f"{r.rung} ({r.samples} samples)")
    _finish(plt, fig, ax, out, "spike_agreement.png", list(x), names, "spikes identical to PyTorch (%)",
            "Per-layer spike agreement along the drift ladder", legend={"fontsize": 8})

    e = rep.energy
    tc, fixed = e.torch_counts, e.fixed_counts
    layers = [k for k, v in tc.items() if v.kind in ("conv", "dssa_product")]
    if layers:
        fig, ax = plt.subplots(figsize=(11, 3.8))
        n = e.samples
        ax.bar(range(len(layers)), [tc[k].ops / n for k in layers], 0.4, label="PyTorch",
               color=["tab:blue" if tc[k].kind == "conv" else "tab:purple" for k in layers])
        ax.bar([i + 0.4 for i in range(len(layers))], [fixed[k].ops / n if k in fixed else 0 for k in layers], 0.4,
               label="fixed point (emulator spikes)", color="tab:orange")
        _finish(plt, fig, ax, out, "synaptic_ops.png", range(len(layers)),
                [_short(k.replace(".", "_")) for k in layers], "synaptic operations / image",
                "Synaptic operations per layer (blue conv, purple DSSA product; orange fixed point)",
                legend={"fontsize": 8})

    m = rep.mapping
    if m and m.plan.layers:
        rows = m.plan.layers
        fig, ax = plt.subplots(figsize=(11, 3.8))
        ax.bar(range(len(rows)), [r.cores for r in rows], color="tab:green")
        t = m.plan.totals
        _finish(plt, fig, ax, out, "cores_per_layer.png", range(len(rows)), [_short(r.layer) for r in rows],
                "Loihi 2 neuro cores", f"Cores per layer: {t.neuro_cores} neuro cores, {t.chips} chip(s)")

    est = getattr(rep, "loihi2_estimate", None)
    if est and est.get("layers"):
        rows = est["layers"]
        fig, ax = plt.subplots(figsize=(11, 3.8))
        ax.bar(range(len(rows)), [r["core_time_per_step_s"] * 1e6 for r in rows],
               color=["tab:red" if r["layer"] == est["slowest_layer"] else "tab:gray" for r in rows])
        st = est["step_time_s"]
        err = "" if st["rel_error"] is None else f" (±{st['rel_error'] * 100:.0f}%)"
        _finish(plt, fig, ax, out, "loihi2_time_per_layer.png", range(len(rows)), [_short(r["layer"]) for r in rows],
                "us per step on one core",
                f"Loihi 2 estimate: time per step {st['value'] * 1e6:.3g} us{err} = slowest core (red) + barrier")
    return out


STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;font-size:12px}"
         "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}")
FIGURES = (("spike_agreement.png", "Spike agreement"), ("firing_rates.png", "Firing rates"),
           ("synaptic_ops.png", "Synaptic operations"), ("cores_per_layer.png", "Resources"),
           ("loihi2_time_per_layer.png", "Loihi 2 time per step by layer (estimate)"))


def _environment():
    import jinja2
    # autoescape=True: the environment loads this HTML template only (select_autoescape would
    # look at the ".j2" extension and not escape); StrictUndefined: a misspelt name fails loudly
    env = jinja2.Environment(loader=jinja2.PackageLoader("resformer_deploy.reporting", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["fmt"] = format  # {{ x|fmt(",.0f") }}: Python's format specification
    return env


class _Table:
    def __init__(self, headers, rows):
        self.headers, self.rows = list(headers), [list(r) for r in rows]


def _tables(rep) -> dict:
    lad, e, m = rep.ladder, rep.energy, rep.mapping
    out = {"ladder": _Table(
        ["rung", "target", "samples", "accuracy", "same class as PyTorch", "min layer spike agreement",
         "first divergence", "seconds"],
        [(r.rung, r.target, r.samples, pct(r.accuracy), pct(r.prediction_agreement_with_torch),
          "" if r.min_layer_identical_pct is None else f"{r.min_layer_identical_pct:.3f}%",
          first_divergence_text(r), f"{r.seconds:.1f}") for r in lad.rungs])}
    rows = [(k, f"{e.torch.per_image[k]:,.0f}", f"{e.fixed.per_image[k]:,.0f}") for k in e.torch.per_image]
    rows.append(("SOPs (conv + DSSA)", f"{e.torch.sops:,.0f}", f"{e.fixed.sops:,.0f}"))
    rows.append(("energy per image (uJ)", f"{e.torch.energy_mJ * 1e3:.4f}", f"{e.fixed.energy_mJ * 1e3:.4f}"))
    out["energy"] = _Table(["kind", "PyTorch float", "fixed point"], rows)
    if m:
        out["mapping"] = _Table(
            ["layer", "kind", "neurons", "synapses", "memory (B)", "cores", "max fan-in", "limited by"],
            [(r.layer, r.kind, r.neurons, r.synapses, r.memory_bytes, r.cores, r.max_fan_in, r.limiting)
             for r in m.plan.layers])
    est = getattr(rep, "loihi2_estimate", None)
    if est:
        out["loihi2"], out["loihi2_systems"] = _estimate_tables(est)
    out["quantization"] = _Table(  # the text report's columns (reporting/drift.py) but dv
        ["node", "kind", "scale", "w exp", "mantissa use", "w rel. RMS err", "vth", "bias exp", "clipped"],
        [r[:7] + r[8:] for r in quantization_rows(lad.quantization.layers)])
    return out


def _err(fig: dict) -> str:
    return "n/a" if fig["rel_error"] is None else f"±{fig['rel_error'] * 100:.0f}%"


def _estimate_tables(est: dict):
    """The Loihi 2 estimate (analysis/loihi2_cost.py JSON) as a table of figures and a table of systems."""
    rows = [("time per step", f"{est['step_time_s']['value'] * 1e6:.4g} us", _err(est["step_time_s"])),
            ("latency per sample", f"{est['latency_s']['value'] * 1e3:.4g} ms "
                                   f"({est['pipeline_latency_steps']} + {est['T']} steps)", _err(est["latency_s"])),
            ("throughput (pipelined)", f"{est['throughput_per_s']['value']:.4g} samples/s",
             _err(est["throughput_per_s"]))]
    for k, label in (("dynamic_energy_J", "dynamic energy per inference"), ("static_energy_J", "static energy per "
                     "inference"), ("total_energy_J", "total energy per inference")):
        rows.append((label, f"{est[k]['value'] * 1e3:.4g} mJ", _err(est[k])))
    rows.append(("paper convention (0.9 pJ/AC, 45 nm)", f"{est['paper_convention_energy_J'] * 1e3:.4g} mJ", ""))
    rows.append(("chips / chip-to-chip spikes per sample",
                 f"{est['chips']} / {est['chip_crossing_spikes_per_sample']:,.0f}", "counted, not costed"))
    rows.append(("embedded-core MACs per sample", f"{est['embedded_macs_per_sample']:,.0f}", "not costed"))
    systems = [(r["system"], f"{r['chips']:,}", "yes" if r["fits"] else "no", "; ".join(r["refused_by"]))
               for r in est["systems"]]
    return (_Table(["quantity", "estimate", "error bar"], rows),
            _Table(["system", "chips", "fits", "refused by"], systems))


def render_html(rep, pngs: dict) -> str:
    """The page of a DeploymentReport, with the figures ``pngs`` ({file name: PNG bytes}) inlined."""
    m = rep.mapping
    hw = (m.hardware or None) if m else None
    figs = [{"name": name, "title": title, "base64": base64.b64encode(pngs[name]).decode()}
            for name, title in FIGURES if name in pngs]
    return _environment().get_template("report.html.j2").render(
        rep=rep, lad=rep.ladder, checks=rep.ladder.with_role(FIXED_POINT_CHECK), mapping=m, tables=_tables(rep),
        figures=figs, style=STYLE,
        hardware_message=None if hw is None else hw.get("message", ""))


def write_report_files(out_dir: Path, rep: "DeploymentReport") -> list:
    """The PNGs, report.html and report.json as the directory ``out_dir``, whole or not at all:
    built next to it and renamed into place; an existing directory is replaced only if it holds
    nothing but REPORT_FILES (a previous report). Returns the paths."""
    from resformer_deploy.reporting.tables import json_bytes
    pngs = figures(rep)
    files = dict(pngs)
    files["report.html"] = render_html(rep, pngs).encode()
    files["report.json"] = json_bytes(rep)
    return write_file_set(out_dir, files, REPORT_FILES)
