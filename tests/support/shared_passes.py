"""PyTorch forward passes shared by the tests of one pytest process (issue 27: the cifar model's 718
held-out images were run twice in the compute shard, by hand in tests/model/test_trained_models.py
and by `demo --model cifar` in tests/cli/test_demo_models.py, ~1 CPU-min each time).

A pass is keyed by the model's weights and buffers, the exact bytes of its input and the batch
size, so a hit returns what the same computation returned on the same bits in this process; any
other input (another order, one bit off, another batch) computes anew. Nothing is kept on disk."""
import hashlib

import torch

_MEAN_LOGITS = {}


def _key(model, x, batch_size):
    h = hashlib.sha256()
    for name, t in list(model.state_dict().items()) + [("__input__", x)]:
        t = t.detach().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return (type(model).__qualname__, model.training, batch_size, h.hexdigest())


def mean_logits(model, x, batch_size, compute):
    """``compute()`` (mean-over-T logits of ``model`` on ``x`` in batches of ``batch_size``),
    or the result of the same call earlier in this process."""
    key = _key(model, x, batch_size)
    if key not in _MEAN_LOGITS:
        _MEAN_LOGITS[key] = compute()
    return _MEAN_LOGITS[key].clone()


def sharing_predict(predict):
    """``training.loop.predict`` sharing its result through ``mean_logits`` (for monkeypatch)."""
    def shared(model, x, batch_size=256, progress=None):
        model.eval()  # predict's own first step: the key sees the mode it computes in
        ran = []
        logits = mean_logits(model, x, batch_size, lambda: ran.append(1) or predict(model, x, batch_size, progress))
        if progress and not ran:
            progress(len(x))
        return logits
    return shared
