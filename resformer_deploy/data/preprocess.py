"""The official evaluation preprocessing of SpikingResformer, as named presets.

The official main.py (github.com/xyshi2000/SpikingResformer) evaluates with timm's
``create_loader(..., is_training=False, interpolation='bicubic', crop_pct=...)``, i.e. timm's
``transforms_imagenet_eval`` (timm/data/transforms_factory.py):

    Resize(floor(img_size / crop_pct), bicubic)   # torchvision: shorter side, PIL resample
    CenterCrop(img_size)
    ToTensor() + Normalize(mean, std)             # /255, then (x - mean) / std

with crop_pct 0.95 and the ImageNet mean/std for ImageNet, crop_pct 1.0 and
(0.4914, 0.4822, 0.4465) / (0.2023, 0.1994, 0.2010) for CIFAR-10, (129.3, 124.1, 112.4) / 255 and
(68.2, 65.4, 70.4) / 255 for CIFAR-100. Here the same steps are done with Pillow and numpy
(the size arithmetic of torchvision/transforms/functional.py ``_compute_resized_output_size``
and ``center_crop``), so no timm is needed.

DVS128 Gesture / CIFAR10-DVS (official main.py and utils/utils.py ``DVStransform``): frames
[T, 2, H, W] as float, ``transforms.Resize(size=input_size[-2:], antialias=True)`` on
[T*2, H, W] (bilinear), and a third channel, the sum of the two polarities, appended for the
official 3-channel input; a 2-channel model takes the two polarities as they are.
"""
import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from resformer_deploy.errors import DeployError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # timm IMAGENET_DEFAULT_*


@dataclass(frozen=True)
class Preset:
    name: str
    modality: str                  # what it is for: "image" | "frames" | "tensor"
    interpolation: Optional[str]   # "bicubic" | "bilinear" | None
    crop_pct: Optional[float]
    mean: Optional[Tuple[float, ...]]
    std: Optional[Tuple[float, ...]]
    description: str
    grayscale: bool = False        # RGB images may be converted to one channel (PIL convert("L"))
    also: Tuple[str, ...] = ()     # further modalities it takes

    @property
    def modalities(self):
        return (self.modality,) + self.also


PRESETS = {p.name: p for p in (
    Preset("imagenet", "image", "bicubic", 0.95, IMAGENET_MEAN, IMAGENET_STD,
           "timm transforms_imagenet_eval, crop_pct 0.95, ImageNet mean/std (official ImageNet eval)"),
    Preset("cifar10", "image", "bicubic", 1.0, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010),
           "timm transforms_imagenet_eval, crop_pct 1.0, CIFAR-10 mean/std (official CIFAR-10 eval)"),
    Preset("cifar100", "image", "bicubic", 1.0, tuple(v / 255. for v in (129.3, 124.1, 112.4)),
           tuple(v / 255. for v in (68.2, 65.4, 70.4)),
           "timm transforms_imagenet_eval, crop_pct 1.0, CIFAR-100 mean/std (official CIFAR-100 eval)"),
    Preset("dvs", "frames", "bilinear", None, None, None,
           "event frames: torchvision Resize(img_size, antialias=True), no normalization; "
           "3-channel models get the polarity sum as a third channel (official DVStransform)"),
    Preset("digits", "tensor", "bicubic", 1.0, (0.0,), (1.0,),
           "built-in digits: pixel / 16 as stored; images: grayscale, resize, / 255", grayscale=True,
           also=("image",)),
    Preset("none", "tensor", None, None, None, None, "tensors as stored (shape checked only)"),
)}

IMAGENET_VARIANTS = ("ti", "s", "m", "l")


def preset_for(variant: str, num_classes: int, source_kind: str) -> str:
    """The preset the official code evaluates this model / data set with."""
    by_source = {"npz": "none", "digits": "digits", "frames": "dvs"}
    if source_kind in by_source:
        return by_source[source_kind]
    if variant in IMAGENET_VARIANTS:
        return "imagenet"
    if variant == "cifar":
        return "cifar10" if int(num_classes) == 10 else "cifar100"
    if variant == "dvsg":
        return "dvs"
    if variant == "digits":
        return "digits"
    if source_kind in ("cifar10", "cifar100"):
        return source_kind
    return "imagenet"


def preprocessor_for(source, config, preset: str = "auto") -> "Preprocessor":
    """The Preprocessor for a data source and a ResformerConfig; ``preset`` "auto" (or None) is
    ``preset_for(config.name, config.num_classes, source.kind)``."""
    if preset in (None, "auto"):
        preset = preset_for(config.name, config.num_classes, source.kind)
    return Preprocessor(preset, config.img_size, config.in_channels, config.T)


def _resized_size(h, w, size):
    """torchvision _compute_resized_output_size for an int size: the shorter side becomes size,
    the longer int(size * long / short)."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if w <= h else (new_short, new_long)  # (new_h, new_w)


class Preprocessor:
    def __init__(self, preset, img_size: int, in_channels: int, T: Optional[int] = None):
        if isinstance(preset, str):
            if preset not in PRESETS:
                raise DeployError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
            preset = PRESETS[preset]
        self.preset, self.img_size, self.in_channels = preset, int(img_size), int(in_channels)
        self.T = None if T is None else int(T)
        p = preset
        if p.mean is not None and len(p.mean) not in (1, self.in_channels):
            raise DeployError(f"preset {p.name} normalizes {len(p.mean)} channels; the model takes "
                              f"{self.in_channels}")
        self.resize_to = math.floor(self.img_size / p.crop_pct) if p.crop_pct else None
        if p.mean is not None:
            self._mean = np.asarray(p.mean, dtype=np.float32).reshape(-1, 1, 1)
            self._std = np.asarray(p.std, dtype=np.float32).reshape(-1, 1, 1)

    # -- dispatch ---------------------------------------------------------------------------
    def __call__(self, raw: np.ndarray, modality: Optional[str] = None) -> torch.Tensor:
        """float32 [C, H, W] (images, tensors) or [T, C, H, W] (frames); ``modality`` is the
        source's (inferred when None: uint8 [H, W(, C)] is an image)."""
        raw = np.asarray(raw)
        if modality is None:
            modality = "image" if raw.dtype == np.uint8 and raw.ndim in (2, 3) else \
                ("frames" if self.preset.modality == "frames" else "tensor")
        if modality not in self.preset.modalities:
            raise DeployError(f"preset {self.preset.name} takes {' or '.join(self.preset.modalities)} data, "
                              f"not {modality} (shape {list(raw.shape)})")
        return {"image": self._image, "frames": self._frames, "tensor": self._tensor}[modality](raw)

    # -- images: timm transforms_imagenet_eval ------------------------------------------------
    def _image(self, raw):
        from PIL import Image

        a = raw[:, :, None] if raw.ndim == 2 else raw
        if a.ndim != 3 or a.dtype != np.uint8:
            raise DeployError(f"image must be uint8 [H, W, C], got {a.dtype} {list(a.shape)}")
        c = a.shape[2]
        if c == self.in_channels and c in (1, 3):
            img = Image.fromarray(a[:, :, 0] if c == 1 else a, "L" if c == 1 else "RGB")
        elif c == 1 and self.in_channels == 3:  # pil_loader's convert("RGB") of a grayscale file
            img = Image.fromarray(a[:, :, 0], "L").convert("RGB")
        elif c == 3 and self.in_channels == 1 and self.preset.grayscale:
            img = Image.fromarray(a, "RGB").convert("L")  # ITU-R 601-2 luma
        else:
            found = {1: "grayscale", 3: "RGB"}.get(c, f"{c}-channel")
            raise DeployError(f"model takes {self.in_channels} input channel(s), image is {found} ({c} "
                              f"channel(s)); preset {self.preset.name} does not convert")
        w, h = img.size
        new_h, new_w = _resized_size(h, w, self.resize_to)
        if (new_h, new_w) != (h, w):
            resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[self.preset.interpolation]
            img = img.resize((new_w, new_h), resample)
        s = self.img_size  # torchvision center_crop: top/left = int(round((size - crop) / 2))
        top, left = int(round((new_h - s) / 2.0)), int(round((new_w - s) / 2.0))
        img = img.crop((left, top, left + s, top + s))
        x = np.asarray(img, dtype=np.uint8).reshape(s, s, -1).transpose(2, 0, 1).astype(np.float32) / 255
        x = (x - self._mean) / self._std
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    # -- event frames ---------------------------------------------------------------------------
    def _frames(self, raw):
        from torchvision.transforms import functional as TF

        if raw.ndim != 4 or raw.shape[1] != 2:
            raise DeployError(f"frames must be [T, 2, H, W] (2 polarities), got {list(raw.shape)}")
        if self.T is not None and raw.shape[0] != self.T:
            raise DeployError(f"frames have T={raw.shape[0]} time steps, the model takes T={self.T}")
        if self.in_channels not in (2, 3):
            raise DeployError(f"model takes {self.in_channels} input channel(s); event frames give 2 "
                              f"(polarities) or 3 (with their sum)")
        x = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))
        T, C, H, W = x.shape
        if (H, W) != (self.img_size, self.img_size):
            x = TF.resize(x.reshape(T * C, H, W), [self.img_size, self.img_size], antialias=True)
            x = x.reshape(T, C, self.img_size, self.img_size)
        if self.in_channels == 3:
            x = torch.cat([x, x.sum(dim=1, keepdim=True)], dim=1)
        return x.contiguous()

    # -- tensors as stored ------------------------------------------------------------------------
    def _tensor(self, raw):
        chw = (self.in_channels, self.img_size, self.img_size)
        shapes = [chw] + ([(self.T,) + chw] if self.T is not None else [])
        if tuple(raw.shape) not in shapes:
            raise DeployError(f"sample has shape {list(raw.shape)}, the model takes "
                              f"{' or '.join(str(list(s)) for s in shapes)}")
        return torch.from_numpy(np.array(raw, dtype=np.float32))

    # -- reporting --------------------------------------------------------------------------------
    def to_json(self) -> dict:
        p = self.preset
        return {"preset": p.name, "modality": p.modality, "interpolation": p.interpolation,
                "crop_pct": p.crop_pct, "resize": self.resize_to, "crop": self.img_size,
                "mean": list(p.mean) if p.mean is not None else None,
                "std": list(p.std) if p.std is not None else None,
                "in_channels": self.in_channels, "img_size": self.img_size, "T": self.T,
                "description": p.description}

    def describe(self) -> str:
        p, s = self.preset, self.img_size
        if p.name == "dvs":
            steps = f"frames resized to {s}x{s} (bilinear, antialias)" + \
                (", polarity sum as channel 3" if self.in_channels == 3 else "")
        elif p.name == "none":
            steps = f"tensors as stored, {self.in_channels}x{s}x{s}"
        else:
            norm = "" if p.name == "digits" else \
                f", normalize mean {_fmt(p.mean)} std {_fmt(p.std)}"
            steps = (f"images: resize shorter side to {self.resize_to} ({p.interpolation}), center crop {s}, "
                     f"/255{norm}")
            if p.name == "digits":
                steps = f"digits pixel/16 as stored; {steps}"
        return f"preset {p.name}: {steps}"


def _fmt(values):
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"
