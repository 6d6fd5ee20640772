"""Shared by the example training scripts for the official topologies at native resolution
(examples/cifar_digits/train.py, examples/dvs_digits/train.py): reading a generated data set the
way ``--data`` does, a faster training-time neuron loop, and the checkpoint + JSON record in the
format of examples/digits/digits_resformer.{pt,json}."""
import contextlib
import json
import math
import platform
import time
from pathlib import Path

import torch

from resformer_deploy.data.loader import DataLoader
from resformer_deploy.data.preprocess import Preprocessor
from resformer_deploy.data.sources import open_source
from resformer_deploy.model import neurons
from resformer_deploy.model.checkpoint import atomic_write, save_checkpoint
from resformer_deploy.model.resformer import count_parameters


def load_split(path, split, preset, cfg, dtype=torch.float32, batch_size=256):
    """All samples of one split as tensors (x, y), read and preprocessed exactly as ``--data``
    reads them (open_source + the preset's Preprocessor); ``dtype`` uint8 keeps event counts
    small in memory (exact: counts are small integers)."""
    source = open_source(str(path), split=split)
    pre = Preprocessor(preset, cfg.img_size, cfg.in_channels, cfg.T if source.modality == "frames" else None)
    xs, ys = [], []
    for batch in DataLoader(source, pre, batch_size=batch_size):
        x = batch.x
        if dtype == torch.uint8:
            if not bool((x == x.round()).all()) or float(x.min()) < 0 or float(x.max()) > 255:
                raise ValueError(f"{source.describe()}: values are not counts 0..255")
        xs.append(x.to(dtype))
        ys.append(batch.y)
    return torch.cat(xs), torch.cat(ys), source.describe(), pre.to_json()


# --- training-time neurons ------------------------------------------------------------------
# The package's neurons (resformer_deploy/model/neurons.py) loop over T in eager PyTorch, ~10
# element-wise kernels a step, each with its autograd node: on CPU the attention maps' neurons
# dominate training time. For training only, the same step -- charge v + (x - v) / tau (PLIF:
# * sigmoid(w)), Heaviside spike, hard reset to 0 with the reset detached, ATan surrogate
# gradient alpha / 2 / (1 + (pi / 2 * alpha * x)^2) -- is compiled by torch.compile into one
# fused kernel forward and one backward. The surrogate is written as the straight-through form
# H(x) + (g(x) - g(x).detach()) with g = atan(pi / 2 * alpha * x) / pi, whose derivative is that
# surrogate and whose value is exactly H(x). Evaluation and the recorded accuracies use the
# package's own neurons (``fast_neurons`` restores them).

def _step(v, x, k, thr: float, c: float):
    h = v + (x - v) * k
    g = torch.atan((h - thr) * c) * (1.0 / math.pi)
    hard = (h >= thr).to(h)
    return hard + (g - g.detach()), h * (1.0 - hard)


_compiled = None


def _fast_forward(self, x_seq):
    k = self.w.sigmoid() if isinstance(self, neurons.PLIF) else torch.tensor(1.0 / self.tau)
    c = math.pi / 2 * self.surrogate_alpha
    v = torch.zeros_like(x_seq[0])
    out = []
    for t in range(x_seq.shape[0]):
        s, v = _compiled(v, x_seq[t], k, float(self.v_threshold), c)
        out.append(s)
    return torch.stack(out)


@contextlib.contextmanager
def fast_neurons(enabled=True):
    """Train with the compiled neuron step (v_reset = 0, as every model of the package has)."""
    global _compiled
    if not enabled:
        yield
        return
    import torch._dynamo
    torch._dynamo.config.cache_size_limit = 256  # one graph per tensor shape / requires_grad
    if _compiled is None:
        _compiled = torch.compile(_step, dynamic=True)
    original = neurons._MultiStepNeuron.forward
    neurons._MultiStepNeuron.forward = _fast_forward
    try:
        yield
    finally:
        neurons._MultiStepNeuron.forward = original


# --- records ----------------------------------------------------------------------------------

def machine() -> str:
    return f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__}".strip()


def save(out, model, epochs, record, history):
    """Checkpoint (official layout + config record, resformer_deploy.model.checkpoint) and the JSON
    summary next to it, as examples/train_digits.py writes them."""
    out = Path(out)
    save_checkpoint(out, model, epoch=epochs, max_acc1=100 * record["evaluation"]["test_accuracy"], record=record)
    summary = dict(record, params_ex_bn=count_parameters(model), params_total=count_parameters(model, False),
                   checkpoint=str(out), checkpoint_bytes=out.stat().st_size, history=history)
    atomic_write(out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2) + "\n"))
    return summary


def sha256_labels(y) -> str:
    from resformer_deploy.data.generators.recorded import labels_sha256  # what demo checks
    return labels_sha256(y)


class Clock:
    def __init__(self):
        self.t0 = time.time()

    def __call__(self):
        return time.time() - self.t0
