"""api.evaluate (resformer_deploy/api/evaluate.py): typed options in, a typed result out, the
same figures as `resformer-deploy evaluate --json-out`, and top-1 / per-class counts equal to
the PyTorch model's own predictions computed here."""
import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner

from resformer_deploy import api
from resformer_deploy.cli.main import main
from resformer_deploy.errors import DeployError, InternalError
from tests.conftest import DIGITS_CKPT


def test_result_fields_are_exactly_these():
    from resformer_deploy.analysis.evaluation import RESULT_KEYS
    # the record's keys, in its order (to_json writes them in field order)
    assert [f.name for f in dataclasses.fields(api.EvaluationResult)] == [*RESULT_KEYS, "engine"]
    assert [f.name for f in dataclasses.fields(api.ClassAccuracy)] == [
        "index", "name", "samples", "correct", "accuracy", "wnid"]


def test_pytorch_top1_equals_the_models_predictions_and_the_cli_json(ck, tmp_path):
    data, cal = api.open_data(api.DataArgs(data="digits"), ck)
    assert cal is None
    res = api.evaluate(ck, data, api.EvaluateOptions(batch_size=64), checkpoint=str(DIGITS_CKPT))
    # independent: the model's class scores (mean over time steps) on the held-out split
    x, y, _ = data.take(len(data.source), "test")
    with torch.no_grad():
        pred = ck.model(x).mean(0).argmax(-1)
    assert res.samples == len(y) == 359
    assert res.top1 == int((pred == y).sum()) / len(y)
    assert [c.samples for c in res.per_class] == [int((y == k).sum()) for k in range(10)]
    assert [c.correct for c in res.per_class] == [int(((pred == y) & (y == k)).sum()) for k in range(10)]
    assert all(isinstance(c.accuracy, float) for c in res.per_class)
    assert res.torch_top1 is None and res.agreement_with_torch is None and res.skipped == ()
    out = tmp_path / "ev.json"
    r = CliRunner().invoke(main, ["evaluate", str(DIGITS_CKPT), "--data", "digits", "--batch-size", "64",
                                  "--json-out", str(out)])
    assert r.exit_code == 0, r.output
    j = json.loads(out.read_text())
    assert (j["top1"], j["top5"], j["samples"]) == (res.top1, res.top5, res.samples)
    assert [c["accuracy"] for c in j["per_class"]] == [c.accuracy for c in res.per_class]
    assert [p["prediction"] for p in j["predictions"]] == [p.prediction for p in res.predictions] == pred.tolist()
    # the typed result writes the file's keys in its order; only the measured times differ between runs
    assert list(j) == list(res.to_json()) and "engine" not in j
    timed = ("throughput", "seconds")
    assert {k: v for k, v in j.items() if k not in timed} == {k: v for k, v in res.record.items() if k not in timed}


def test_a_record_round_trips_through_the_typed_result_byte_for_byte():
    # an ImageNet-folder record (WNID per class), a skipped sample, a target beside PyTorch, Ray's engine
    rep = {"checkpoint": "m.pth", "variant": "ti", "target": "loihi2-emu", "target_options": {"dssa": "fused"},
           "data": {"source": "val/"}, "preset": {"preset": "imagenet"}, "calibration": {"source": "train/"},
           "samples": 2, "limit": None, "batch_size": 32, "skipped": [{"name": "bad.jpg", "reason": "truncated"}],
           "top1": 0.5, "top5": 1.0, "top5_k": 2,
           "per_class": [{"class": 0, "wnid": "n01440764", "name": "tench", "samples": 1, "correct": 1,
                          "accuracy": 1.0},
                         {"class": 1, "wnid": "n01443537", "name": "goldfish", "samples": 1, "correct": 0,
                          "accuracy": 0.0}],
           "torch_top1": 0.5, "torch_precision": "float32", "agreement_with_torch": 1.0,
           "throughput": {"samples_per_second": None, "wall_seconds": 0.0, "data_wait_seconds": 0.0,
                          "loading_share": None},
           "seconds": {"export": 0.1, "prepare": 0.2, "evaluate": 0.3}, "estimate": {"seconds": 1.0},
           "target_info": {"processes": 1},
           "predictions": [{"index": 0, "name": "a.jpg", "label": 0, "prediction": 0, "top5": [0, 1],
                            "torch_prediction": 0},
                           {"index": 1, "name": "b.jpg", "label": 1, "prediction": 0, "top5": [0, 1],
                            "torch_prediction": 0}],
           "engine": {"engine": "ray", "shards": 1}}
    res = api.EvaluationResult.from_record(rep)
    assert res.per_class[0].wnid == "n01440764" and res.predictions[1].top5 == (0, 1)
    assert res.skipped == (("bad.jpg", "truncated"),) and res.engine == {"engine": "ray", "shards": 1}
    assert json.dumps(res.to_json()) == json.dumps(rep)
    del rep["engine"]
    assert json.dumps(api.EvaluationResult.from_record(rep).to_json()) == json.dumps(rep)
    with pytest.raises(InternalError, match="keys"):  # a record this result does not know: a bug, not user input
        api.EvaluationResult.from_record({**rep, "extra": 1})


@pytest.mark.parametrize("opts, message", [
    (api.EvaluateOptions(address="auto"), "--address: only with --engine ray"),
    (api.EvaluateOptions(workers=65), "--workers 65: at most 64 decoding threads"),
    (api.EvaluateOptions(engine="ray", resume=True), "--resume: needs --out-dir"),
])
def test_options_that_do_not_fit_are_refused_naming_them(ck, opts, message):
    with pytest.raises(DeployError, match=message):
        api.evaluate(ck, None, opts)


def test_an_unknown_target_is_refused_naming_it():
    with pytest.raises(DeployError, match="no-such-target"):
        api.target_quantizes("no-such-target")
