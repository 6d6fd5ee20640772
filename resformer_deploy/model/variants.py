"""The official SpikingResformer variants and the project's small digits variant.

Official defaults (image size, T) follow the repository's config files:
ImageNet 224 / T=4, CIFAR 32 / T=4, DVS128 Gesture 64 / T=16.
"""
from resformer_deploy.model.config import ConfigError, ResformerConfig

_IMAGENET = dict(blocks=(1, 2, 3), patch_sizes=(4, 2, 1), stem="imagenet", num_classes=1000,
                 img_size=224, T=4)

VARIANTS = {
    "ti": ResformerConfig(planes=(64, 192, 384), num_heads=(1, 3, 6), name="ti", **_IMAGENET),
    "s": ResformerConfig(planes=(64, 256, 512), num_heads=(1, 4, 8), name="s", **_IMAGENET),
    "m": ResformerConfig(planes=(64, 384, 768), num_heads=(1, 6, 12), name="m", **_IMAGENET),
    "l": ResformerConfig(planes=(128, 512, 1024), num_heads=(2, 8, 16), name="l", **_IMAGENET),
    "cifar": ResformerConfig(planes=(64, 192, 384), num_heads=(1, 3, 6), stem="conv3x3",
                             num_classes=10, img_size=32, T=4, name="cifar"),
    "dvsg": ResformerConfig(planes=(32, 96, 192), num_heads=(1, 3, 6), stem="conv3x3",
                            num_classes=11, img_size=64, T=16, group_size=32, neuron="plif",
                            name="dvsg"),
    # Small variant for the digits demo: 8x8 grayscale, 10 classes, one block per stage.
    "digits": ResformerConfig(planes=(16, 32, 64), num_heads=(1, 2, 2), blocks=(1, 1, 1),
                              stem="conv3x3", in_channels=1, num_classes=10, img_size=8, T=4,
                              group_size=16, name="digits"),
    # Two-stage toy whose DSSA products are small enough for the pure-standard NIR lowering.
    "tiny": ResformerConfig(planes=(4, 8), num_heads=(1, 2), patch_sizes=(2, 1), blocks=(1, 1),
                            stem="conv3x3", in_channels=1, num_classes=3, img_size=4, T=4,
                            group_size=4, name="tiny"),
}

OFFICIAL = ("ti", "s", "m", "l", "cifar", "dvsg")

# Parameter counts excluding BatchNorm, as published / computed from the official code.
OFFICIAL_PARAMS_EX_BN = {
    "ti": 11_141_312, "s": 17_761_472, "m": 35_523_776, "l": 60_270_976,
    "cifar": 10_753_472, "dvsg": 2_689_990,
}


def get_config(name: str, **overrides) -> ResformerConfig:
    if name not in VARIANTS:
        raise ConfigError(f"unknown variant '{name}'; known: {', '.join(VARIANTS)}")
    cfg = VARIANTS[name]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return cfg.replace(**overrides) if overrides else cfg


def match_variant(cfg: ResformerConfig) -> str:
    """Name of the variant whose weights have the same shapes as ``cfg`` ('custom' if none)."""
    weight_fields = ("planes", "num_heads", "patch_sizes", "blocks", "stem", "in_channels",
                     "group_size", "neuron", "ffn_ratio")
    for name, ref in VARIANTS.items():
        if all(getattr(ref, f) == getattr(cfg, f) for f in weight_fields):
            return name
    return "custom"
