"""Reading and writing SpikingResformer checkpoints.

Accepted layouts: the official training checkpoint ``{'model': state_dict,
'optimizer': ..., 'epoch': ..., 'max_acc1': ..., 'lr_scheduler': ...}``, a bare
state_dict, and our own ``{'model': ..., 'resformer_deploy': {'config': ...}}``
which additionally records image size and T (the official files do not), and the training and
evaluation records (typed and versioned: model/checkpoint_records.py).
Loading is ``weights_only=True`` unless the caller opts out, and the key
comparison is strict: any missing/unexpected key or shape mismatch is an error
that names the keys.
"""
import math
import pickle
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import torch

from resformer_deploy.model.config import ConfigError, ResformerConfig
from resformer_deploy.errors import CheckpointError, summarize
from resformer_deploy.model.resformer import SpikingResformer
from resformer_deploy.model.variants import VARIANTS, get_config, match_variant

from resformer_deploy.model.checkpoint_records import (FORMAT, META_KEY, CheckpointRecords, EvaluationRecord, current,
                                                       read_records, to_plain)

ZIP_CHUNK = 1 << 20  # records are CRC-checked in pieces: no member is held whole for the check


@dataclass
class LoadedCheckpoint:
    path: str
    model: SpikingResformer
    config: ResformerConfig
    variant: str  # matched official/project variant name or 'custom'
    config_source: str  # 'checkpoint' (stored by us) or 'inferred' (from key shapes)
    meta: Dict = field(default_factory=dict)  # epoch, max_acc1, and META_KEY: our typed records
    notes: list = field(default_factory=list)  # e.g. dtype casts performed

    @property
    def records(self) -> Optional[CheckpointRecords]:
        """Our records (None for an official or bare checkpoint)."""
        return self.meta.get(META_KEY)

    @property
    def evaluation(self) -> Optional[EvaluationRecord]:
        """The evaluation record (held-out accuracy, data set, split, preset), typed; None without one."""
        r = self.records
        return r.evaluation if r is not None else None


# File signatures, to say what a file is when it is not a checkpoint: HDF5 (format spec,
# "Format Signature"), zip (torch.save's format since PyTorch 1.6), gzip, and pickle's PROTO
# opcode (protocol >= 2: torch.save's legacy format, see torch/serialization.py).
_MAGIC = ((b"\x89HDF\r\n\x1a\n", "hdf5"), (b"PK\x03\x04", "zip"), (b"\x1f\x8b", "gzip"), (b"\x80", "pickle"))
FORMAT_NAMES = {"hdf5": "an HDF5 file (a NIR graph?)", "zip": "a zip archive (a PyTorch checkpoint?)",
                "gzip": "a gzip-compressed file", "pickle": "a Python pickle (a legacy PyTorch checkpoint?)"}


def sniff_format(path) -> str:
    """'hdf5', 'zip', 'gzip', 'pickle' or 'unknown', from the first bytes of the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return "unknown"
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), "unknown")


def _torch_detail(e: Exception) -> str:
    """torch's reason without its advice: weights_only failures say "Re-running with weights_only=False
    will likely succeed", which is false for damaged files and nudges toward unsafe loading."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    return text.strip().split("\n")[0] or type(e).__name__


def read_checkpoint_file(path, weights_only: bool = True, unsafe_option: Optional[str] = "--unsafe-load"):
    """``unsafe_option``: the caller's flag for weights_only=False loading, named in the refusal
    of a pickle that holds objects (None: the caller, e.g. `demo`, has no such flag)."""
    p = Path(path)
    try:
        st = p.stat()  # stat, never open: opening a FIFO blocks until a writer appears
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file not found: {path}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"checkpoint path is a directory, not a file: {path}")
    if not stat.S_ISREG(st.st_mode):  # /dev/zero, a FIFO: endless or blocking reads
        raise CheckpointError(f"checkpoint {path} is not a regular file (it is {_special_kind(st)})")
    if st.st_size == 0:
        raise CheckpointError(f"checkpoint file is empty: {path}")
    kind = sniff_format(p)
    if kind == "hdf5":
        raise CheckpointError(f"{path}: is {FORMAT_NAMES[kind]}, not a PyTorch checkpoint")
    if kind == "zip":
        _check_zip(p, path)
    try:
        return torch.load(str(p), map_location="cpu", weights_only=weights_only)
    except Exception as e:  # torch.load raises many types on damaged input (IndexError, EOFError, ...)
        detail = re.search(r"Unsupported (global|class)[^\n]*", str(e))
        if weights_only and detail and isinstance(e, pickle.UnpicklingError):
            # a valid pickle holding objects other than tensors/containers
            hint = f"; if you trust this file, re-run with {unsafe_option}" if unsafe_option else ""
            raise CheckpointError(
                f"{path}: refused by weights_only=True loading ({detail.group(0).strip()}): it pickles Python "
                f"objects besides tensors, and loading those runs code{hint}") from None
        if kind in ("zip", "pickle"):
            what = "zip archive" if kind == "zip" else kind
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint: a {what} that torch.load cannot read "
                                  f"(corrupt, truncated or not written by torch.save: {_torch_detail(e)})") from None
        what = "; it is gzip-compressed" if kind == "gzip" else ""
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint: neither a zip archive nor a pickle (the "
                              f"formats torch.save writes){what}") from None


def _special_kind(st) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(st.st_mode):
            return name
    return "a special file"


def _check_zip(p, path) -> None:
    """Before torch.load: the members' declared sizes fit in memory, and every record matches the
    CRC-32 its zip entry states. torch's reader (caffe2 PyTorchStreamReader) does not check CRCs,
    so a flipped byte inside a tensor would load as a changed weight. Members are read in chunks
    (zipfile checks the CRC at each member's end: CPython Lib/zipfile.py, ZipExtFile._update_crc)."""
    import zipfile
    import zlib
    from resformer_deploy.util.memory_budget import check_bytes
    try:
        z = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError):
        return  # torch.load reports the damage
    with z:
        infos = z.infolist()
        total = sum(i.file_size for i in infos)
        check_bytes(total, f"{path}: zip archive declares {total:,} bytes uncompressed")
        for info in infos:
            try:
                with z.open(info) as f:
                    while f.read(ZIP_CHUNK):
                        pass
            except zipfile.BadZipFile as e:
                what = "fails its CRC-32 check" if "CRC" in str(e) else f"is damaged ({e})"
                raise CheckpointError(f"{path}: record '{info.filename}' {what}: the file is corrupt; not "
                                      f"loaded") from None
            except (EOFError, OSError, zlib.error, NotImplementedError, RuntimeError, ValueError) as e:
                raise CheckpointError(f"{path}: record '{info.filename}' cannot be read "
                                      f"({type(e).__name__}: {e}): the file is corrupt or truncated; not "
                                      f"loaded") from None


def _counter(v, kind):
    """A training counter as a plain finite ``kind`` (int: epoch, float: max_acc1), else None: a
    crafted file may hold a string, a list, a NaN or a tensor there."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1 or v.is_complex() or v.dtype == torch.bool:
            return None
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    if kind is int:
        return int(v) if float(v).is_integer() else None
    return float(v)


def record(meta: dict, name: str) -> Optional[dict]:
    """Our record ``name`` ('training', 'evaluation', 'config') of a loaded checkpoint's metadata as
    plain values (None when the checkpoint has none); checked when the checkpoint was loaded."""
    ours = meta.get(META_KEY)
    if ours is None:
        return None
    r = getattr(ours, name)
    return None if r is None else dict(r) if name == "config" else to_plain(r)


def split_checkpoint(obj, path) -> (Dict[str, torch.Tensor], Dict):
    """Return (state_dict, metadata) from any accepted layout."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict (state_dict or training checkpoint), "
                              f"found {type(obj).__name__}")
    meta = {}
    if "model" in obj and isinstance(obj["model"], dict):
        sd = obj["model"]
        # training counters as plain numbers (anything else would break `info`'s formatting)
        meta = {k: n for k, n in (("epoch", _counter(obj.get("epoch"), int)),
                                  ("max_acc1", _counter(obj.get("max_acc1"), float))) if n is not None}
        if META_KEY in obj:
            meta[META_KEY] = read_records(obj[META_KEY], path)
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


def check_tensor_values(sd, expected, path) -> list:
    """Refuse NaN/inf, complex and inexact integer values where the model holds floats; return
    notes for the exact casts (half precision, integers, bools) that loading performs."""
    bad, inexact, notes = [], [], []
    for k, v in sd.items():
        if v.is_complex():
            bad.append(f"{k} (complex {v.dtype})")
        elif v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad.append(f"{k} ({int((~torch.isfinite(v)).sum()):,} of {v.numel():,} values NaN/inf)")
        elif expected[k].dtype == torch.float32 and v.numel() and v.dtype != torch.bool:
            big = float(v.abs().max())
            if (not v.is_floating_point() and big > 2 ** 24) or big > torch.finfo(torch.float32).max:
                # float32 holds every integer up to 2^24 exactly, and nothing beyond ~3.4e38
                inexact.append(f"{k} ({str(v.dtype).replace('torch.', '')}, |max| {big:,.0f})")
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} tensor(s) with values the model cannot use: {summarize(bad, 3)}")
    if inexact:
        raise CheckpointError(f"{path}: {len(inexact)} tensor(s) would not convert exactly to the model's float32: "
                              f"{summarize(inexact, 3)}")
    want_float = {k: expected[k].is_floating_point() for k in sd}
    for label, keys in (
            ("half-precision", [k for k, v in sd.items() if v.dtype in (torch.float16, torch.bfloat16)]),
            ("double-precision", [k for k, v in sd.items() if v.dtype == torch.float64 and want_float[k]
                                  and expected[k].dtype != torch.float64]),
            ("integer/bool", [k for k, v in sd.items() if want_float[k] and not v.is_floating_point()]),
            ("floating-point", [k for k, v in sd.items() if v.is_floating_point() and not want_float[k]])):
        if keys:  # AMP-trained official checkpoints, e.g., may hold fp16 firing-rate buffers
            kinds = sorted({str(sd[k].dtype).replace("torch.", "") for k in keys})
            targets = sorted({str(expected[k].dtype).replace("torch.", "") for k in keys})
            notes.append(f"cast {len(keys)} {label} tensor(s) ({'/'.join(kinds)}) to {'/'.join(targets)}: "
                         f"{summarize(keys, 3)}")
    return notes


def load_checkpoint(path, variant: Optional[str] = None, img_size: Optional[int] = None,
                    T: Optional[int] = None, num_classes: Optional[int] = None,
                    weights_only: bool = True, unsafe_option: Optional[str] = "--unsafe-load") -> LoadedCheckpoint:
    obj = read_checkpoint_file(path, weights_only=weights_only, unsafe_option=unsafe_option)
    sd, meta = split_checkpoint(obj, path)
    rows = sd.get("classifier.weight")
    if num_classes and rows is not None and rows.dim() == 2 and rows.shape[0] != num_classes:
        # refused before the model (whose classifier has num_classes rows) is allocated
        raise CheckpointError(f"{path}: {num_classes} classes requested, but classifier.weight has "
                              f"{rows.shape[0]} rows (the checkpoint's classes)")
    ours = meta.get(META_KEY)
    stored = ours.config if ours is not None else None  # its shape and integer fields checked in read_records
    if variant is not None:
        try:
            cfg = get_config(variant, img_size=img_size, T=T, num_classes=num_classes)
        except ConfigError as e:
            raise CheckpointError(str(e)) from None
        source = "variant"
    elif stored is not None:
        try:
            cfg = ResformerConfig.from_dict(dict(stored))
        except (ConfigError, TypeError, ValueError, OverflowError) as e:
            raise CheckpointError(f"{path}: stored config is invalid ({e})") from None
        over = {k: v for k, v in dict(img_size=img_size, T=T, num_classes=num_classes).items() if v}
        try:  # an override the stored architecture cannot take is the caller's error, not the file's
            cfg = cfg.replace(**over) if over else cfg
        except ConfigError as e:
            given = ", ".join(f"{k} {v}" for k, v in over.items())
            raise CheckpointError(f"{path}: {given} does not fit the stored architecture ({e})") from None
        source = "checkpoint"
    else:
        cfg = infer_config(sd, path, img_size=img_size, T=T, num_classes=num_classes)
        source = "inferred"
    model = SpikingResformer(cfg)
    compare_state_dict(model, sd, path, f"SpikingResformer '{cfg.name}'")
    expected = model.state_dict()
    notes = check_tensor_values(sd, expected, path)
    # load_state_dict would copy (and cast) silently; the casts are stated in the notes instead
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()}, strict=True)
    model.eval()
    return LoadedCheckpoint(str(path), model, cfg, match_variant(cfg), source, meta, notes)


def atomic_write(path, write_fn) -> None:
    """Kept for callers of the name-based form (examples/train_digits.py): see
    resformer_deploy.util.outputs.atomic_write (temp file + rename, devices written in place)."""
    from resformer_deploy.util.outputs import atomic_write as write
    write(path, write_fn)


def save_checkpoint(path, model: SpikingResformer, epoch: int = 0, max_acc1: float = 0.0,
                    record: Optional[dict] = None) -> None:
    """Official layout plus our config record (still loadable by the official code's --resume
    path for 'model', and by us without extra arguments). ``record``: ``{'training': ...,
    'evaluation': ...}``, each a TrainingRecord / EvaluationRecord or a mapping of its fields;
    written at the current version after the same checks a reader makes."""
    unknown = sorted(set(record or {}) - {"training", "evaluation"})
    if unknown:
        raise CheckpointError(f"{path}: no checkpoint record named {', '.join(map(repr, unknown))} (training, "
                              f"evaluation)")
    ours = {"format": FORMAT, "config": model.config.to_dict()}
    for kind, content in (record or {}).items():
        if content is not None:
            ours[kind] = to_plain(current(kind, content, path))
    payload = {"model": model.state_dict(), "epoch": int(epoch), "max_acc1": float(max_acc1), META_KEY: ours}
    import io
    from resformer_deploy.util.outputs import write_bytes
    buf = io.BytesIO()  # serialised in memory: a full disk then fails in one plain write (outputs.py)
    torch.save(payload, buf)
    with buf.getbuffer() as view:
        write_bytes(path, view)
