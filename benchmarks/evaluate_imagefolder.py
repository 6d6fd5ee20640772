"""`resformer-deploy evaluate` on an ImageFolder of JPEGs: throughput, share of wall time spent
waiting for data, peak memory, for 1,000 images and for 100 (memory must not grow with the count).

    .venv/bin/python benchmarks/evaluate_imagefolder.py [--images 1000] [--small 100]
        [--targets torch,loihi2-emu] [--variant ti] [--img-size N] [--batch-size 16]
        [--workdir DIR] [--json-out benchmarks/evaluate_imagefolder.json]

Data: ``--images`` JPEGs of random sizes (shorter side 160-500 px, aspect 0.6-1.7, like ImageNet
validation images), one class directory per class of the model (ti: 1,000 classes, one image
each), written with resformer_deploy.data.writers.write_image_folder one image at a time; plus a
16-image calibration folder for fixed-point targets (``--calib-data``: never the evaluation images).
Model: an official-layout checkpoint of ``--variant`` made by benchmarks/fullsize_models.py
(random weights, firing-rate buffers calibrated; ti at 224 by default). The small run evaluates the
first ``--small`` images of the same folder (``--limit``): a 1,000-class model needs every class
directory to hold an image, so a separate 100-image folder cannot be read for it.

Each run is the CLI in a subprocess (``python -m resformer_deploy.cli.main evaluate``), measured as
benchmarks/fullsize.py measures its rows (``measure``: psutil, sampled every 0.2 s): wall time, peak
PSS of the process tree (the process and all its descendants, summed; PSS does not double-count
shared pages), peak RSS of the process; and, from its JSON, samples/s and the share of wall time
waiting for data (``throughput.loading_share``).
"""
import _bench  # noqa: F401  (this checkout first on sys.path)
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from resformer_deploy.data.writers import write_image_folder
from tests.support.datasets import random_image

REPO = Path(__file__).resolve().parents[1]
CALIB_IMAGES = 16
SEED = 0


class Images:
    """``n`` random JPEG-sized images, made one at a time as the writer asks (never all in memory)."""

    def __init__(self, n: int, seed: int):
        rng = np.random.RandomState(seed)
        short = rng.randint(160, 501, n)
        aspect = rng.uniform(0.6, 1.7, n)
        self.sizes = [(int(s), int(s * a)) if a >= 1 else (int(s / a), int(s)) for s, a in zip(short, aspect)]
        self.seed = seed

    def __len__(self):
        return len(self.sizes)

    def __iter__(self):
        rng = np.random.RandomState(self.seed + 1)
        for h, w in self.sizes:
            yield random_image(rng, h, w)


def write_folder(root: Path, n: int, num_classes: int, seed: int) -> dict:
    t0 = time.perf_counter()
    names = [f"c{c:04d}" for c in range(num_classes)]
    images = Images(n, seed)
    write_image_folder(root, images, [i % num_classes for i in range(n)], names, fmt="JPEG")
    files = sorted(root.rglob("*.jpg"))
    return {"path": str(root), "images": len(files), "classes": num_classes,
            "bytes": sum(f.stat().st_size for f in files), "seconds": round(time.perf_counter() - t0, 1),
            "sizes_hw_min": [min(s[0] for s in images.sizes), min(s[1] for s in images.sizes)],
            "sizes_hw_max": [max(s[0] for s in images.sizes), max(s[1] for s in images.sizes)]}


def evaluate_run(label: str, args: list, json_out: Path, logdir: Path, timeout: float) -> dict:
    """One `evaluate` in a subprocess, measured by benchmarks/fullsize.py ``measure`` (peak PSS of the
    process tree, children included, and peak RSS of the process), plus the figures of its JSON."""
    from fullsize import measure
    argv = [sys.executable, "-m", "resformer_deploy.cli.main", "evaluate", *map(str, args), "--json-out", str(json_out)]
    res = measure(argv, label, logdir, timeout, " ".join(["resformer-deploy", *argv[3:]]))
    if res["exit_code"] != 0:
        return res
    j = json.loads(json_out.read_text())
    tp = j["throughput"]
    res.update(samples=j["samples"], top1=j["top1"], agreement_with_torch=j["agreement_with_torch"],
               samples_per_second=tp["samples_per_second"], loading_share=tp["loading_share"],
               evaluate_s=tp["wall_seconds"], data_wait_s=tp["data_wait_seconds"], seconds=j["seconds"],
               estimate=j["estimate"], calibration=(j["calibration"] or {}).get("source"))
    print(f"[{label}] {j['samples']} samples, {tp['samples_per_second']:.3f} samples/s, loading "
          f"{100 * tp['loading_share']:.2f}% of {tp['wall_seconds']:.1f} s waiting for data", flush=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--targets", default="torch,loihi2-emu")
    ap.add_argument("--variant", default="ti")
    ap.add_argument("--img-size", type=int)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=0, help="seconds per run (0: none)")
    ap.add_argument("--workdir", help="keep data, checkpoint and logs here (default: a temporary directory)")
    ap.add_argument("--json-out", default=str(REPO / "benchmarks" / "evaluate_imagefolder.json"))
    args = ap.parse_args()
    from fullsize_models import generate
    from resformer_deploy.model.checkpoint import load_checkpoint
    from resformer_deploy.reporting.tables import machine_description, write_json

    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="evaluate_bench_")
    work = Path(args.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    try:
        made = generate(work, args.variant, img_size=args.img_size)
        ckpt = made["path"]
        k = load_checkpoint(ckpt, img_size=args.img_size).config.num_classes
        if args.images < k:
            raise SystemExit(f"--images {args.images}: the {args.variant} model has {k} classes, each needs an image")
        data = write_folder(work / "images", args.images, k, SEED)
        calib = write_folder(work / "calibration", CALIB_IMAGES, CALIB_IMAGES, SEED + 100)
        print(f"data: {data['images']} JPEGs ({data['bytes'] / 2 ** 20:.0f} MiB) in {data['seconds']} s; "
              f"checkpoint {ckpt}", flush=True)
        common = [ckpt, "--data", data["path"], "--batch-size", args.batch_size] + \
            (["--img-size", args.img_size] if args.img_size else [])
        runs = []
        for target in [t.strip() for t in args.targets.split(",") if t.strip()]:
            extra = ["--target", target]
            if target != "torch":
                extra += ["--calib-data", calib["path"], "--calib-samples", CALIB_IMAGES]
            for n in (args.images, args.small):
                label = f"{target}-{n}"
                runs.append(evaluate_run(label, common + extra + ["--limit", n], work / f"{label}.json", work,
                                         args.timeout))
        by = {r["label"]: r for r in runs}
        ratios = {t: round(by[f"{t}-{args.images}"]["peak_pss_GiB"] / by[f"{t}-{args.small}"]["peak_pss_GiB"], 3)
                  for t in args.targets.split(",") if all(by.get(f"{t}-{n}", {}).get("exit_code") == 0
                                                          for n in (args.images, args.small))}
        result = {"machine": machine_description(), "date": time.strftime("%Y-%m-%d"), "model": made,
                  "data": data, "calibration_data": calib, "batch_size": args.batch_size, "runs": runs,
                  "peak_pss_ratio_large_over_small": ratios}
        write_json(args.json_out, result)
        print(f"peak PSS (process tree) {args.images} / {args.small} images: {ratios}; wrote {args.json_out}", flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
