"""Loihi 2 fixed point on the shipped digits model: accuracy, emulator and Lava fixed_pt speed/memory.

    .venv/bin/python benchmarks/fixed_point_digits.py [--lava-samples 50] [--json-out benchmarks/fixed_point_digits.json]

Accuracy: PyTorch float64 and the bit-accurate emulator on the full held-out split (359),
quantization calibrated on the first 128 training samples. Speed: the emulator batched over the
split; Lava Loihi2SimCfg(fixed_pt) and floating_pt streaming ``--lava-samples`` samples through
one runtime (deployment configuration: only the output stream is probed); wall time includes
planning, worker start, build, compile, run and stop. Bit-exactness: the emulator against the
fixed-point Lava run on the same samples (output stream and predictions). Memory: peak PSS of
this process and all descendants; processes: peak number of OS processes.
"""
import _bench  # noqa: F401  (this checkout first on sys.path)
import argparse
import json
import time
from pathlib import Path

import torch

from exporters.torch_to_nir import export_model
from resformer_deploy.reporting.tables import machine_description
from resformer_deploy.model.checkpoint import load_checkpoint
from resformer_deploy.data.digits import load_digits_split
from resformer_deploy.flows.fixed_point import calibrate_and_quantize, calibration_inputs
from resformer_deploy.util.processes import PeakSampler
from targets import RunRequest, get_target

CKPT = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits_resformer.pt"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lava-samples", type=int, default=50)
    ap.add_argument("--json-out", default="")
    args = ap.parse_args()
    model = load_checkpoint(CKPT).model.double().eval()
    split = load_digits_split()
    x, y, T = split.x_test.double(), split.y_test, model.config.T
    graph = export_model(model, "float64")
    with torch.no_grad():
        t0 = time.perf_counter()
        ref = model(x).mean(0).argmax(-1)
        t_torch = (time.perf_counter() - t0) / len(x)
    res = {"machine": machine_description(), "T": T, "eval_samples": len(x),
           "torch": {"accuracy": float((ref == y).float().mean()), "s_per_sample_batched": t_torch}, "dssa": {}}
    xc, src = calibration_inputs((1, 8, 8), 128)
    for dssa in ("fused", "synaptic"):
        t0 = time.perf_counter()
        q = calibrate_and_quantize(graph, xc.double(), T, dssa=dssa, source=src)
        t_q = time.perf_counter() - t0
        with PeakSampler() as s:
            t0 = time.perf_counter()
            emu = get_target("loihi2-emu").run(RunRequest.of(graph, x, T, quant=q))
            t_emu = time.perf_counter() - t0
        info = emu.stats.to_json()
        pred = emu.output.mean(0).argmax(-1)
        row = {"calibrate_quantize_s": t_q, "emulator": {
            "accuracy": float((pred == y).float().mean()), "agreement_with_torch": float((pred == ref).float().mean()),
            "s_per_sample": t_emu / len(x), "peak_pss_MB": s.peak_kb / 1024, "saturation": info["saturation"]}}
        xs = x[: args.lava_samples]
        for name, target, quant in (("lava_float", "lava-cpu", None), ("lava_fixed", "loihi2-sim", q)):
            with PeakSampler() as s:
                t0 = time.perf_counter()
                out = get_target(target).run(RunRequest.of(graph, xs, T, dssa=dssa, quant=quant, record_spikes=False))
                wall = time.perf_counter() - t0
            info = out.stats.to_json()
            row[name] = {"samples": len(xs), "s_per_sample": wall / len(xs), "peak_pss_MB": s.peak_kb / 1024,
                         "os_processes": 1 + s.peak_procs, "lava_processes": info["processes"],
                         "latency_steps": info["latency"]}
            if quant is not None:
                e_small = emu.output[:, : len(xs)]
                row[name]["bit_exact_output_vs_emulator"] = bool(torch.equal(out.output, e_small.to(out.output.dtype)))
                row[name]["accuracy"] = float((out.output.mean(0).argmax(-1) == y[: len(xs)]).float().mean())
        res["dssa"][dssa] = row
    print(json.dumps(res, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res, indent=2) + "\n")
    print("| DSSA | PyTorch acc | fixed acc (emulator) | same class | emulator s/sample | Lava float s/sample "
          "| Lava fixed s/sample | Lava fixed PSS MB | OS procs | bit-exact |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for d, r in res["dssa"].items():
        e, lf, lx = r["emulator"], r["lava_float"], r["lava_fixed"]
        print(f"| {d} | {100 * res['torch']['accuracy']:.2f}% | {100 * e['accuracy']:.2f}% | "
              f"{100 * e['agreement_with_torch']:.2f}% | {e['s_per_sample']:.4f} | {lf['s_per_sample']:.4f} | "
              f"{lx['s_per_sample']:.4f} | {lx['peak_pss_MB']:.0f} | {lx['os_processes']} | "
              f"{lx['bit_exact_output_vs_emulator']} |")


if __name__ == "__main__":
    main()
