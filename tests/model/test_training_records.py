"""The training loop's history is typed (training/loop.py EpochRecord): one record per epoch, the
figures it logs, and the plain form the example trainers store in their JSON summaries."""
import json

import torch

from resformer_deploy.model.resformer import build_model
from resformer_deploy.training.loop import EPOCH_RECORD_VERSION, EpochRecord, accuracy, predict, train


def test_train_returns_one_typed_record_per_epoch():
    torch.manual_seed(0)
    model = build_model("digits")
    x = torch.rand(8, 1, 8, 8)
    y = torch.arange(8) % 10
    lines = []
    history = train(model, x, y, epochs=2, batch_size=4, log=lines.append,
                    eval_fn=lambda: accuracy(predict(model, x), y))
    assert [type(h) for h in history] == [EpochRecord, EpochRecord] and [h.epoch for h in history] == [1, 2]
    for h, line in zip(history, lines):
        assert h.version == EPOCH_RECORD_VERSION and 0 <= h.train_acc <= 1 and h.loss > 0 and h.seconds >= 0
        assert h.test_acc == accuracy(predict(model, x), y) or h.epoch == 1  # the model after epoch 2 is final
        assert line == f"epoch={h.epoch} loss={h.loss:.4f} train_acc={h.train_acc:.4f} seconds={h.seconds:.4f} " \
                       f"test_acc={h.test_acc:.4f}"
        plain = h.to_plain()
        assert json.loads(json.dumps(plain)) == plain and set(plain) == {"version", "epoch", "loss", "train_acc",
                                                                          "seconds", "test_acc"}
    no_eval = train(model, x, y, epochs=1, batch_size=8)
    assert no_eval[0].test_acc is None and "test_acc" not in no_eval[0].to_plain()
