"""Small CPU training/evaluation loop (used for the shipped digits model).

Loss and evaluation follow the official recipe: cross-entropy on the logits
averaged over T, AdamW, cosine schedule, official DSSA firing-rate EMA.
"""
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F

from resformer_deploy.model.resformer import SpikingResformer
from resformer_deploy.util.records import Record

EPOCH_RECORD_VERSION = 1


@dataclass(frozen=True)
class EpochRecord(Record):
    """One epoch of ``train``: the history the example trainers keep in their JSON summaries."""
    version: int
    epoch: int
    loss: float  # mean cross-entropy over the epoch's samples
    train_acc: float  # on the augmented training batches, as they were trained
    seconds: float
    test_acc: Optional[float] = None  # ``eval_fn()`` after the epoch, when one was given

    def to_plain(self) -> dict:
        """The record as the summaries store it (``test_acc`` only when measured)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def log_line(self) -> str:
        return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in self.to_plain().items() if k != "version")


@torch.no_grad()
def predict(model: SpikingResformer, x: torch.Tensor, batch_size: int = 256,
            progress: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """Mean-over-T logits ``[N, K]`` in eval mode."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        out.append(model(x[i:i + batch_size]).mean(0))
        if progress:
            progress(min(batch_size, len(x) - i))
    return torch.cat(out) if out else torch.zeros(0, model.config.num_classes)


def accuracy(scores, labels) -> Optional[float]:
    """The fraction of samples classified correctly: the one accuracy of the package.

    ``scores``: class scores ``[N, K]`` (floating point; the class is the arg-max) or predicted
    classes ``[N]`` (integers, a tensor or list); ``labels``: ``[N]``, or None (no labels: None).
    NaN for no samples."""
    if labels is None:
        return None
    scores, labels = torch.as_tensor(scores), torch.as_tensor(labels)
    pred = scores.argmax(-1) if scores.is_floating_point() else scores
    if pred.shape != labels.shape:
        raise ValueError(f"{tuple(pred.shape)} predictions for {tuple(labels.shape)} labels")
    return float((pred == labels).float().mean()) if len(labels) else float("nan")


def augment_shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Random integer translation by up to ``max_shift`` pixels (zero fill)."""
    if max_shift <= 0:
        return x
    B, _, H, W = x.shape
    pad = F.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (B,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (B,), generator=gen)
    return torch.stack([pad[i, :, dy[i]:dy[i] + H, dx[i]:dx[i] + W] for i in range(B)])


def train(model: SpikingResformer, x_train, y_train, epochs: int = 30, batch_size: int = 64,
          lr: float = 2e-3, weight_decay: float = 0.01, seed: int = 0, max_shift: int = 1,
          log: Optional[Callable[[str], None]] = None,
          eval_fn: Optional[Callable[[], float]] = None) -> List[EpochRecord]:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    history = []
    for epoch in range(epochs):
        model.train()
        t0 = time.time()
        perm = torch.randperm(len(x_train), generator=gen)
        loss_sum, correct = 0.0, 0
        for i in range(0, len(x_train), batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = augment_shift(x_train[idx], gen, max_shift), y_train[idx]
            logits = model(xb).mean(0)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss) * len(idx)
            correct += int((logits.argmax(-1) == yb).sum())
        seconds = time.time() - t0
        rec = EpochRecord(EPOCH_RECORD_VERSION, epoch + 1, loss_sum / len(x_train), correct / len(x_train), seconds,
                          None if eval_fn is None else eval_fn())
        history.append(rec)
        if log:
            log(rec.log_line())
    model.eval()
    return history
