"""Target loihi2 (targets/loihi2_hardware.py) as far as public Lava allows: without lava-loihi it
refuses in one line; with a stand-in lava-loihi module (lava.magma.core.model.nc, where Intel's
NcProcessModels live) it writes and loads the artifact and runs it with Loihi2HwCfg, refuses the
fused lowering naming its processes, and public Lava's own Loihi2HwCfg compile failure is one line."""
import importlib.machinery
import sys
import types

import numpy as np
import pytest

from exporters.torch_to_nir import export_model
from resformer_deploy.data.digits import load_digits_split
from resformer_deploy.errors import DeployError
from resformer_deploy.flows import prepare
from targets.artifact import artifact_meta, read_artifact, write_artifact
from targets.base import RunRequest

NC = "lava.magma.core.model.nc"


@pytest.fixture
def lava_loihi(monkeypatch):
    fake = types.ModuleType(NC)
    fake.__spec__ = importlib.machinery.ModuleSpec(NC, None)
    monkeypatch.setitem(sys.modules, NC, fake)


@pytest.fixture(scope="module")
def digits(ck):
    g = export_model(ck.model)
    q = {d: prepare("loihi2", g, dssa=d, quantize=True, calib_samples=16)["quantized_net"]
         for d in ("synaptic", "fused")}
    return g, q, load_digits_split().x_test[:2]


def test_without_lava_loihi_the_target_refuses_in_one_line():
    from targets.loihi2_hardware import Loihi2HardwareTarget, lava_loihi_installed
    assert not lava_loihi_installed()
    with pytest.raises(DeployError) as e:
        Loihi2HardwareTarget()
    assert "needs Intel's non-public lava-loihi" in str(e.value) and "\n" not in str(e.value)
    assert Loihi2HardwareTarget.unavailable() == str(e.value)


def test_fused_lowering_is_refused_naming_its_processes(lava_loihi, digits):
    from targets.loihi2_hardware import Loihi2HardwareTarget
    g, q, x = digits
    t = Loihi2HardwareTarget()
    assert Loihi2HardwareTarget.unavailable() is None
    products = [n for n in q["fused"].plan.neuro if type(g.nodes[n]).__name__ == "SpikeMatMul"]
    with pytest.raises(DeployError) as e:
        t.run(RunRequest.of(g, x, 4, quant=q["fused"], dssa="fused"))
    msg = str(e.value)
    assert f"{len(products)} FusedSpikeMatMul process(es)" in msg and products[0] in msg
    assert "no Loihi 2 hardware model" in msg and "--dssa synaptic" in msg


def test_synaptic_run_goes_through_the_artifact_to_loihi2hwcfg(lava_loihi, digits, monkeypatch):
    """The target writes the artifact, reads it back and asks run_artifact for the hardware
    configuration; the artifact it runs holds the quantized network it was given."""
    import targets.artifact.network as network
    from targets.loihi2_hardware import Loihi2HardwareTarget
    g, q, x = digits
    seen = {}

    def spy(art, xs, hardware=False, cfg=None, taps=()):
        seen.update(hardware=hardware, art=art, x=xs)
        (o,) = art.plan.outputs
        return np.zeros((4, len(xs), 10)), np.zeros((len(xs), 4, int(np.prod(art.plan.shapes[o]))))
    monkeypatch.setattr(network, "run_artifact", spy)
    res = Loihi2HardwareTarget().run(RunRequest.of(g, x, 4, quant=q["synaptic"], dssa="synaptic"))
    assert seen["hardware"] is True and tuple(res.output.shape) == (4, 2, 10)
    art = seen["art"]
    assert set(art.quant.syn) == set(q["synaptic"].syn)
    assert all(np.array_equal(art.quant.syn[n].mant, s.mant) for n, s in q["synaptic"].syn.items())
    assert np.array_equal(seen["x"], x.numpy())


def test_public_lava_compiling_for_loihi2hwcfg_fails_in_one_line(lava_loihi, digits, tmp_path):
    """Past our code, public Lava's Loihi2HwCfg has no Nc process models to compile with."""
    from targets.loihi2_hardware import run_on_chip
    g, q, x = digits
    path = tmp_path / "d.h5"
    write_artifact(path, q["synaptic"], g, artifact_meta(g, q["synaptic"], None))
    with pytest.raises(DeployError) as e:
        run_on_chip(read_artifact(path), x.numpy())
    assert str(e.value).startswith("target loihi2: Lava could not run the artifact with Loihi2HwCfg (")
    assert "\n" not in str(e.value)
