"""api.simulate and api.ops (resformer_deploy/api/simulate.py, ops.py) on the digits model: the
predictions are PyTorch's own, the counts agree with PyTorch's and the energy follows from them
(0.9 pJ per synaptic operation), and both equal what the CLI writes with --json-out."""
import dataclasses
import json

import torch
from click.testing import CliRunner

from resformer_deploy import api
from resformer_deploy.cli.main import main
from targets import names_with
from tests.conftest import DIGITS_CKPT

PYTORCH = names_with(engine="pytorch")[0]


def test_option_and_result_fields_are_exactly_these():
    fields = lambda c: [f.name for f in dataclasses.fields(c)]  # noqa: E731
    assert fields(api.SimulateOptions) == ["target", "samples", "dssa", "seed", "calib_samples", "data",
                                         "lava_processes"]
    assert fields(api.SimulateResult) == ["target", "samples", "inputs", "T", "output_shape", "per_class",
                                          "predictions", "accuracy", "output_mean", "seconds", "stats", "data",
                                          "calibration"]
    assert fields(api.OpsOptions) == ["target", "samples", "include_stem", "include_classifier", "data"]
    assert fields(api.OpsResult) == ["target", "samples", "inputs", "T", "reference", "layers", "reference_counts",
                                     "target_counts", "energy", "max_rel_diff", "replayed", "float_rel_diff",
                                     "calibration", "skipped"]
    assert fields(api.LayerOpsComparison) == ["layer", "kind", "reference_ops", "target_ops", "rel_diff"]


def test_simulate_predicts_what_pytorch_predicts(ck, tmp_path, capsys):
    nir_file = api.export(ck, str(tmp_path / "d.nir"), api.ExportOptions(dtype="float64")).path
    said = []
    r = api.simulate(nir_file, api.SimulateOptions(PYTORCH, samples=6), api.Messages(say=said.append))
    assert capsys.readouterr() == ("", "")  # nothing printed by the API itself
    from resformer_deploy.data.digits import load_digits_split
    split = load_digits_split()
    x, y = split.x_test, split.y_test
    with torch.no_grad():
        want = ck.model(x[:6]).mean(0).argmax(-1)
    assert r.predictions == want.tolist() and r.per_class and r.output_shape == (10,)
    assert r.accuracy == float((want == y[:6]).float().mean())
    assert (r.samples, r.T, r.calibration, r.data) == (6, 4, None, None)
    assert said[0].startswith("estimate: ~")  # sized before the run, said through the callback
    out = tmp_path / "s.json"
    cli = CliRunner().invoke(main, ["simulate", nir_file, "--target", PYTORCH, "--samples", "6",
                                    "--json-out", str(out)])
    assert cli.exit_code == 0, cli.output
    assert json.loads(out.read_text())["predictions"] == r.predictions


def test_ops_counts_agree_and_the_energy_follows_from_them(ck, tmp_path, capsys):
    r = api.ops(ck, api.OpsOptions(PYTORCH, samples=3))
    assert capsys.readouterr() == ("", "")  # nothing printed by the API itself
    assert (r.reference, r.replayed, r.float_rel_diff, r.calibration) == ("PyTorch", False, None, None)
    assert r.agree and r.max_rel_diff == 0.0 and len(r.layers) == len(r.reference_counts)
    for c in r.layers:  # each layer's numbers are the two counts' own
        assert c.reference_ops == r.reference_counts[c.layer].ops and c.target_ops == r.target_counts[c.layer].ops
    sops = sum(c.target_ops for c in r.layers if c.kind in ("conv", "dssa_product")) / r.samples
    assert abs(r.energy.sops - sops) <= 1e-9 * sops
    assert abs(r.energy.energy_mJ - 0.9e-9 * sops) <= 1e-12 * r.energy.energy_mJ  # 0.9 pJ per AC, stem excluded
    out = tmp_path / "o.json"
    cli = CliRunner().invoke(main, ["ops", str(DIGITS_CKPT), "--samples", "3", "--json-out", str(out)])
    assert cli.exit_code == 0, cli.output
    j = json.loads(out.read_text())
    assert j["max_rel_diff"] == r.max_rel_diff and j["report"]["sops"] == r.energy.sops
    assert {k: v["ops"] for k, v in j["target_counts"].items()} == {k: v.ops for k, v in r.target_counts.items()}
