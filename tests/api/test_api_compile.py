"""api.compile (resformer_deploy/api/compile.py): the core plan of the digits model, typed, equal
to what `resformer-deploy compile --json` writes; bad input refused naming the problem."""
import dataclasses
import json

import pytest
from click.testing import CliRunner

from resformer_deploy import api
from resformer_deploy.cli.main import main
from resformer_deploy.errors import DeployError
from tests.conftest import DIGITS_CKPT


def test_result_fields_are_exactly_these():
    assert [f.name for f in dataclasses.fields(api.CompileResult)] == [
        "target", "dssa", "record", "estimate_lines", "artifacts"]
    assert [f.name for f in dataclasses.fields(api.PlanRecord)] == [
        "plan", "violations", "skipped", "hardware", "input", "stock_models", "quantized", "calibration", "estimate"]
    assert [f.name for f in dataclasses.fields(api.ModelGraph)] == ["path", "graph", "checkpoint"]


def test_the_plan_equals_the_cli_json(tmp_path):
    net = api.load_graph(str(DIGITS_CKPT))
    assert net.variant == "digits" and net.checkpoint is not None
    res = api.compile(net, api.CompileOptions())
    r = CliRunner().invoke(main, ["compile", str(DIGITS_CKPT), "-o", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    j = json.loads((tmp_path / api.PLAN_NAME).read_text())
    assert json.loads(r.stdout) == j
    assert j["totals"]["neuro_cores"] == res.totals.neuro_cores > 0
    assert j["totals"]["chips"] == res.totals.chips
    assert [row["layer"] for row in j["layers"]] == [row.layer for row in res.layers]
    assert [row["cores"] for row in j["layers"]] == [row.cores for row in res.layers]
    # the plan's cores are the sum of its layers' (each layer partitioned on its own cores)
    assert res.totals.neuro_cores == sum(row.cores for row in res.layers)
    # the typed record is the file: the same keys in the same order, the same values
    assert json.dumps(res.plan_json) == json.dumps(j) and list(j) == list(res.plan_json)
    assert j["input"] == str(DIGITS_CKPT) and j["stock_models"] == {"checked_quantized": False,
                                                                    "findings": list(res.stock_models)}
    assert res.violations == tuple(j["violations"]) == ()
    assert res.quantized is False and res.calibration is None and res.estimate is None
    assert res.target == api.mapping_target()  # chosen by capability: the one target that maps


def test_bad_input_is_refused_naming_the_problem(tmp_path):
    with pytest.raises(DeployError, match="no-such-target"):
        api.mapping_target("no-such-target")
    with pytest.raises(DeployError, match=f"{tmp_path / 'missing.pt'}: no such file"):
        api.load_graph(str(tmp_path / "missing.pt"))
    net = api.load_graph(str(DIGITS_CKPT))
    with pytest.raises(DeployError, match="--netx-bias-grid .*add --quantize"):
        api.compile(net, api.CompileOptions(netx_bias_grid=True))
