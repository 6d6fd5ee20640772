"""--data / --calib-data on the commands, and `evaluate`: metrics against an independent computation
(Pillow + numpy preprocessing, the PyTorch model's outputs), exact JSON keys, --limit, order,
calibration recorded and refused on the evaluation samples, every error one line, exit 2, no file."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from resformer_deploy.cli.common import DATA_FORMATS, PRESET_NAMES
from resformer_deploy.data.preprocess import PRESETS
from resformer_deploy.data.sources import KINDS
from resformer_deploy.data.writers import write_image_folder, write_npz
from resformer_deploy.model.checkpoint import save_checkpoint
from tests.cli.test_cli import assert_one_line_error, run
from tests.support import datasets
from tests.support.small_models import small_model

EVAL_KEYS = ["checkpoint", "variant", "target", "target_options", "data", "preset", "calibration", "samples",
             "limit", "batch_size", "skipped", "top1", "top5", "top5_k", "per_class", "torch_top1",
             "torch_precision", "agreement_with_torch", "throughput", "seconds", "estimate", "target_info",
             "predictions"]
# official CIFAR-10 normalization (SpikingResformer main.py), written out independently of preprocess.py
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """A cifar-topology model at 16x16 (10 classes) and a CIFAR-10 python directory of 12 test images."""
    d = tmp_path_factory.mktemp("cifar")
    model = small_model("cifar16")
    save_checkpoint(d / "cifar16.pt", model)
    return d / "cifar16.pt", model, datasets.cifar10(d, n=4, n_test=12, n_train_batches=1)


def digit_images(tmp, bad=None):
    """One RGB PNG per digit class (10 classes: the digits model's), sample ``bad`` truncated."""
    rng = np.random.RandomState(3)
    root = write_image_folder(os.path.join(tmp, "digit_images"), [datasets.random_image(rng, 20, 24) for _ in range(10)],
                              list(range(10)), [f"d{c}" for c in range(10)], fmt="PNG")
    paths = sorted(str(p) for p in __import__("pathlib").Path(root).rglob("*.png"))
    if bad is not None:
        data = open(paths[bad], "rb").read()
        open(paths[bad], "wb").write(data[:len(data) // 3])
    return root, paths


def test_option_choices_are_the_readers_and_presets():
    assert DATA_FORMATS == ("auto",) + tuple(KINDS)
    assert PRESET_NAMES == ("auto",) + tuple(PRESETS)


def test_evaluate_cifar_against_pillow_and_the_model(cifar, tmp_path):
    ckpt, model, root = cifar
    out = tmp_path / "e.json"
    r = run("evaluate", str(ckpt), "--data", root, "--batch-size", "5", "--json-out", str(out))
    assert r.exit_code == 0, r.stderr
    assert "preset cifar10" in r.output and "CIFAR-10" in r.output and "top-1" in r.output
    assert "estimate: ~" in r.output and "evaluate (torch): done, 12/12 samples" in r.stderr
    j = json.loads(out.read_text())
    assert list(j) == EVAL_KEYS
    # independent: the test images as written, resized with Pillow (bicubic, shorter side 16 / crop_pct 1.0,
    # centre crop of 16 = all), /255, normalized, through the PyTorch model
    x, y = datasets.cifar_arrays(4 + 12, 10, 0)
    x, y = x[4:], y[4:]
    imgs = np.stack([np.asarray(Image.fromarray(a).resize((16, 16), Image.BICUBIC)) for a in x]).astype(np.float32)
    t = (imgs.transpose(0, 3, 1, 2) / 255 - np.reshape(CIFAR10_MEAN, (1, 3, 1, 1))) / np.reshape(CIFAR10_STD,
                                                                                                  (1, 3, 1, 1))
    with torch.no_grad():
        scores = model(torch.from_numpy(t.astype(np.float32))).mean(0).numpy()
    order = np.argsort(-scores, axis=1, kind="stable")
    pred = order[:, 0]
    assert [p["prediction"] for p in j["predictions"]] == pred.tolist()
    assert [p["top5"] for p in j["predictions"]] == order[:, :5].tolist()
    assert [p["label"] for p in j["predictions"]] == y.tolist()
    assert [p["name"] for p in j["predictions"]] == [f"test_batch[{i}]" for i in range(12)]
    assert j["top1"] == float(np.mean(pred == y))
    assert j["top5"] == float(np.mean([y[i] in order[i, :5] for i in range(12)]))
    assert [(c["samples"], c["correct"]) for c in j["per_class"]] == [
        (int((y == c).sum()), int(((pred == y) & (y == c)).sum())) for c in range(10)]
    assert j["preset"]["preset"] == "cifar10" and j["preset"]["crop"] == 16 and j["data"]["kind"] == "cifar10"
    assert j["samples"] == 12 and j["skipped"] == [] and j["calibration"] is None and j["target"] == "torch"


def test_limit_and_order(cifar, tmp_path):
    ckpt, _, root = cifar
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run("evaluate", str(ckpt), "--data", root, "--limit", "5", "--batch-size", "2", "--workers", "0",
               "--json-out", str(a)).exit_code == 0
    assert run("evaluate", str(ckpt), "--data", root, "--limit", "5", "--json-out", str(b)).exit_code == 0
    ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ja["samples"] == 5 and ja["limit"] == 5 and [p["index"] for p in ja["predictions"]] == list(range(5))
    assert ja["predictions"] == jb["predictions"]


def test_calibration_data_recorded_and_refused_on_the_evaluation_samples(digits_ckpt, tmp_path):
    out = tmp_path / "c.json"
    r = run("evaluate", str(digits_ckpt), "--data", "digits", "--target", "loihi2-emu", "--limit", "8",
            "--calib-data", "digits", "--calib-samples", "16", "--json-out", str(out))
    assert r.exit_code == 0, r.stderr
    assert "calibration data: digits (scikit-learn, train split)" in r.output
    assert "same class as PyTorch" in r.output
    c = json.loads(out.read_text())["calibration"]
    assert c["samples"] == 16 and c["data"]["split"] == "train" and c["data"]["option"] == "--calib-data"
    bad = tmp_path / "bad.json"
    assert_one_line_error(run("evaluate", str(digits_ckpt), "--data", "digits", "--target", "loihi2-emu",
                              "--calib-data", "digits", "--calib-split", "test", "--json-out", str(bad)),
                          "--calib-data digits (split test) reads the evaluation samples of --data digits")
    root, _ = digit_images(tmp_path)  # no splits: the same directory is the same samples, whatever --split
    assert_one_line_error(run("evaluate", str(digits_ckpt), "--data", root, "--target", "loihi2-emu",
                              "--calib-data", root, "--json-out", str(bad)), "reads the evaluation samples")
    assert_one_line_error(run("evaluate", str(digits_ckpt), "--data", "digits", "--calib-data", "digits",
                              "--json-out", str(bad)), "target 'torch' runs floating point; nothing is calibrated")
    assert not bad.exists()


def test_errors_are_one_line_with_no_output(digits_ckpt, tmp_path):
    out = tmp_path / "x.json"
    ev = lambda *a: run("evaluate", str(digits_ckpt), "--json-out", str(out), *a)  # noqa: E731
    assert_one_line_error(ev("--data", str(tmp_path / "nope")), "data source not found", "nope")
    three = datasets.image_folder(tmp_path, classes=3, name="three")
    assert_one_line_error(ev("--data", three), "3 classes in the data set, the classifier has 10")
    root, paths = digit_images(tmp_path, bad=3)
    assert_one_line_error(ev("--data", root, "--preset", "imagenet"), "preset imagenet normalizes 3 channels",
                          "the model takes 1")
    rgb = write_npz(str(tmp_path / "rgb.npz"), np.zeros((4, 3, 8, 8), np.float32), np.arange(4))
    assert_one_line_error(ev("--data", rgb), "sample has shape [3, 8, 8], the model takes [1, 8, 8]")
    assert_one_line_error(ev("--data", root), paths[3], "cannot decode image")
    assert_one_line_error(run("evaluate", str(digits_ckpt)), "Missing option '--data'")
    assert not out.exists()
    r = ev("--data", root, "--skip-bad")
    assert r.exit_code == 0, r.stderr
    j = json.loads(out.read_text())
    assert j["samples"] == 9 and [s["name"] for s in j["skipped"]] == [paths[3]]
    assert "cannot decode image" in j["skipped"][0]["reason"] and paths[3] in r.stderr
    assert [p["name"] for p in j["predictions"]] == paths[:3] + paths[4:]
