"""The deployment report as PNG figures and one self-contained HTML page (figures inlined)."""
import base64
import html
import io
from pathlib import Path

from resformer_deploy.util.outputs import write_file_set

REPORT_FILES = ("report.json", "report.html", "firing_rates.png", "spike_agreement.png", "synaptic_ops.png",
                "cores_per_layer.png")  # what a report directory may hold (outputs.write_file_set)


def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _short(name: str) -> str:
    return name.replace("layers_", "").replace("activation", "act")


def figures(rep: dict) -> dict:
    """{file name: PNG bytes}: firing rates, spike agreement, synaptic operations, cores per layer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    emu = next(r for r in rep["ladder"]["rungs"] if r["target"] == "loihi2-emu")
    names = [_short(r["node"]) for r in emu["layers"]]
    x = range(len(names))

    fig, ax = plt.subplots(figsize=(11, 3.8))
    w = 0.4
    ax.bar([i - w / 2 for i in x], [r["torch_rate"] for r in emu["layers"]], w, label="PyTorch float64")
    ax.bar([i + w / 2 for i in x], [r["target_rate"] for r in emu["layers"]], w, label="Loihi 2 fixed point")
    ax.set_xticks(list(x), names, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("firing rate (spikes / neuron / step)")
    ax.set_title(f"Per-layer firing rates, {emu['samples']} evaluation samples")
    ax.legend()
    out["firing_rates.png"] = _fig_png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(11, 3.8))
    for r in rep["ladder"]["rungs"]:
        if "layers" in r:
            ax.plot(list(x), [l["identical_pct"] for l in r["layers"]], marker="o", ms=3,
                    label=f"{r['rung']} ({r['samples']} samples)")
    ax.set_xticks(list(x), names, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("spikes identical to PyTorch (%)")
    ax.set_title("Per-layer spike agreement along the drift ladder")
    ax.legend(fontsize=8)
    out["spike_agreement.png"] = _fig_png(fig)
    plt.close(fig)

    e = rep["energy"]
    layers = [k for k, v in e["torch_counts"].items() if v["kind"] in ("conv", "dssa_product")]
    if layers:
        fig, ax = plt.subplots(figsize=(11, 3.8))
        n = e["samples"]
        ax.bar(range(len(layers)), [e["torch_counts"][k]["ops"] / n for k in layers], 0.4, label="PyTorch",
               color=["tab:blue" if e["torch_counts"][k]["kind"] == "conv" else "tab:purple" for k in layers])
        fixed = e.get("fixed_counts", {})
        ax.bar([i + 0.4 for i in range(len(layers))], [fixed.get(k, {}).get("ops", 0) / n for k in layers], 0.4,
               label="fixed point (emulator spikes)", color="tab:orange")
        ax.set_xticks(range(len(layers)), [_short(k.replace(".", "_")) for k in layers], rotation=70, ha="right",
                      fontsize=7)
        ax.set_ylabel("synaptic operations / image")
        ax.set_title("Synaptic operations per layer (blue conv, purple DSSA product; orange fixed point)")
        ax.legend(fontsize=8)
        out["synaptic_ops.png"] = _fig_png(fig)
        plt.close(fig)

    m = rep.get("mapping")
    if m and m.get("layers"):
        rows = m["layers"]
        fig, ax = plt.subplots(figsize=(11, 3.8))
        ax.bar(range(len(rows)), [r["cores"] for r in rows], color="tab:green")
        ax.set_xticks(range(len(rows)), [_short(r["layer"]) for r in rows], rotation=70, ha="right", fontsize=7)
        ax.set_ylabel("Loihi 2 neuro cores")
        t = m["totals"]
        ax.set_title(f"Cores per layer: {t['neuro_cores']} neuro cores, {t['chips']} chip(s)")
        out["cores_per_layer.png"] = _fig_png(fig)
        plt.close(fig)
    return out


def _table(rows, headers) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _pct(v):
    return "" if v is None else f"{100 * v:.2f}%"


def render_html(rep: dict, pngs: dict) -> str:
    lad = rep["ladder"]
    parts = [f"<h1>resformer-deploy report: {html.escape(rep['checkpoint'])}</h1>",
             f"<p>variant <b>{html.escape(rep['variant'])}</b>, T={rep['T']}, DSSA lowering "
             f"<b>{lad['dssa']}</b>; evaluation: {html.escape(lad['evaluation']['source'])} "
             f"({lad['evaluation']['samples']} samples); calibration: {html.escape(lad['calibration']['source'])}. "
             f"Machine: {html.escape(rep['machine'])}.</p>"]
    verdict = []
    if lad["accuracy_drop_pp"] is not None:
        verdict.append(f"accuracy drop {lad['accuracy_drop_pp']:+.2f} pp (goal &le; {lad['goal_max_drop_pp']:g} pp: "
                       f"{'met' if lad['accuracy_goal_met'] else '<b>NOT met</b>'})")
    if lad["emulator_bit_exact_vs_lava"] is not None:
        verdict.append("emulator bit-exact with fixed-point Lava: " + ("yes" if lad["emulator_bit_exact_vs_lava"]
                                                                      else "<b>NO</b>"))
    m = rep.get("mapping")
    if m:
        t = m["totals"]
        verdict.append(f"{t['neuro_cores']} neuro cores and {t['embedded_programs']} embedded-core programs on "
                       f"{t['chips']} chip(s); "
                       f"{len(m['violations'])} design-rule violation(s)")
    tm = rep.get("timing")
    if tm:
        verdict.append(f"pipeline latency {tm['pipeline_latency_steps']} time steps ({lad['dssa']} DSSA), then one "
                       f"result every {tm['steps_per_sample']} steps (samples stream back to back)")
    verdict.append(f"{rep['energy']['fixed']['sops']:,.0f} SOPs, {rep['energy']['fixed']['energy_mJ'] * 1e3:.4f} uJ "
                   f"per image (fixed point, paper convention)")
    parts.append("<h2>Summary</h2><ul>" + "".join(f"<li>{v}</li>" for v in verdict) + "</ul>")
    rows = [(r["rung"], r["target"], r["samples"], _pct(r.get("accuracy")),
             _pct(r.get("prediction_agreement_with_torch")),
             "" if "min_layer_identical_pct" not in r else f"{r['min_layer_identical_pct']:.3f}%",
             "" if "layers" not in r else ("none" if r["first_divergence"] is None else
                                           f"{r['first_divergence']['node']} @ step {r['first_divergence']['step']}"),
             f"{r['seconds']:.1f}") for r in lad["rungs"]]
    parts.append("<h2>Drift ladder</h2>" + _table(rows, ["rung", "target", "samples", "accuracy", "same class as "
                                                          "PyTorch", "min layer spike agreement", "first divergence",
                                                          "seconds"]))
    for name, title in (("spike_agreement.png", "Spike agreement"), ("firing_rates.png", "Firing rates"),
                        ("synaptic_ops.png", "Synaptic operations"), ("cores_per_layer.png", "Resources")):
        if name in pngs:
            b64 = base64.b64encode(pngs[name]).decode()
            parts.append(f"<h3>{title}</h3><img alt='{name}' src='data:image/png;base64,{b64}'>")
    e = rep["energy"]
    rows = [(k, f"{e['torch']['per_image'][k]:,.0f}", f"{e['fixed']['per_image'][k]:,.0f}")
            for k in e["torch"]["per_image"]]
    rows.append(("SOPs (conv + DSSA)", f"{e['torch']['sops']:,.0f}", f"{e['fixed']['sops']:,.0f}"))
    rows.append(("energy per image (uJ)", f"{e['torch']['energy_mJ'] * 1e3:.4f}",
                 f"{e['fixed']['energy_mJ'] * 1e3:.4f}"))
    parts.append("<h2>Operations and energy per image</h2><p>0.9 pJ per accumulate; stem and classifier MACs "
                 "(4.6 pJ) excluded as in the paper; residual adds listed, not counted as SOPs.</p>"
                 + _table(rows, ["kind", "PyTorch float", "fixed point"]))
    if m:
        rows = [(r["layer"], r["kind"], r["neurons"], r["synapses"], r["memory_bytes"], r["cores"],
                 r.get("max_fan_in", ""), r.get("limiting", "")) for r in m["layers"]]
        parts.append("<h2>Loihi 2 resource plan</h2>" + _table(rows, ["layer", "kind", "neurons", "synapses",
                                                                      "memory (B)", "cores", "max fan-in",
                                                                      "limited by"]))
        parts.append("<h3>Design-rule check</h3>" + ("<p>no violations</p>" if not m["violations"] else
                                                     "<ul>" + "".join(f"<li>{html.escape(v)}</li>"
                                                                      for v in m["violations"]) + "</ul>"))
        hw = m.get("hardware_runtime", {})
        if hw:
            parts.append(f"<p><i>{html.escape(hw.get('message', ''))}</i></p>")
    q = lad["quantization"]
    rows = [(r["node"], r["kind"], "" if r["log2_scale"] is None else f"2^{r['log2_scale']}", r.get("weight_exp", ""),
             "" if "mantissa_utilization" not in r else f"{r['mantissa_utilization']:.2f}",
             "" if "weight_rel_rms_error" not in r else f"{r['weight_rel_rms_error']:.4f}", r.get("vth", ""),
             r.get("bias_exp", ""), r["weights_saturated"] + r["bias_saturated"]) for r in q["layers"]]
    parts.append("<h2>Quantization</h2><p>scale groups: " + html.escape("; ".join(
        f"2^{g['log2_scale']} limited by {g['limited_by']}" for g in q["groups"])) + "</p>"
        + _table(rows, ["node", "kind", "scale", "w exp", "mantissa use", "w rel. RMS err", "vth", "bias exp",
                        "clipped"]))
    sat = lad["saturation"]
    parts.append("<p>Run-time saturation events (24-bit): " + ("none" if not sat else html.escape(str(sat))) + "</p>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>resformer-deploy report</title>" \
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n"


def write_report_files(out_dir: Path, rep: dict) -> list:
    """The PNGs, report.html and report.json as the directory ``out_dir``, whole or not at all:
    built next to it and renamed into place; an existing directory is replaced only if it holds
    nothing but REPORT_FILES (a previous report). Returns the paths."""
    from resformer_deploy.reporting.tables import json_bytes
    pngs = figures(rep)
    files = dict(pngs)
    files["report.html"] = render_html(rep, pngs).encode()
    files["report.json"] = json_bytes(rep)
    return write_file_set(out_dir, files, REPORT_FILES)
