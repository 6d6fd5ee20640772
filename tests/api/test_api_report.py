"""api.report (resformer_deploy/api/report.py) on the digits model: the files written are the
report's, its headline figures are report.json's, and the PyTorch accuracy is recomputed here."""
import dataclasses
import json
from pathlib import Path

import torch

from resformer_deploy import api
from resformer_deploy.reporting.html import REPORT_FILES

N = 20


def test_option_and_result_fields_are_exactly_these():
    assert [f.name for f in dataclasses.fields(api.ReportOptions)] == [
        "dssa", "lava_samples", "eval_samples", "calib_samples", "data"]
    assert [f.name for f in dataclasses.fields(api.ReportResult)] == [
        "paths", "report", "torch_accuracy", "fixed_accuracy", "fixed_samples", "fixed_agreement", "neuro_cores",
        "chips", "violations", "without_stock_model", "energy_mJ"]


def test_report_headline_equals_its_json_and_pytorch_recomputed(ck, tmp_path):
    out = tmp_path / "rep"
    notes = []
    r = api.report(ck, str(out), api.ReportOptions(lava_samples=0, eval_samples=N, calib_samples=16),
                   api.Messages(note=notes.append))
    assert sorted(Path(p).name for p in r.paths) == sorted(REPORT_FILES)
    assert all(Path(p).parent == out and Path(p).stat().st_size > 0 for p in r.paths)
    assert any("calibrating on 16 samples" in n for n in notes)
    j = json.loads((out / "report.json").read_text())
    totals = j["mapping"]["totals"]
    assert (r.neuro_cores, r.chips, r.violations) == (totals["neuro_cores"], totals["chips"],
                                                      len(j["mapping"]["violations"]))
    assert r.energy_mJ == j["energy"]["fixed"]["energy_mJ"] and r.fixed_samples == N
    from resformer_deploy.data.digits import load_digits_split
    split = load_digits_split()
    with torch.no_grad():
        pred = ck.model.double()(split.x_test[:N].double()).mean(0).argmax(-1)
    ck.model.float()
    assert r.torch_accuracy == float((pred == split.y_test[:N]).float().mean())
