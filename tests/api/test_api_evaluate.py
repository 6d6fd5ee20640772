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
from resformer_deploy.errors import DeployError
from tests.conftest import DIGITS_CKPT


def test_result_fields_are_exactly_these():
    assert [f.name for f in dataclasses.fields(api.EvaluationResult)] == [
        "target", "variant", "samples", "top1", "top5", "top5_k", "torch_top1", "torch_precision",
        "agreement_with_torch", "per_class", "throughput", "skipped", "record"]
    assert [f.name for f in dataclasses.fields(api.ClassAccuracy)] == [
        "index", "name", "samples", "correct", "accuracy", "wnid"]


def test_pytorch_top1_equals_the_models_predictions_and_the_cli_json(ck, tmp_path):
    data, cal = api.open_data(api.DataArgs(data="digits"), ck)
    assert cal is None
    res = api.evaluate(ck, data, api.EvaluateOptions(batch_size=64))
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
    r = CliRunner().invoke(main, ["evaluate", str(DIGITS_CKPT), "--data", "digits", "--json-out", str(out)])
    assert r.exit_code == 0, r.output
    j = json.loads(out.read_text())
    assert (j["top1"], j["top5"], j["samples"]) == (res.top1, res.top5, res.samples)
    assert [c["accuracy"] for c in j["per_class"]] == [c.accuracy for c in res.per_class]


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
