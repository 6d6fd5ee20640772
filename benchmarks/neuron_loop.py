"""PyTorch inference of the shipped trained models: the neurons' in-place loop vs the training loop.

    .venv/bin/python benchmarks/neuron_loop.py [--threads 2] [--repeats 3] [--json-out benchmarks/neuron_loop.json]

Inference (no autograd) runs the neurons' in-place loop (resformer_deploy/model/neurons.py,
``_forward_in_place``); the "allocating" row runs the training loop (``_forward_autograd``) under
no_grad, i.e. what inference ran before. Each row: the model's batched forward on held-out-shaped
inputs, median of --repeats after one warm-up; the outputs of the two loops must be equal bit for bit.
"""
import _bench  # noqa: F401  (this checkout first on sys.path)
import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from resformer_deploy.model.checkpoint import load_checkpoint
from resformer_deploy.model.neurons import _MultiStepNeuron
from resformer_deploy.reporting.tables import machine_description

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MODELS = {  # checkpoint, input of one batch (a fixed seed; speed does not depend on the values)
    "digits": ("digits/digits_resformer.pt", lambda g: torch.rand(64, 1, 8, 8, generator=g) * 2 - 1),
    "cifar": ("cifar_digits/cifar_digits_resformer.pt", lambda g: torch.randn(64, 3, 32, 32, generator=g)),
    "dvsg": ("dvs_digits/dvs_digits_resformer.pt", lambda g: (torch.rand(8, 16, 2, 64, 64, generator=g) < 0.1).float()),
}


def timed(model, x, repeats):
    with torch.no_grad():
        out = model(x)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--json-out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    in_place = _MultiStepNeuron._forward_in_place
    for name in a.models.split(","):
        path, make = MODELS[name]
        model = load_checkpoint(EXAMPLES / path).model.eval()
        x = make(torch.Generator().manual_seed(0))
        new, t_new = timed(model, x, a.repeats)
        _MultiStepNeuron._forward_in_place = _MultiStepNeuron._forward_autograd
        try:
            old, t_old = timed(model, x, a.repeats)
        finally:
            _MultiStepNeuron._forward_in_place = in_place
        assert torch.equal(new, old), f"{name}: the two loops' outputs differ"
        rows.append({"model": name, "batch": int(x.shape[0]), "allocating_s": round(t_old, 3),
                     "in_place_s": round(t_new, 3), "speed_up": round(t_old / t_new, 2)})
        print(f"{name:7s} batch {x.shape[0]:3d}: allocating {t_old:7.3f} s, in place {t_new:7.3f} s, "
              f"x{t_old / t_new:.2f} (outputs bit-identical)", flush=True)
    result = {"machine": machine_description(), "threads": a.threads, "repeats": a.repeats, "rows": rows}
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
