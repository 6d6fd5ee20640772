"""Small models with the official topologies (stems, stages, DSSA, GWFFN, blocks), at reduced
widths and image sizes so Lava and the emulator check them in CI time. Random weights scaled so
neurons fire (tests.conftest.randomize_state), firing-rate buffers calibrated on random inputs
(resformer_deploy.model.calibration), as the full-size benchmark makes its models."""
import torch

from resformer_deploy.errors import CalibrationError
from resformer_deploy.model.calibration import calibrate_firing_rates
from resformer_deploy.model.resformer import build_model
from resformer_deploy.model.variants import get_config

# name -> (official variant, overrides): same stem, stage count, blocks and neuron as the variant
SMALL = {
    "cifar16": ("cifar", dict(planes=(8, 24, 48), group_size=8, img_size=16)),
    "dvsg16": ("dvsg", dict(planes=(8, 24, 48), group_size=8, img_size=16, T=4)),
    "ti32": ("ti", dict(planes=(8, 24, 48), group_size=8, img_size=32, num_classes=10)),
    "ti32k": ("ti", dict(planes=(8, 24, 48), group_size=8, img_size=32, num_classes=1000)),  # ImageNet labels
}


BIAS_MEAN = 0.5  # BN shifts that keep every head of every stage firing at these widths


def small_inputs(model, n: int, seed: int = 0) -> torch.Tensor:
    """Images in [0, 1) [n, C, H, W], or event-count frames [n, T, C, H, W] for PLIF (DVS) models."""
    cfg, g = model.config, torch.Generator().manual_seed(seed)
    shape = (n, cfg.in_channels, cfg.img_size, cfg.img_size)
    if cfg.neuron == "plif":
        return torch.poisson(torch.full((n, cfg.T) + shape[1:], 0.5), generator=g)
    return torch.rand(shape, generator=g)


def small_model(name: str, seed: int = 0):
    """The first model from seed, seed + 1, ... in which every attention head fires on the
    calibration inputs (a silent head has no finite attention scale: CalibrationError)."""
    from resformer_deploy.model.calibration import randomize_state
    variant, overrides = SMALL[name]
    for s in range(seed, seed + 20):
        model = randomize_state(build_model(get_config(variant, **overrides)), seed=s, bias_mean=BIAS_MEAN)
        calibrate_firing_rates(model, [small_inputs(model, 4, seed=s + 1)])
        try:
            model.check_calibrated()
        except CalibrationError:
            continue
        return model.eval()
    raise CalibrationError(f"{name}: no seed in {seed}..{seed + 19} keeps every attention head firing")
