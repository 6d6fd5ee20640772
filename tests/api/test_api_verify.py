"""api.verify (resformer_deploy/api/verify.py): the digits model verified on the PyTorch reference
target; its verdicts and mismatch counts equal what `verify --json-out` writes, its messages go
to the callbacks (the API prints nothing), and a fixed-point target gives a drift ladder."""
import dataclasses
import json

import pytest
from click.testing import CliRunner

from resformer_deploy import api
from resformer_deploy.cli.main import main
from resformer_deploy.errors import DeployError
from targets import names_with
from tests.conftest import DIGITS_CKPT

PYTORCH = names_with(engine="pytorch")[0]


def test_option_and_result_fields_are_exactly_these():
    assert [f.name for f in dataclasses.fields(api.VerifyOptions)] == [
        "target", "samples", "precision", "form", "dssa", "seed", "lava_samples", "eval_samples", "calib_samples",
        "data", "lava_processes"]
    assert [f.name for f in dataclasses.fields(api.VerifyResult)] == [
        "checkpoint", "variant", "target", "inputs", "checks", "ladder", "skipped"]


def test_verdicts_equal_the_cli_json_and_messages_go_to_callbacks(ck, tmp_path, capsys):
    said, notes, shown = [], [], []
    r = api.verify(ck, api.VerifyOptions(PYTORCH, samples=5), api.Messages(say=said.append, note=notes.append),
                   checkpoint=str(DIGITS_CKPT), on_check=lambda rep, prec, low: shown.append((prec, low)))
    assert capsys.readouterr() == ("", "")  # nothing printed by the API itself
    assert shown == [("float64", None), ("float32", None)]  # the reference target lowers no DSSA
    assert said[0] == f"verify digits on target '{PYTORCH}' (extension form): 5 samples of digits held-out split, T=4"
    assert [m.split(":")[0] for m in said[1:]] == ["estimate [float64]", "estimate [float32]"]
    assert r.passed and r.ladder is None and r.inputs == "digits held-out split"
    assert [c.samples for c in r.checks] == [5, 5]
    out = tmp_path / "v.json"
    cli = CliRunner().invoke(main, ["verify", str(DIGITS_CKPT), "--samples", "5", "--json-out", str(out)])
    assert cli.exit_code == 0, cli.output
    want = json.loads(out.read_text())
    assert want["inputs"] == r.inputs and want["skipped"] == []
    assert [(c["precision"], c["verdict"], c["total_mismatches"], c["prediction_agreement"]) for c in want["reports"]] \
        == [(c.precision, c.verdict, c.total_mismatches, c.prediction_agreement) for c in r.checks]
    assert r.verdicts == ["exact", "exact"]  # float64 proves equivalence; float32 on 5 digits is exact too


def test_asked_samples_beyond_the_data_are_refused(ck):
    with pytest.raises(DeployError, match="only 359 held-out digits"):
        api.verify(ck, api.VerifyOptions(PYTORCH, samples=1000, precision="float64"))


def test_a_fixed_point_target_runs_the_drift_ladder(ck):
    fixed = names_with(arithmetic="fixed", engine="numpy")[0]  # the emulator: no Lava processes
    notes, ladders = [], []
    r = api.verify(ck, api.VerifyOptions(fixed, samples=6, dssa="fused", calib_samples=16),
                   api.Messages(note=notes.append), on_ladder=ladders.append)
    assert r.checks == () and r.ladder is not None and list(r.ladder.ladders) == ladders
    assert notes[0] == "--samples 6 bounds the ladder: 6 evaluation samples, 6 Lava samples"
    lad = ladders[0]
    assert lad.fixed_point.samples == 6 and r.passed == (lad.failures() == [])
