"""Official-layout checkpoints of the official variants at native size, made here (no downloads):
random weights scaled so neurons fire, random BN statistics, firing-rate buffers calibrated on
random inputs. What benchmarks/fullsize.py deploys, as a user would deploy a downloaded file.

    .venv/bin/python benchmarks/fullsize_models.py OUT_DIR [--variants ti,cifar,dvsg] [--img-size N]

The file holds what the official training script saves (github.com/xyshi2000/SpikingResformer,
main.py, the checkpoint save after each epoch: ``{'model': state_dict, 'optimizer': ..., 'epoch': int,
'max_acc1': float, 'lr_scheduler': ...}``)
and nothing of ours, so the CLI infers the architecture from the key shapes ("config inferred")
and takes image size and T from the variant's defaults, exactly as for an official file.
"""
import _bench  # noqa: F401  (this checkout first on sys.path)
import argparse
import json
import time
from pathlib import Path

import torch

from resformer_deploy.errors import CalibrationError
from resformer_deploy.model.calibration import calibrate_firing_rates, randomize_state
from resformer_deploy.model.checkpoint import load_checkpoint
from resformer_deploy.model.resformer import build_model
from resformer_deploy.model.variants import get_config

DEFAULT_VARIANTS = ("ti", "cifar", "dvsg")
CALIB_SAMPLES = 4  # calibration batch (firing-rate buffers are exact means over it)
CALIB_SEED = 1000  # calibration inputs: not the CLI's verification inputs (seed 0) nor its quantization ones
SEED_TRIES = 20
# BN shift (tests/support/small_models.py uses the same): with 0, some head of the last stage is
# silent at every variant tried (ti, cifar, dvsg at native size, seed 0); with 0.5 every head fires
# and the LIF layers' mean rates are 0.07-0.92 (median ~0.4) on random inputs
BIAS_MEAN = 0.5


def random_inputs(cfg, n: int, seed: int) -> torch.Tensor:
    """The kind of input the CLI verifies on (resformer_deploy.analysis.equivalence.inputs_for):
    N(0, 1) images [n, C, H, W], or Poisson(0.5) event-count frames [n, T, C, H, W] for PLIF (DVS)."""
    g = torch.Generator().manual_seed(seed)
    shape = (cfg.in_channels, cfg.img_size, cfg.img_size)
    if cfg.neuron == "plif":
        return torch.poisson(torch.full((n, cfg.T) + shape, 0.5), generator=g)
    return torch.randn((n,) + shape, generator=g)


def layer_rates(model, x) -> dict:
    """Mean firing rate of every LIF/PLIF layer on ``x`` (forward hooks)."""
    from resformer_deploy.model.neurons import LIF, PLIF
    rates, hooks = {}, []
    for path, mod in model.named_modules():
        if isinstance(mod, (LIF, PLIF)):
            hooks.append(mod.register_forward_hook(
                lambda m, i, out, path=path: rates.__setitem__(path, float(out.float().mean()))))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return rates


def make_model(variant: str, img_size=None, T=None, seed: int = 0, bias_mean: float = BIAS_MEAN):
    """(model, seed used): the first seed from ``seed`` on whose model every attention head fires on
    the calibration inputs (a silent head has no finite attention scale: CalibrationError)."""
    cfg = get_config(variant, img_size=img_size, T=T)
    for s in range(seed, seed + SEED_TRIES):
        model = randomize_state(build_model(cfg), seed=s, bias_mean=bias_mean)
        calibrate_firing_rates(model, [random_inputs(cfg, CALIB_SAMPLES, CALIB_SEED + s)])
        try:
            model.check_calibrated()
        except CalibrationError:
            continue
        return model.eval(), s
    raise CalibrationError(f"{variant}: no seed in {seed}..{seed + SEED_TRIES - 1} keeps every attention head firing")


def save_official(path, model) -> int:
    """The official training checkpoint's layout (no optimizer state: it is not read for inference)."""
    payload = {"model": model.state_dict(), "optimizer": {"state": {}, "param_groups": []},
               "lr_scheduler": {}, "epoch": 0, "max_acc1": 0.0}
    torch.save(payload, str(path))
    return Path(path).stat().st_size


def generate(out_dir, variant: str, img_size=None, T=None, seed: int = 0, bias_mean: float = BIAS_MEAN) -> dict:
    """Write OUT_DIR/<variant>.pth; return what was made and how long each phase took."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{variant}.pth"
    t0 = time.perf_counter()
    model, used = make_model(variant, img_size, T, seed, bias_mean)
    t_make = time.perf_counter() - t0
    t0 = time.perf_counter()
    size = save_official(path, model)
    t_save = time.perf_counter() - t0
    rates = layer_rates(model, random_inputs(model.config, 1, CALIB_SEED + 99))
    # read back as the CLI reads it: the architecture must be inferred (no stored config) and match
    t0 = time.perf_counter()
    ck = load_checkpoint(path, img_size=img_size, T=T)
    t_load = time.perf_counter() - t0
    if ck.variant != variant or ck.config_source != "inferred":
        raise RuntimeError(f"{path}: read back as variant {ck.variant!r} (config {ck.config_source}), "
                           f"want {variant!r} inferred")
    vals = sorted(rates.values())
    cfg = model.config
    return {"variant": variant, "path": str(path), "bytes": size, "img_size": cfg.img_size, "T": cfg.T,
            "neuron": cfg.neuron, "seed": used, "bias_mean": bias_mean, "make_s": round(t_make, 2),
            "save_s": round(t_save, 2), "load_s": round(t_load, 2), "lif_layers": len(vals),
            "silent_layers": sum(v == 0 for v in vals), "rate_min": vals[0], "rate_median": vals[len(vals) // 2],
            "rate_max": vals[-1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    ap.add_argument("--img-size", type=int)
    ap.add_argument("--T", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bias-mean", type=float, default=BIAS_MEAN)
    args = ap.parse_args()
    for v in args.variants.split(","):
        print(json.dumps(generate(args.out_dir, v, args.img_size, args.T, args.seed, args.bias_mean)), flush=True)


if __name__ == "__main__":
    main()
