"""Reading and writing SpikingResformer checkpoints.

Accepted layouts: the official training checkpoint ``{'model': state_dict,
'optimizer': ..., 'epoch': ..., 'max_acc1': ..., 'lr_scheduler': ...}``, a bare
state_dict, and our own ``{'model': ..., 'resformer_deploy': {'config': ...}}``
which additionally records image size and T (the official files do not).
Loading is ``weights_only=True`` unless the caller opts out, and the key
comparison is strict: any missing/unexpected key or shape mismatch is an error
that names the keys.
"""
import os
import pickle
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import torch

from .config import ConfigError, ResformerConfig
from .errors import CheckpointError, summarize
from .model import SpikingResformer
from .variants import VARIANTS, get_config, match_variant

META_KEY = "resformer_deploy"
FORMAT_VERSION = 1


@dataclass
class LoadedCheckpoint:
    path: str
    model: SpikingResformer
    config: ResformerConfig
    variant: str  # matched official/project variant name or 'custom'
    config_source: str  # 'checkpoint' (stored by us) or 'inferred' (from key shapes)
    meta: Dict = field(default_factory=dict)  # epoch, max_acc1, training record, ...
    notes: list = field(default_factory=list)  # e.g. dtype casts performed


def read_checkpoint_file(path, weights_only: bool = True):
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if p.is_dir():
        raise CheckpointError(f"checkpoint path is a directory, not a file: {path}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file is empty: {path}")
    try:
        return torch.load(str(p), map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as e:
        msg = str(e).split("\n")[0]
        detail = re.search(r"Unsupported (global|class)[^\n]*", str(e))
        if weights_only and detail:  # a valid pickle holding objects other than tensors/containers
            msg = detail.group(0).strip()
            raise CheckpointError(
                f"{path}: refused by weights_only=True loading ({msg}); if you trust this file, "
                f"re-run with --unsafe-load") from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({msg})") from None
    except Exception as e:  # torch.load raises many types on damaged input (IndexError, EOFError, ...)
        detail = str(e).split("\n")[0] or type(e).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated: "
                              f"{detail})") from None


def split_checkpoint(obj, path) -> (Dict[str, torch.Tensor], Dict):
    """Return (state_dict, metadata) from any accepted layout."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict (state_dict or training checkpoint), "
                              f"found {type(obj).__name__}")
    meta = {}
    if "model" in obj and isinstance(obj["model"], dict):
        sd = obj["model"]
        meta = {k: v for k, v in obj.items() if k in ("epoch", "max_acc1")}
        if isinstance(obj.get(META_KEY), dict):
            meta[META_KEY] = obj[META_KEY]
    elif "state_dict" in obj and isinstance(obj["state_dict"], dict):
        sd = obj["state_dict"]
    else:
        sd = obj
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state_dict entries that are not tensors: {summarize(bad)}")
    if sd and all(k.startswith("module.") for k in sd):  # saved from a DDP wrapper
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd), meta


_BLOCK = re.compile(r"^layers\.(\d+)\.(\d+)\.")


def infer_config(sd: Dict[str, torch.Tensor], path="checkpoint", img_size=None, T=None,
                 num_classes=None) -> ResformerConfig:
    """Reconstruct the architecture from key names and weight shapes.

    Image size and T are not in an official state_dict; they default to those of
    the matching official variant (or must be given for a custom architecture).
    """
    for key in ("prologue.0.weight", "classifier.weight"):
        if key not in sd:
            raise CheckpointError(
                f"{path}: not a SpikingResformer checkpoint: key '{key}' missing "
                f"({len(sd)} keys, e.g. {summarize(sorted(sd), 3)})")
    stem_w = sd["prologue.0.weight"]
    if stem_w.dim() != 4 or stem_w.shape[-1] not in (3, 7):
        raise CheckpointError(f"{path}: prologue.0.weight has shape {tuple(stem_w.shape)}; expected a "
                              f"7x7 (ImageNet) or 3x3 (CIFAR/DVS) stem convolution")
    stages = {}
    for k in sd:
        m = _BLOCK.match(k)
        if m:
            stages.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if not stages or sorted(stages) != list(range(len(stages))):
        raise CheckpointError(f"{path}: cannot find stages layers.0 .. layers.N in the keys")
    planes, heads, patches, blocks, groups, ratios = [], [], [], [], [], []
    try:
        for i in range(len(stages)):
            dssa = sorted(j for j in stages[i] if f"layers.{i}.{j}.W.weight" in sd)
            if not dssa:
                raise KeyError(f"layers.{i}.*.W.weight")
            first = f"layers.{i}.{dssa[0]}"
            w = sd[f"{first}.W.weight"]
            planes.append(int(w.shape[1]))
            patches.append(int(w.shape[-1]))
            heads.append(int(sd[f"{first}.firing_rate_x"].shape[2]))
            blocks.append(len(dssa))
            ffn = f"layers.{i}.{dssa[0] + 1}"
            groups.append(int(sd[f"{ffn}.conv.0.1.weight"].shape[1]))
            ratios.append(int(sd[f"{ffn}.up.1.weight"].shape[0]) // planes[-1])
    except KeyError as e:
        raise CheckpointError(f"{path}: not a SpikingResformer checkpoint: expected key "
                              f"{e.args[0]} is missing") from None
    neuron = "plif" if any(k.endswith("activation_in.w") for k in sd) else "lif"
    base = dict(planes=planes, num_heads=heads, patch_sizes=patches, blocks=blocks,
                stem="imagenet" if stem_w.shape[-1] == 7 else "conv3x3",
                in_channels=int(stem_w.shape[1]),
                num_classes=int(num_classes or sd["classifier.weight"].shape[0]),
                group_size=groups[0], neuron=neuron, ffn_ratio=ratios[0])
    try:
        probe = ResformerConfig(**base, img_size=64 * 2 ** len(planes), T=1)  # shape-only probe
    except ConfigError as e:
        raise CheckpointError(f"{path}: weights describe no valid SpikingResformer ({e})") from None
    name = match_variant(probe)
    default = VARIANTS[name] if name != "custom" else None
    if default is None and img_size is None:
        raise CheckpointError(f"{path}: custom architecture (planes {planes}); the image size is not "
                              f"stored in the checkpoint, pass --img-size")
    cfg = dict(base, img_size=int(img_size or default.img_size), T=int(T or (default.T if default else 4)),
               name=name)
    try:
        return ResformerConfig(**cfg)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None


def compare_state_dict(model: torch.nn.Module, sd: Dict[str, torch.Tensor], path, label) -> None:
    """Strict comparison that names every offending key before load_state_dict runs."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {summarize(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {summarize(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {summarize(shapes, 3)}")
    if problems:
        raise CheckpointError(f"{path} does not fit {label}: " + "; ".join(problems))


def load_checkpoint(path, variant: Optional[str] = None, img_size: Optional[int] = None,
                    T: Optional[int] = None, num_classes: Optional[int] = None,
                    weights_only: bool = True) -> LoadedCheckpoint:
    obj = read_checkpoint_file(path, weights_only=weights_only)
    sd, meta = split_checkpoint(obj, path)
    stored = meta.get(META_KEY, {}).get("config")
    if variant is not None:
        try:
            cfg = get_config(variant, img_size=img_size, T=T, num_classes=num_classes)
        except ConfigError as e:
            raise CheckpointError(str(e)) from None
        source = "variant"
    elif stored is not None:
        try:
            cfg = ResformerConfig.from_dict(dict(stored))
            over = {k: v for k, v in dict(img_size=img_size, T=T, num_classes=num_classes).items() if v}
            cfg = cfg.replace(**over) if over else cfg
        except (ConfigError, TypeError) as e:
            raise CheckpointError(f"{path}: stored config is invalid ({e})") from None
        source = "checkpoint"
    else:
        cfg = infer_config(sd, path, img_size=img_size, T=T, num_classes=num_classes)
        source = "inferred"
    model = SpikingResformer(cfg)
    compare_state_dict(model, sd, path, f"SpikingResformer '{cfg.name}'")
    notes = []
    half = [k for k, v in sd.items() if v.dtype in (torch.float16, torch.bfloat16)]
    if half:  # AMP-trained official checkpoints may hold fp16 firing-rate buffers
        notes.append(f"cast {len(half)} half-precision tensor(s) to float32: {summarize(half, 3)}")
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
    model.load_state_dict(sd, strict=True)
    model.eval()
    return LoadedCheckpoint(str(path), model, cfg, match_variant(cfg), source, meta, notes)


def atomic_write(path, write_fn) -> None:
    """Write via a temp file in the same directory and rename, so no partial file remains."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    try:
        write_fn(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path, model: SpikingResformer, epoch: int = 0, max_acc1: float = 0.0,
                    record: Optional[dict] = None) -> None:
    """Official layout plus our config record (still loadable by the official code's --resume
    path for 'model', and by us without extra arguments)."""
    payload = {
        "model": model.state_dict(),
        "epoch": int(epoch),
        "max_acc1": float(max_acc1),
        META_KEY: {"format": FORMAT_VERSION, "config": model.config.to_dict(), **(record or {})},
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
