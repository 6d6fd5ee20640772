"""The neurons' inference loop (no autograd, reused buffers) against their autograd loop: the same
element-wise IEEE operations in the same order, so the spikes must be identical bit for bit, in
float32 as in float64, also for inputs that put the membrane on the threshold."""
import pytest
import torch

from resformer_deploy.model.checkpoint import load_checkpoint
from resformer_deploy.model.neurons import LIF, PLIF
from tests.conftest import DIGITS_CKPT


def _threshold_heavy_input(dtype, gen):
    # membranes that land on, just below and just above v_threshold = 1 (steps of the dtype's eps)
    eps = torch.finfo(dtype).eps
    base = torch.randn(24, 8, 500, generator=gen, dtype=torch.float64) * 1.5 + 0.9
    on = torch.randint(-3, 4, (24, 8, 500), generator=gen).double() * eps + 1.0
    pick = torch.rand(24, 8, 500, generator=gen) < 0.3
    return torch.where(pick, on, base).to(dtype)


def _autograd_spikes(neuron, x):
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        out = neuron(x)
    assert out.grad_fn is not None  # the training loop ran
    return out.detach()


def _in_place_spikes(neuron, x):
    with torch.no_grad():
        out = neuron(x)
    assert out.grad_fn is None
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("make", [lambda: LIF(), lambda: LIF(tau=3.0), lambda: PLIF(), lambda: PLIF(init_tau=1.7)],
                         ids=["lif", "lif-tau3", "plif", "plif-1.7"])
def test_in_place_loop_equals_the_autograd_loop(make, dtype):
    neuron = make().to(dtype)
    x = _threshold_heavy_input(dtype, torch.Generator().manual_seed(7))
    a, b = _autograd_spikes(neuron, x), _in_place_spikes(neuron, x)
    assert a.dtype == b.dtype == dtype and a.shape == b.shape == x.shape
    assert 0.05 < float(a.mean()) < 0.95  # both spiking and silent elements
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("make", [lambda: LIF(tau=3.0), lambda: PLIF(init_tau=1.7)], ids=["lif-tau3", "plif-1.7"])
def test_in_place_charge_equals_charge_bit_for_bit(make, dtype):
    """The membrane update itself, compared as bit patterns (a last-bit difference, e.g. dividing by
    tau as multiplying by 1/tau, rarely flips a spike, so the loop test alone would miss it)."""
    neuron = make().to(dtype)
    g = torch.Generator().manual_seed(11)
    v, x = (torch.randn(20000, generator=g, dtype=torch.float64).to(dtype) for _ in range(2))
    with torch.no_grad():
        want = neuron.charge(v, x)
        got = neuron.charge_(torch.empty_like(v), v, x)
    bits = torch.int32 if dtype == torch.float32 else torch.int64
    assert torch.equal(want.view(bits), got.view(bits))


def test_whole_digits_model_in_place_equals_autograd():
    model = load_checkpoint(DIGITS_CKPT).model.eval()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 3 - 1
    a = _autograd_spikes(model, x)
    b = _in_place_spikes(model, x)
    assert a.shape == b.shape and torch.equal(a, b)
