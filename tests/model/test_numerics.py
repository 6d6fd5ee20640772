"""LIF, DSSA and whole-model numerics against the independent re-computation in
reference_impl.py (float64, so no float32 threshold ties)."""
import math

import numpy as np
import pytest
import torch

from resformer_deploy.model.resformer import DSSA, build_model
from resformer_deploy.model.neurons import LIF, PLIF
from resformer_deploy.model.calibration import randomize_state
from tests.support.reference_impl import Reference, lif


def test_lif_hand_computed_trace():
    # tau=2, decay_input: H = V/2 + X/2; threshold test is >= 1.0; hard reset to 0.
    x = torch.tensor([[2.0], [0.5], [1.5], [1.0], [3.0]])
    s = LIF()(x)
    # t0: H=1.0 -> spike (>=), V=0; t1: H=0.25; t2: H=0.125+0.75=0.875; t3: H=0.4375+0.5=0.9375;
    # t4: H=0.46875+1.5=1.96875 -> spike
    assert s.flatten().tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]


def test_lif_matches_explicit_loop_on_random_input():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, 7, generator=g, dtype=torch.float64) * 1.5 + 0.8
    assert np.array_equal(LIF()(x).numpy(), lif(x.numpy()))


def test_plif_leak_is_sigmoid_w():
    p = PLIF().double()
    with torch.no_grad():
        p.w.fill_(0.7)
    x = torch.randn(10, 50, dtype=torch.float64) + 1.0
    assert np.array_equal(p(x).detach().numpy(), lif(x.numpy(), leak=1 / (1 + math.exp(-0.7))))


def test_atan_surrogate_gradient():
    x = torch.tensor([[0.3, 1.0, 1.7]], requires_grad=True)
    LIF()(x).sum().backward()  # one step: H = x/2, dS/dH = 1/(1+(pi*(H-1))^2), dH/dx = 1/2
    h = x.detach() / 2
    expect = 0.5 / (1 + (math.pi * (h - 1)) ** 2)
    assert torch.allclose(x.grad, expect)


def test_dssa_head_split_and_scales_against_reference():
    torch.manual_seed(0)
    model = build_model("digits").double()
    randomize_state(model, seed=3)
    model.double().eval()
    dssa = model.layers[1][1]  # 2 heads, patch 2 on a 4x4 map: non-square attention 4x16
    assert isinstance(dssa, DSSA) and dssa.num_heads == 2
    x = (torch.randn(4, 3, 32, 4, 4, dtype=torch.float64) * 2 + 1)
    with torch.no_grad():
        got = dssa(x).numpy()
    ref = Reference(model.state_dict(), model.config)
    want = ref.dssa(x.numpy(), "layers.1.1", 2, 2, dssa.lenth)
    assert ref.spikes["layers.1.1.activation_attn"].mean() > 0.01  # attention actually spikes
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name,img,T,dvs", [("digits", 8, 4, False), ("cifar", 32, 2, False),
                                            ("dvsg", 32, 3, True), ("ti", 64, 2, False)])
def test_whole_model_against_reference(name, img, T, dvs):
    model = build_model(name, img_size=img, T=T)
    randomize_state(model, seed=1)
    model.double().eval()
    g = torch.Generator().manual_seed(2)
    C = model.config.in_channels
    x = (torch.rand(2, T, C, img, img, generator=g) * 3 if dvs else torch.randn(2, C, img, img, generator=g))
    x = x.double()
    with torch.no_grad():
        got = model(x).numpy()
    ref = Reference(model.state_dict(), model.config)
    want = ref(x.numpy())
    assert got.shape == (T, 2, model.config.num_classes)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    # the comparison is meaningful only if the spiking paths are active
    assert np.mean([s.mean() for k, s in ref.spikes.items() if k.endswith("activation_attn")]) > 0.005


def test_time_major_dvs_input_is_transposed():
    model = randomize_state(build_model("digits"), seed=4).eval()
    x = torch.randn(3, 4, 1, 8, 8)  # [B,T,C,H,W]
    with torch.no_grad():
        a = model(x)
        b = model(x[:, 0])  # static image = same frame at every step
        c = model(x[:, :1].repeat(1, 4, 1, 1, 1))
    assert torch.equal(b, c) and not torch.equal(a, b)
