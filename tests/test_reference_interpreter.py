"""The reference interpreter runs exported .nir files (read back from disk) like the PyTorch model."""
import pytest
import torch

from resformer_deploy.checkpoint import load_checkpoint
from resformer_deploy.digits import load_digits_split
from resformer_deploy.model import build_model
from resformer_deploy.verification import verify_model
from tests.conftest import DIGITS_CKPT, randomize_state


def test_digits_model_full_split_float32():
    ck = load_checkpoint(DIGITS_CKPT)
    split = load_digits_split()
    rep = verify_model(ck.model, split.x_test, precision="float32")
    assert rep["samples"] == 359
    assert rep["prediction_agreement"] == 1.0
    assert rep["logits_max_rel_diff"] < 1e-4
    assert all(r["identical_pct"] >= 99.9 for r in rep["layers"])
    assert len(rep["layers"]) == 20 and rep["passed"]
    assert min(r["torch_rate"] for r in rep["layers"]) > 0.04  # every layer is active


def test_random_ti_224_is_exact_in_float64_and_float32_differs_only_by_ties():
    m = randomize_state(build_model("ti"), seed=1)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    exact = verify_model(m, x, precision="float64")
    assert exact["total_mismatches"] == 0 and exact["first_divergence"] is None
    assert exact["logits_max_rel_diff"] < 1e-12 and exact["prediction_agreement"] == 1.0
    assert len(exact["layers"]) == 38
    active = [r for r in exact["layers"] if r["torch_rate"] > 0.01]
    assert len(active) >= 25  # the comparison exercises spiking attention and FFN layers
    f32 = verify_model(m, x, precision="float32")
    fd = f32["first_divergence"]
    # float32 BN folding rounds differently; any first divergence must be a near-threshold tie
    assert fd is None or fd["near_threshold"] == fd["mismatches"]
    assert f32["prediction_agreement"] == 1.0


@pytest.mark.parametrize("name,img,T", [("dvsg", 32, 4), ("cifar", 32, 2)])
def test_other_variants_float64_exact(name, img, T):
    m = randomize_state(build_model(name, img_size=img, T=T), seed=2)
    from resformer_deploy.verification import verification_inputs
    x, _ = verification_inputs(m, 2)
    rep = verify_model(m, x, precision="float64")
    assert rep["total_mismatches"] == 0 and rep["logits_max_rel_diff"] < 1e-12


def test_interpreter_input_errors():
    from exporters.torch_to_nir import export_model
    from resformer_deploy.errors import DeployError
    from targets import get_target
    m = randomize_state(build_model("digits"), seed=0).eval()
    g = export_model(m)
    with pytest.raises(DeployError, match="does not fit graph input"):
        get_target("reference").run(g, torch.zeros(2, 3, 8, 8), T=4)
    with pytest.raises(DeployError, match="unknown target 'loihi9'"):
        get_target("loihi9")
