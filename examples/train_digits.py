"""Train the small SpikingResformer on scikit-learn's digits and save the checkpoint.

Reproduce the shipped model with:
    python examples/train_digits.py --seed 0 --epochs 40 --out examples/digits/digits_resformer.pt
"""
import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from resformer_deploy.model.checkpoint import atomic_write, save_checkpoint
from resformer_deploy.data.digits import SPLIT_SEED, TEST_FRACTION, load_digits_split
from resformer_deploy.model.resformer import build_model, count_parameters
from resformer_deploy.training.loop import accuracy, predict, train


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="examples/digits/digits_resformer.pt")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    split = load_digits_split()
    model = build_model("digits")
    t0 = time.time()
    history = train(model, split.x_train, split.y_train, epochs=args.epochs, batch_size=args.batch_size,
                    lr=args.lr, seed=args.seed, log=lambda s: print(s, flush=True),
                    eval_fn=lambda: accuracy(predict(model, split.x_test), split.y_test))
    seconds = time.time() - t0
    test_acc = accuracy(predict(model, split.x_test), split.y_test)
    train_acc = accuracy(predict(model, split.x_train), split.y_train)
    record = {
        "training": {
            "command": "python examples/train_digits.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "threads": args.threads, "seconds": round(seconds, 1),
            "machine": f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__}".strip(),
        },
        "evaluation": {
            "dataset": "sklearn.datasets.load_digits",
            "split": {"seed": SPLIT_SEED, "test_fraction": TEST_FRACTION,
                      "n_train": len(split.y_train), "n_test": len(split.y_test),
                      "test_index_sha256": split.fingerprint()},
            "test_accuracy": test_acc, "train_accuracy": train_acc,
        },
    }
    out = Path(args.out)
    save_checkpoint(out, model, epoch=args.epochs, max_acc1=100 * test_acc, record=record)
    summary = dict(record, params_ex_bn=count_parameters(model), params_total=count_parameters(model, False),
                   checkpoint=str(out), history=[h.to_plain() for h in history])
    atomic_write(out.with_suffix(".json"),
                 lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2) + "\n"))
    print(f"test accuracy {100 * test_acc:.2f}% ({len(split.y_test)} held-out samples), "
          f"train accuracy {100 * train_acc:.2f}%, {seconds:.0f} s -> {out}")


if __name__ == "__main__":
    main()
