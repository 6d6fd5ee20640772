"""api.demo (resformer_deploy/api/demo.py): typed stages and result; per-class accuracy kept as
numbers (not formatted text parsed back), equal to the PyTorch model's predictions counted here
and to `resformer-deploy demo --json-out`."""
import dataclasses
import json

import pytest
from click.testing import CliRunner

from resformer_deploy import api
from resformer_deploy.cli.main import main
from resformer_deploy.errors import DeployError


def test_result_fields_are_exactly_these():
    assert [f.name for f in dataclasses.fields(api.DemoResult)] == [
        "setup", "torch", "lava", "fixed_point", "whole_split", "torch_version"]
    assert [f.name for f in dataclasses.fields(api.TorchAccuracy)] == [
        "samples", "accuracy", "recorded_accuracy", "per_class", "predictions"]


def test_pytorch_stage_is_numbers_equal_to_the_predictions_and_the_cli_json(tmp_path):
    from resformer_deploy.data.digits import load_digits_split
    stages = []
    res = api.demo(api.DemoOptions(lava_samples=0, fixed_point=False, out_dir=str(tmp_path / "a")),
                   show=stages.append)
    assert [type(s).__name__ for s in stages] == ["DemoSetup", "TorchAccuracy"]
    t = res.torch
    y = load_digits_split().y_test.tolist()
    assert t.samples == len(y) == len(t.predictions) == 359
    assert t.accuracy == pytest.approx(sum(p == c for p, c in zip(t.predictions, y)) / len(y), abs=1e-7)
    for c in t.per_class:  # exact fractions, e.g. 35/36 (the CLI rounds only when printing)
        idx = [i for i, v in enumerate(y) if v == c.index]
        assert c.samples == len(idx)
        assert c.accuracy == sum(t.predictions[i] == c.index for i in idx) / len(idx)
    assert res.lava == () and res.fixed_point is None and res.whole_split is None
    out = tmp_path / "demo.json"
    r = CliRunner().invoke(main, ["demo", "--lava-samples", "0", "--no-fixed-point", "--out-dir", str(tmp_path / "b"),
                                  "--json-out", str(out)])
    assert r.exit_code == 0, r.output
    j = json.loads(out.read_text())
    assert j["per_class"] == [{"class": c.index, "samples": c.samples, "accuracy": c.accuracy} for c in t.per_class]
    assert (j["accuracy"], j["predictions"]) == (t.accuracy, t.predictions)
    assert f"\n    7       36     {100 * t.per_class[7].accuracy:.1f}%" in r.output


def test_bad_options_are_refused_naming_them(tmp_path):
    with pytest.raises(DeployError, match="demo model 'mnist'"):
        api.DemoOptions(model="mnist").resolved()
    with pytest.raises(DeployError, match="--lava-samples 400 exceeds the 359 held-out samples"):
        api.demo(api.DemoOptions(lava_samples=400, out_dir=str(tmp_path)))
