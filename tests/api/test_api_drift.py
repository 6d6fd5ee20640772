"""api.drift (resformer_deploy/api/drift.py): the digits model's drift ladder, typed; its PyTorch
rung's accuracy recomputed here, its figures equal to `resformer-deploy drift --json-out`."""
import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner

from resformer_deploy import api
from resformer_deploy.analysis.drift import FIXED_POINT, PYTORCH
from resformer_deploy.cli.main import main
from resformer_deploy.errors import DeployError
from tests.conftest import DIGITS_CKPT

N = 32  # held-out samples of the fixed-point rung (a quick ladder)


def test_option_and_result_fields_are_exactly_these():
    assert [f.name for f in dataclasses.fields(api.DriftOptions)] == [
        "targets", "dssa", "lava_samples", "eval_samples", "calib_samples", "seed"]
    assert [f.name for f in dataclasses.fields(api.DriftResult)] == ["checkpoint", "variant", "ladders", "failures"]


def test_the_ladder_equals_the_cli_json_and_pytorch_recomputed(ck, tmp_path):
    shown = []
    res = api.drift(ck, api.DriftOptions(lava_samples=0, eval_samples=N, calib_samples=16),
                    checkpoint=str(DIGITS_CKPT), on_ladder=shown.append)
    assert len(res.ladders) == 1 and shown == list(res.ladders)
    lad = res.ladders[0]
    assert [r.role for r in lad.rungs] == [PYTORCH, FIXED_POINT]
    assert res.passed == (res.failures == ()) == (lad.failures() == [])
    # independent: PyTorch (float64, as its rung runs it) on the first N held-out digits
    from resformer_deploy.data.digits import load_digits_split
    split = load_digits_split()
    with torch.no_grad():
        pred = ck.model.double()(split.x_test[:N].double()).mean(0).argmax(-1)
    ck.model.float()
    assert lad.pytorch.samples == lad.fixed_point.samples == N
    assert lad.pytorch.accuracy == float((pred == split.y_test[:N]).float().mean())
    out = tmp_path / "drift.json"
    r = CliRunner().invoke(main, ["drift", str(DIGITS_CKPT), "--lava-samples", "0", "--eval-samples", str(N),
                                  "--calib-samples", "16", "--json-out", str(out)])
    assert r.exit_code == 0, r.output
    j = json.loads(out.read_text())
    assert j["variant"] == res.variant and len(j["ladders"]) == 1
    cli = j["ladders"][0]
    assert [(x["target"], x["samples"], x["accuracy"], x.get("total_mismatches")) for x in cli["rungs"]] == \
        [(x.target, x.samples, x.accuracy, x.total_mismatches) for x in lad.rungs]
    assert cli["accuracy_drop_pp"] == lad.accuracy_drop_pp
    assert res.to_json()["ladders"] == [lad]


def test_a_bad_rung_list_is_refused_naming_it():
    with pytest.raises(DeployError, match="no-such-target"):
        api.DriftOptions(targets=("no-such-target",)).rungs()
