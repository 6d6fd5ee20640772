"""The emulator at a git revision against the working tree's, in one process, alternating (issue 27).

    .venv/bin/python benchmarks/emulator_ab.py --rev 9547a69 [--variant cifar] [--samples 16] [--reps 3]

On a shared machine two separate benchmark runs see different loads; alternating the two
versions' runs in one process (same model, calibration, quantized network and inputs, the
target's whole ``run`` timed) makes the comparison fair. Also checks that both give the same
output tensor (bit-exact), which is the contract of any speed change.
"""
import _bench  # noqa: F401  (this checkout first on sys.path)
import argparse
import importlib.util
import os
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from fullsize_models import make_model

EMULATOR = "resformer_deploy/fixed_point/emulator.py"


def load_revision(rev: str):
    """The emulator module as it was at ``rev`` (its source in a temp file, removed after import)."""
    root = Path(__file__).resolve().parent.parent
    src = subprocess.run(["git", "show", f"{rev}:{EMULATOR}"], cwd=root, check=True, capture_output=True,
                         text=True).stdout
    fd, path = tempfile.mkstemp(suffix="_emulator.py")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(src)
        spec = importlib.util.spec_from_file_location("emulator_at_rev", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        os.unlink(path)
    return mod


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", required=True)
    ap.add_argument("--variant", default="cifar")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    from exporters.torch_to_nir import export_model
    from resformer_deploy.analysis.equivalence import inputs_for
    from resformer_deploy.flows import prepare
    from targets import get_target
    from targets.base import RunRequest
    import targets.loihi2_emulator as target_module

    versions = {a.rev: load_revision(a.rev).LavaSemantics, "working tree": target_module.LavaSemantics}
    model, _ = make_model(a.variant)
    cfg = model.config
    x, _, _ = inputs_for((cfg.in_channels, cfg.img_size, cfg.img_size), a.samples, 0,
                         dvs_steps=cfg.T if cfg.neuron == "plif" else 0)
    tgt, graph = get_target("loihi2-emu"), export_model(model)
    prepared = prepare(tgt, graph, samples=x.double(), T=cfg.T, calib_samples=16)

    def run():  # -> (wall s, CPU s of the process: user + sys of all its threads, less inflated by load)
        t0, c0 = time.perf_counter(), time.process_time()
        r = tgt.run(RunRequest.of(graph, x.double(), cfg.T, record_spikes=False, prepared=prepared))
        return (time.perf_counter() - t0, time.process_time() - c0), r.output

    run()  # warm-up
    times, outs = {k: [] for k in versions}, {}
    try:
        for _ in range(a.reps):
            for k, cls in versions.items():
                target_module.LavaSemantics = cls
                t, outs[k] = run()
                times[k].append(t)
    finally:
        target_module.LavaSemantics = versions["working tree"]
    load = os.getloadavg()
    for k, ts in times.items():
        print(f"{a.variant} {k}: best {min(w for w, _ in ts):.2f} s wall of {', '.join(f'{w:.2f}' for w, _ in ts)}; "
              f"best {min(c for _, c in ts):.2f} s CPU of {', '.join(f'{c:.2f}' for _, c in ts)}")
    same = torch.equal(*outs.values())
    print(f"outputs bit-identical: {same}; load average now {load[0]:.1f}")
    if not same:
        raise SystemExit("error: the two emulator versions disagree")


if __name__ == "__main__":
    main()
