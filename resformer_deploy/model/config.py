"""Architecture description of a SpikingResformer and its validation.

A ``ResformerConfig`` holds everything needed to rebuild a model; the state_dict
does not store ``img_size`` or ``T`` (``lenth`` is derived from ``img_size``),
so our own checkpoints save the config next to the weights.
"""
from dataclasses import asdict, dataclass, field, fields
from typing import Tuple

from resformer_deploy.errors import DeployError

STEMS = ("imagenet", "conv3x3")  # 7x7/s2 conv + BN + maxpool, or 3x3/s1 conv + BN


class ConfigError(DeployError):
    """An architecture description that cannot be built."""


@dataclass(frozen=True)
class ResformerConfig:
    planes: Tuple[int, ...]
    num_heads: Tuple[int, ...]
    patch_sizes: Tuple[int, ...] = (4, 2, 1)
    blocks: Tuple[int, ...] = (1, 2, 3)  # (DSSA, GWFFN) pairs per stage
    stem: str = "imagenet"
    in_channels: int = 3
    num_classes: int = 1000
    group_size: int = 64
    neuron: str = "lif"
    img_size: int = 224
    T: int = 4
    ffn_ratio: int = 4
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        for f in ("planes", "num_heads", "patch_sizes", "blocks"):
            object.__setattr__(self, f, tuple(int(v) for v in getattr(self, f)))
        problems = self.problems()
        if problems:
            raise ConfigError(f"invalid SpikingResformer config '{self.name}': " + "; ".join(problems))

    def problems(self):
        """Every reason this config cannot be built (empty when valid)."""
        out = []
        n = len(self.planes)
        if not (n == len(self.num_heads) == len(self.patch_sizes) == len(self.blocks)) or n == 0:
            out.append("planes, num_heads, patch_sizes and blocks must have the same non-zero length")
            return out
        if self.stem not in STEMS:
            out.append(f"stem must be one of {STEMS}, got {self.stem!r}")
        if self.neuron not in ("lif", "plif"):
            out.append(f"neuron must be 'lif' or 'plif', got {self.neuron!r}")
        for name in ("in_channels", "num_classes", "group_size", "img_size", "T", "ffn_ratio"):
            if getattr(self, name) < 1:
                out.append(f"{name} must be >= 1")
        if any(b < 1 for b in self.blocks):
            out.append("every stage needs at least one (DSSA, GWFFN) block")
        if out:
            return out
        for i, (c, h, p) in enumerate(zip(self.planes, self.num_heads, self.patch_sizes)):
            if c % h:
                out.append(f"stage {i}: planes {c} not divisible by num_heads {h}")
            if (c * self.ffn_ratio) % self.group_size:
                out.append(f"stage {i}: GWFFN width {c * self.ffn_ratio} not divisible by group_size "
                           f"{self.group_size}")
        for i, size in enumerate(self.stage_sizes()):
            p = self.patch_sizes[i]
            if size < 1 or size % p:
                out.append(f"stage {i}: feature map {size}x{size} (img_size {self.img_size}) not "
                           f"divisible by patch size {p}")
        return out

    def stage_sizes(self):
        """Spatial side length at each stage, as the official constructor computes it."""
        size = self.img_size // 4 if self.stem == "imagenet" else self.img_size
        sizes = []
        for i in range(len(self.planes)):
            if i:
                size //= 2
            sizes.append(size)
        return sizes

    def lenths(self):
        """Np = (stage size / patch size)^2 per stage (the DSSA ``lenth``)."""
        return [(s // p) ** 2 for s, p in zip(self.stage_sizes(), self.patch_sizes)]

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ResformerConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config fields: {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes) -> "ResformerConfig":
        d = self.to_dict()
        d.update(changes)
        return ResformerConfig.from_dict(d)
