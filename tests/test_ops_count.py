"""SOP counts: PyTorch hooks (official convention) vs counts from graph runs (reference, Lava)."""
import pytest
import torch
import torch.nn.functional as F

from exporters.torch_to_nir import export_model
from resformer_deploy.model.checkpoint import load_checkpoint
from resformer_deploy.data.digits import load_digits_split
from resformer_deploy.analysis.operations import count_graph, count_torch, energy_report
from targets import get_target
from tests.conftest import DIGITS_CKPT


@pytest.fixture(scope="module")
def setup():
    m = load_checkpoint(DIGITS_CKPT).model
    x = load_digits_split().x_test[:6]
    return m, x, count_torch(m, x), export_model(m)


def test_counts_follow_the_official_formulas(setup):
    m, x, ct, _ = setup
    # independent recomputation for one conv and one product, from recorded spikes
    from resformer_deploy.analysis.compare import record_torch
    rec = record_torch(m, x, membranes=False)
    s = rec.spikes["layers.0.1.conv.0.0"].double().flatten(0, 1)  # input of the grouped conv
    conv = m.layers[0][1].conv[0][1]
    want = F.conv2d(s, torch.ones_like(conv.weight).double(), None, 1, 1, 1, conv.groups).sum()
    assert ct["layers.0.1.conv.0.1"]["ops"] == pytest.approx(float(want))
    attn = rec.spikes["layers.1.1.activation_attn"]  # [T,B,h,Np,N]; matmul2: d x nnz(attn)
    assert ct["layers.1.1.matmul2"]["ops"] == pytest.approx(16 * float(attn.sum()))
    assert ct["classifier"]["ops"] == 10 * 64 * 4 * 6  # MACs: K x C per step and sample
    assert {v["kind"] for v in ct.values()} == {"conv", "dssa_product", "stem_mac", "classifier_mac"}


@pytest.mark.parametrize("target", ["reference", "lava-cpu"])
def test_graph_run_counts_agree_with_pytorch(setup, target):
    m, x, ct, g = setup
    r = get_target(target).run(g, x, 4)
    cg = count_graph(g, r.spikes, 4, len(x))
    for path, v in ct.items():
        assert cg[path]["ops"] == pytest.approx(v["ops"], rel=1e-12), path
    e_t, e_g = energy_report(ct, len(x)), energy_report(cg, len(x))
    assert e_g["sops"] == pytest.approx(e_t["sops"]) and e_g["sops"] > 0
    assert e_g["energy_mJ"] == pytest.approx(0.9e-9 * e_g["sops"])
    assert e_g["per_image"]["residual_add"] == 4 * (16 * 64 * 2 + 64 * 64 + 32 * 16 * 2 + 128 * 16
                                                    + 64 * 4 * 2 + 256 * 4)
    with_macs = energy_report(cg, len(x), include_stem=True, include_classifier=True)
    assert with_macs["energy_mJ"] == pytest.approx(
        (0.9 * e_g["sops"] + 4.6 * (e_g["per_image"]["stem_mac"] + e_g["per_image"]["classifier_mac"])) * 1e-9)


def test_ops_command(tmp_path):
    import json
    from tests.test_cli import run
    r = run("ops", str(DIGITS_CKPT), "--target", "lava-cpu", "--samples", "4", "--include-classifier",
            "--json-out", str(tmp_path / "o.json"))
    assert r.exit_code == 0, r.stderr
    assert "SOPs" in r.output and "max rel. diff 0.0e+00" in r.output
    j = json.loads((tmp_path / "o.json").read_text())
    assert j["max_rel_diff"] == 0.0 and j["report"]["convention"]["include_classifier"] is True


def test_ops_on_fixed_point_lava_agree_with_the_bit_accurate_emulator(tmp_path):
    import json
    from click.testing import CliRunner
    from resformer_deploy.cli.main import main
    from tests.conftest import DIGITS_CKPT
    out = tmp_path / "ops.json"
    r = CliRunner().invoke(main, ["ops", str(DIGITS_CKPT), "--target", "loihi2-sim", "--samples", "3",
                                  "--json-out", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    assert d["reference"] == "emulator" and d["max_rel_diff"] == 0.0
    conv = [k for k, v in d["target_counts"].items() if v["kind"] == "conv"]
    assert len(conv) == 17 and all(d["target_counts"][k]["ops"] > 0 for k in conv)
    # fixed-point spikes are close to, not equal to, the float model's
    tot_fixed = sum(v["ops"] for v in d["target_counts"].values() if v["kind"] in ("conv", "dssa_product"))
    tot_torch = sum(v["torch_ops"] for v in d["reference_counts"].values() if v["kind"] in ("conv", "dssa_product"))
    assert abs(tot_fixed - tot_torch) / tot_torch < 0.05
