"""Train the `dvsg` SpikingResformer topology at its native 64x64, T=16 on generated DVS digits.

The official DVS128 Gesture topology (3x3 stem taking the 2 polarity channels, stages of 1/2/3
DSSA+GWFFN blocks, patch sizes 4/2/1, heads 1/3/6, PLIF neurons) at reduced widths, trained on
CPU on the N-MNIST-style event frames of resformer_deploy.data.generators.digits_events
(spikingjelly frames_number=16, split_by='number'), read back with the `dvs` preset exactly as
``--data DIR`` reads them (event counts, no normalisation).

At 64x64 the DSSA attention maps (stage 1: 256 patches x 4096 positions per step) cost the same
at any width, so training runs in phases of growing cost (``--phase SIZE:T:EPOCHS:LR:SAMPLES[:BATCH]``):
coarser frames first -- T=4 frames are the sums of 4 consecutive T=16 frames (the same events in
4 slices, as split_by='number' with 4 frames slices them), 32x32 frames the 2x2 sums of the
64x64 ones (a sensor with 2x2 binned pixels) -- on the same weights (no weight depends on the
image size or T; the DSSA's patch count follows the size), last at the model's 64x64, T=16.
The recorded accuracy is at 64x64, T=16 on the whole held-out split. Reproduce the shipped
model with:

    python examples/dvs_digits/train.py --seed 0 --out examples/dvs_digits/dvs_digits_resformer.pt
"""
import argparse
import os
import sys

# OpenMP threads that sleep instead of spinning while they wait: on a machine shared with other
# jobs, spinning threads steal each other's CPU (training runs ~2x faster here with PASSIVE).
# Read by the OpenMP runtime when torch loads, hence before the import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import train_common as tc  # noqa: E402  (examples/train_common.py)

from resformer_deploy.data.generators import digits_events  # noqa: E402
from resformer_deploy.model.checkpoint import atomic_write  # noqa: E402
from resformer_deploy.model.resformer import build_model  # noqa: E402
from resformer_deploy.model.variants import get_config  # noqa: E402
from resformer_deploy.training.loop import accuracy, predict, train  # noqa: E402

# official `dvsg` variant with every width divided by 2: planes 32/96/192 -> 16/48/96 (head
# dimension 16 in every stage), GWFFN groups of 8 channels; 2 input channels (the polarities,
# as the official DVS128 Gesture stem) and the 10 digit classes
OVERRIDES = dict(planes=(16, 48, 96), group_size=8, in_channels=2, num_classes=10)
PRESET = "dvs"
MONITOR = 96  # held-out samples evaluated after every epoch (progress only; not used for choices)
SUBSET = 48   # held-out samples whose accuracy is recorded for the quick check of the shipped model


class Flat(nn.Module):
    """Takes frames flattened to [B, T*2, H, W] (event counts), so that the training loop's
    random-shift augmentation (resformer_deploy.training.loop.augment_shift, [B, C, H, W])
    shifts every frame of a sample alike; the model gets float [B, T, 2, H, W]."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    def forward(self, x):
        B, TC, H, W = x.shape
        return self.model(x.float().reshape(B, TC // 2, 2, H, W))


def coarse(x: torch.Tensor, T: int, size: int) -> torch.Tensor:
    """uint8 [N, 16, 2, 64, 64] -> int16 [N, T, 2, size, size]: sums of 16 / T consecutive frames
    and of (64 / size)^2 neighbouring pixels."""
    N, T0, C, H, W = x.shape
    f = H // size
    return x.reshape(N, T, T0 // T, C, size, f, size, f).sum((2, 5, 7), dtype=torch.int16)


def flat(x):
    return x.reshape(x.shape[0], -1, *x.shape[-2:])


def strided(n, count):
    """``count`` indices spread evenly over 0..n-1 (the readers order samples by class)."""
    return torch.arange(count) * n // count


# the last phase in batches of 4: at 64x64, T=16 a batch of 16 keeps >24 GiB of activations for
# the backward pass (the run was killed for memory)
DEFAULT_PHASES = ("32:4:8:2e-3:2876", "64:4:1:1e-3:1438", "64:16:1:5e-4:384:4")


def parse_phase(text, batch_size):
    size, T, epochs, lr, samples, *batch = text.split(":")
    return int(size), int(T), int(epochs), float(lr), int(samples), int(batch[0]) if batch else batch_size


def phase_file(state_dir, k, phases, seed):
    """Where the weights after phase k are kept (``--resume``), named by the phases up to k."""
    import hashlib
    key = hashlib.sha256(repr((seed, phases[:k + 1])).encode()).hexdigest()[:12]
    return os.path.join(state_dir, f"phase{k}-{key}.pt")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--phase", action="append", default=None,
                    help="SIZE:T:EPOCHS:LR:SAMPLES[:BATCH], in order; default " + " ".join(DEFAULT_PHASES))
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default="/tmp/resformer_data/dvs_digits",
                    help="where the generated data set is written (regenerated on every run)")
    ap.add_argument("--no-fast-neurons", action="store_true", help="train with the package's eager neurons")
    ap.add_argument("--limit-test", type=int, default=None, help="first N held-out samples only (smoke runs)")
    ap.add_argument("--reuse-data", action="store_true", help="do not regenerate --data-dir (smoke runs)")
    ap.add_argument("--out", default="examples/dvs_digits/dvs_digits_resformer.pt")
    ap.add_argument("--state-dir", default="/tmp/resformer_data/dvs_digits_state",
                    help="the weights after each phase are kept here")
    ap.add_argument("--resume", action="store_true",
                    help="start after the last phase whose weights --state-dir holds (same seed, phases, data)")
    args = ap.parse_args(argv)
    phases = [parse_phase(p, args.batch_size) for p in (args.phase or DEFAULT_PHASES)]
    os.makedirs(args.state_dir, exist_ok=True)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    if args.reuse_data and os.path.isdir(args.data_dir):
        data = {"generator": "resformer_deploy.data.generators.digits_events", "reused": args.data_dir}
    else:
        data = digits_events.build(args.data_dir)
    print(f"data: {data}", flush=True)
    cfg = get_config("dvsg", **OVERRIDES)
    x_train, y_train, train_desc, pre = tc.load_split(args.data_dir, "train", PRESET, cfg, dtype=torch.uint8)
    x_test, y_test, test_desc, _ = tc.load_split(args.data_dir, "test", PRESET, cfg, dtype=torch.uint8)
    if args.limit_test:
        x_test, y_test = x_test[strided(len(y_test), args.limit_test)], y_test[strided(len(y_test), args.limit_test)]
    # a fixed shuffle, so that a phase's first SAMPLES hold every class
    order = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(args.seed))
    x_train, y_train = x_train[order], y_train[order]
    monitor = strided(len(y_test), min(MONITOR, len(y_test)))
    log = lambda s: print(s, flush=True)  # noqa: E731
    history, state, phase_seconds, resumed = [], None, [], None
    if args.resume:  # the weights after the last phase done, with the history that seeds the next
        done = [k for k in range(len(phases)) if os.path.exists(phase_file(args.state_dir, k, phases, args.seed))]
        if done:
            k = max(done)
            kept = torch.load(phase_file(args.state_dir, k, phases, args.seed), weights_only=True)
            state, history, phase_seconds = kept["state"], kept["history"], kept["seconds"]
            resumed = {"after_phase": k, "file": phase_file(args.state_dir, k, phases, args.seed)}
            log(f"resuming after phase {k} from {resumed['file']}")
    with tc.fast_neurons(not args.no_fast_neurons):
        for k, (size, T, epochs, lr, samples, batch) in enumerate(phases):
            if k < len(phase_seconds):
                continue
            clock = tc.Clock()
            model = build_model(cfg.replace(img_size=size, T=T))
            if state is not None:
                model.load_state_dict(state)  # the same weights; lenth follows img_size
            net = Flat(model)
            xt, yt = flat(coarse(x_train[:samples], T, size)), y_train[:samples]
            xm = flat(coarse(x_test[monitor], T, size))
            log(f"phase {size}x{size} T={T}: {len(xt)} samples x {epochs} epochs, lr {lr}, batch {batch}")
            h = train(net, xt, yt, epochs=epochs, batch_size=batch, lr=lr, seed=args.seed + len(history),
                      log=log, eval_fn=lambda: accuracy(predict(net, xm, batch_size=16), y_test[monitor]))
            history += [dict(r.to_plain(), size=size, T=T, monitor=f"{len(monitor)} held-out samples") for r in h]
            state = model.state_dict()
            phase_seconds.append(clock())
            atomic_write(phase_file(args.state_dir, k, phases, args.seed), lambda tmp: torch.save(
                {"state": state, "history": history, "seconds": phase_seconds}, tmp))
            del xt
    seconds = sum(phase_seconds)
    model = build_model(cfg)
    model.load_state_dict(state)
    model.eval()
    net = Flat(model)
    log(f"trained in {seconds:.0f} s; evaluating at 64x64, T={cfg.T} with the package's neurons")
    # the recorded figures: the package's own neurons, eval mode, T=16 frames as --data gives them
    scores = predict(net, flat(x_test), batch_size=16)
    test_acc = accuracy(scores, y_test)
    sub = strided(len(y_test), min(SUBSET, len(y_test)))
    sub_acc = accuracy(scores[sub], y_test[sub])
    tr = strided(len(y_train), min(len(y_test), len(y_train)))
    train_acc = accuracy(predict(net, flat(x_train[tr]), batch_size=16), y_train[tr])
    record = {
        "training": {
            "command": "python examples/dvs_digits/train.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "seed": args.seed, "phases": [{"size": a, "T": b, "epochs": c, "lr": d, "samples": min(e, len(y_train)),
                                           "batch_size": f} for a, b, c, d, e, f in phases],
            "phase_seconds": [round(t, 1) for t in phase_seconds], "resumed": resumed,
            "batch_size": args.batch_size, "threads": args.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "fast_neurons": not args.no_fast_neurons, "seconds": round(seconds, 1), "machine": tc.machine(),
            "variant": "dvsg", "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in OVERRIDES.items()},
        },
        "evaluation": {
            "dataset": data, "preset": pre, "train_source": train_desc, "test_source": test_desc,
            "n_train": len(y_train), "n_test": len(y_test), "test_label_sha256": tc.sha256_labels(y_test),
            "test_accuracy": test_acc, "train_accuracy": train_acc, "train_accuracy_samples": len(tr),
            # a fixed subset for quick checks (tests/model/test_trained_models.py): held-out sample
            # i * n_test // count in the reader's order, i = 0..count-1
            "test_subset": {"count": len(sub), "rule": "i * n_test // count", "accuracy": sub_acc},
        },
    }
    tc.save(args.out, model, sum(p[2] for p in phases), record, history)
    print(f"test accuracy {100 * test_acc:.2f}% ({len(y_test)} held-out samples, T={cfg.T}), subset "
          f"{100 * sub_acc:.2f}% ({len(sub)}), train accuracy {100 * train_acc:.2f}% ({len(tr)}), {seconds:.0f} s "
          f"-> {args.out}", flush=True)


if __name__ == "__main__":
    main()
