"""The shipped, trained digits model and its fixed held-out split."""
import numpy as np
import torch

from resformer_deploy.model.checkpoint import load_checkpoint
from resformer_deploy.data.digits import load_digits_split, split_indices


def test_split_is_fixed_stratified_and_disjoint():
    from sklearn.datasets import load_digits
    y = load_digits().target
    train, test = split_indices(y)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(y) == 1797
    for c in range(10):  # ~20 % of every class held out
        n = (y == c).sum()
        assert ((y[test] == c).sum()) == round(n * 0.2)
    again = split_indices(y)[1]
    assert np.array_equal(test, again)


def test_shipped_model_accuracy_on_held_out_split(digits_ckpt):
    ck = load_checkpoint(digits_ckpt)
    split = load_digits_split()
    rec = ck.records.evaluation
    assert rec.split.test_index_sha256 == split.fingerprint()
    with torch.no_grad():
        logits = ck.model(split.x_test).mean(0)  # plain forward, no helper from the package
    acc = float((logits.argmax(-1) == split.y_test).float().mean())
    assert acc >= 0.90
    assert abs(acc - rec.test_accuracy) < 1e-9  # the recorded figure is reproducible
    # The accuracy is not a fluke of a constant predictor: every class is predicted.
    assert set(logits.argmax(-1).tolist()) == set(range(10))


def test_shipped_model_is_small_and_uses_official_layout(digits_ckpt):
    assert digits_ckpt.stat().st_size < 2_000_000
    raw = torch.load(digits_ckpt, weights_only=True)
    assert set(raw) == {"model", "epoch", "max_acc1", "resformer_deploy"}
    assert "layers.0.0.firing_rate_x" in raw["model"]
