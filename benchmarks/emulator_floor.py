"""How far loihi2-emu is from the arithmetic floor (issue 27, first row).

    .venv/bin/python benchmarks/emulator_floor.py [--variants ti,cifar,dvsg] [--samples 16]
        [--json-out benchmarks/emulator_floor.json]

Per variant at native size (official-layout random weights, benchmarks/fullsize_models.py), in one
process and one run, on the same ``--samples`` inputs batched:
  * PyTorch float32, the model's forward (best of 2);
  * loihi2-emu, fixed point (best of 2; calibration and quantization once, not timed);
  * the floor: the convolutions and matrix products the emulator ran, recorded call by call
    (torch's ``TorchFunctionMode``: shapes, strides, groups, output buffers) and replayed alone on
    float32 tensors of the same shapes (best of 2), plus its scipy integer classifier products
    as float32 GEMMs. Also replayed in the dtypes the emulator chose (float32 where the exactness
    bound allows, else float64), which splits the gap into "wider kernels" and "everything else"
    (LIF updates, sums, bounds, spike records, the host stem).
Goals: emulator <= 2x the floor, and emulator throughput >= 1.5x PyTorch float32 batched.
"""
import _bench  # noqa: F401  (this checkout first on sys.path)
import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from fullsize_models import make_model

FLOOR_GOAL, THROUGHPUT_GOAL = 2.0, 1.5
# the kernels whose work is the floor: every multiply-accumulate the emulator does goes through one
KERNELS = {torch.conv2d, torch.nn.functional.conv2d, torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__,
           torch.mm, torch.bmm}


class KernelRecorder(TorchFunctionMode):
    """Records every kernel call's arguments (tensors as shape/dtype, the rest as given)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in KERNELS:
            def desc(a):
                return ("T", tuple(a.shape), a.dtype) if isinstance(a, torch.Tensor) else ("V", a)
            self.calls.append((func, [desc(a) for a in args], {k: desc(v) for k, v in kwargs.items()}))
        return func(*args, **kwargs)


def replay(calls, dtype=None, repeats: int = 2) -> float:
    """Seconds to run the recorded calls alone (best of ``repeats``), on random tensors of the
    recorded shapes in ``dtype`` (None: each call's recorded dtype); output buffers kept."""
    g = torch.Generator().manual_seed(0)
    made = []
    for func, args, kwargs in calls:
        def make(d):
            if d[0] == "V":
                return d[1]
            dt = dtype or d[2]
            return (torch.rand(d[1], generator=g, dtype=torch.float64) < 0.3).to(dt)  # spike-like 0/1 values
        made.append((func, [make(a) for a in args], {k: make(v) for k, v in kwargs.items()}))
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            for func, args, kwargs in made:
                func(*args, **kwargs)
            best = min(best, time.perf_counter() - t0)
    return best


def dense_calls(prepared, n: int, T: int):
    """The fixed-point emulator multiplies dense synapses with scipy (int64, exact), outside torch:
    their floor is one float32 GEMM [n, in] @ [in, out] per step."""
    q = prepared.quantized_net
    calls = []
    for name, spec in q.plan.synapses.items():
        if spec.kind == "dense":
            n_out, n_in = q.syn[name].mant.shape
            calls += [(torch.matmul, [("T", (n, n_in), torch.float32), ("T", (n_in, n_out), torch.float32)], {})] * T
    return calls


def run_emulator(tgt, graph, x, T, prepared):
    from targets.base import RunRequest
    return tgt.run(RunRequest.of(graph, x, T, record_spikes=False, prepared=prepared))


def measure(variant: str, n: int, calib_samples: int) -> dict:
    from exporters.torch_to_nir import export_model
    from resformer_deploy.analysis.equivalence import inputs_for
    from resformer_deploy.flows import prepare
    from targets import get_target
    from resformer_deploy.fixed_point.emulator import exact_float_ops

    model, seed = make_model(variant)
    cfg = model.config
    dvs = cfg.T if cfg.neuron == "plif" else 0
    x, _, source = inputs_for((cfg.in_channels, cfg.img_size, cfg.img_size), n, 0, dvs_steps=dvs)
    res = {"variant": variant, "model_seed": seed, "img_size": cfg.img_size, "T": cfg.T, "samples": n, "inputs": source,
           "torch_threads": torch.get_num_threads()}
    with torch.no_grad():
        model(x[:1])  # warm-up (allocator, oneDNN kernels)
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            torch_pred = model(x).mean(0).argmax(-1)
            times.append(time.perf_counter() - t0)
    res["torch_batched_s"] = min(times)
    tgt = get_target("loihi2-emu")
    graph = export_model(model)
    t0 = time.perf_counter()
    prepared = prepare(tgt, graph, samples=x.double(), T=cfg.T, calib_samples=calib_samples)
    res["prepare_s"] = time.perf_counter() - t0
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        out = run_emulator(tgt, graph, x.double(), cfg.T, prepared)
        times.append(time.perf_counter() - t0)
    res["emulator_s"], res["emulator_runs_s"] = min(times), times
    res["same_class_as_torch"] = float((out.output.mean(0).argmax(-1) == torch_pred).float().mean())
    rec = KernelRecorder()
    with rec:
        run_emulator(tgt, graph, x.double(), cfg.T, prepared)
    calls = rec.calls
    dense = dense_calls(prepared, n, cfg.T)
    res["kernel_calls"], res["dense_gemms"] = len(calls), len(dense)
    res["kernel_dtypes"] = sorted({str(a[2]).replace("torch.", "") for _, args, _ in calls for a in args if a[0] == "T"})
    with exact_float_ops():  # the emulator's own settings (highest matmul precision, no NNPACK)
        res["floor_float32_s"] = replay(calls, torch.float32) + replay(dense)
        res["kernels_as_run_s"] = replay(calls)
    res["floor_float32_default_settings_s"] = replay(calls, torch.float32) + replay(dense)
    res["emulator_over_floor"] = res["emulator_s"] / res["floor_float32_s"]
    res["throughput_vs_torch"] = res["torch_batched_s"] / res["emulator_s"]
    res["meets_floor_goal"] = res["emulator_over_floor"] <= FLOOR_GOAL
    res["meets_throughput_goal"] = res["throughput_vs_torch"] >= THROUGHPUT_GOAL
    return res


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default="ti,cifar,dvsg")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--calib-samples", type=int, default=16)
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args()
    flags = Path("/proc/cpuinfo").read_text()
    isa = [f for f in ("avx512f", "avx2", "amx_tile") if f" {f}" in flags]
    report = {"date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu_name(), "isa": isa,
              "load_before": list(__import__("os").getloadavg()), "rows": []}
    for v in a.variants.split(","):
        r = measure(v, a.samples, a.calib_samples)
        report["rows"].append(r)
        print(f"{v}: emulator {r['emulator_s']:.2f} s, floor {r['floor_float32_s']:.2f} s "
              f"(x{r['emulator_over_floor']:.2f}, goal <= {FLOOR_GOAL}), kernels as run {r['kernels_as_run_s']:.2f} s, "
              f"PyTorch {r['torch_batched_s']:.2f} s (throughput x{r['throughput_vs_torch']:.2f}, goal >= "
              f"{THROUGHPUT_GOAL})", flush=True)
    report["load_after"] = list(__import__("os").getloadavg())
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
