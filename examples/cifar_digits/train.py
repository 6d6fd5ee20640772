"""Train the `cifar` SpikingResformer topology at its native 32x32, T=4 on generated digit images.

The official CIFAR topology (3x3 stem, stages of 1/2/3 DSSA+GWFFN blocks, patch sizes 4/2/1,
heads 1/3/6, LIF neurons) at reduced widths, trained on CPU on the data set of
resformer_deploy.data.generators.digits_images (CIFAR-10 python layout), which is read back and
normalised with the `cifar10` preset exactly as ``--data DIR`` reads it (CIFAR-10 mean/std, the
official CIFAR transform). Reproduce the shipped model with:

    python examples/cifar_digits/train.py --seed 0 --epochs 8 --out examples/cifar_digits/cifar_digits_resformer.pt
"""
import argparse
import os
import sys

# OpenMP threads that sleep instead of spinning while they wait: on a machine shared with other
# jobs, spinning threads steal each other's CPU (training runs ~2x faster here with PASSIVE).
# Read by the OpenMP runtime when torch loads, hence before the import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import train_common as tc  # noqa: E402  (examples/train_common.py)

from resformer_deploy.data.generators import digits_images  # noqa: E402
from resformer_deploy.model.resformer import build_model  # noqa: E402
from resformer_deploy.model.variants import get_config  # noqa: E402
from resformer_deploy.training.loop import accuracy, predict, train  # noqa: E402

# official `cifar` variant with every width divided by 4: planes 64/192/384 -> 16/48/96
# (head dimensions 16, 16, 16), GWFFN groups of 8 channels
OVERRIDES = dict(planes=(16, 48, 96), group_size=8)
PRESET = "cifar10"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default="/tmp/resformer_data/cifar_digits",
                    help="where the generated data set is written (regenerated on every run)")
    ap.add_argument("--no-fast-neurons", action="store_true", help="train with the package's eager neurons")
    ap.add_argument("--limit-train", type=int, default=None, help="first N training images only (smoke runs)")
    ap.add_argument("--out", default="examples/cifar_digits/cifar_digits_resformer.pt")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    data = digits_images.build(args.data_dir)
    print(f"data: {data['n_train']} train / {data['n_test']} test images in {data['path']} "
          f"({data['seconds']} s)", flush=True)
    cfg = get_config("cifar", **OVERRIDES)
    x_train, y_train, train_desc, pre = tc.load_split(args.data_dir, "train", PRESET, cfg)
    x_test, y_test, test_desc, _ = tc.load_split(args.data_dir, "test", PRESET, cfg)
    if args.limit_train:
        x_train, y_train = x_train[:args.limit_train], y_train[:args.limit_train]
    model = build_model(cfg)
    clock = tc.Clock()
    with tc.fast_neurons(not args.no_fast_neurons):
        history = train(model, x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        seed=args.seed, log=lambda s: print(s, flush=True),
                        eval_fn=lambda: accuracy(predict(model, x_test), y_test))
    seconds = clock()
    # the recorded figures: the package's own neurons, eval mode
    test_acc = accuracy(predict(model, x_test), y_test)
    train_acc = accuracy(predict(model, x_train), y_train)
    record = {
        "training": {
            "command": "python examples/cifar_digits/train.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "threads": args.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "fast_neurons": not args.no_fast_neurons, "seconds": round(seconds, 1),
            "machine": tc.machine(), "variant": "cifar", "overrides": {k: list(v) if isinstance(v, tuple) else v
                                                                        for k, v in OVERRIDES.items()},
        },
        "evaluation": {
            "dataset": data, "preset": pre, "train_source": train_desc, "test_source": test_desc,
            "n_train": len(y_train), "n_test": len(y_test), "test_label_sha256": tc.sha256_labels(y_test),
            "test_accuracy": test_acc, "train_accuracy": train_acc,
        },
    }
    tc.save(args.out, model, args.epochs, record, [h.to_plain() for h in history])
    print(f"test accuracy {100 * test_acc:.2f}% ({len(y_test)} held-out images), train accuracy "
          f"{100 * train_acc:.2f}%, {seconds:.0f} s -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
