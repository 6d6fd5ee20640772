"""SOP counts: PyTorch hooks (official convention) vs counts from graph runs (reference, Lava)."""
import pytest
import torch
import torch.nn.functional as F

from exporters.torch_to_nir import export_model
from resformer_deploy.model.checkpoint import load_checkpoint
from resformer_deploy.data.digits import load_digits_split
from resformer_deploy.analysis.operations import count_graph, count_torch, energy_report
from targets import get_target
from targets.base import RunRequest
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
    assert ct["layers.0.1.conv.0.1"].ops == pytest.approx(float(want))
    attn = rec.spikes["layers.1.1.activation_attn"]  # [T,B,h,Np,N]; matmul2: d x nnz(attn)
    assert ct["layers.1.1.matmul2"].ops == pytest.approx(16 * float(attn.sum()))
    assert ct["classifier"].ops == 10 * 64 * 4 * 6  # MACs: K x C per step and sample
    assert {v.kind for v in ct.values()} == {"conv", "dssa_product", "stem_mac", "classifier_mac"}


def _reach(n_in, n_out, k, stride, pad, dil):
    """Per input position along one axis: how many outputs' windows contain it (plain loops)."""
    reach = [0] * n_in
    for o in range(n_out):
        for i in range(k):
            p = o * stride - pad + i * dil
            if 0 <= p < n_in:
                reach[p] += 1
    return torch.tensor(reach, dtype=torch.float64)


def direct_counts(m, x):
    """Operations per image counted directly from each layer's inputs, without convolving: an input
    value at (c, h, w) reaches (C_out / groups) x reach_h(h) x reach_w(w) outputs; a linear input
    reaches every output; a product left @ right with binary right costs rows(left) per spike.
    Real-valued inputs (stem, classifier) cost a MAC per reached output whatever their value."""
    from resformer_deploy.model.layers import SpikingMatmul
    inputs, hooks = {}, []

    def keep(path):
        def hook(mod, inp, out):
            inputs[path] = inp
        return hook
    for path, mod in m.named_modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear, SpikingMatmul)):
            hooks.append(mod.register_forward_hook(keep(path)))
    with torch.no_grad():
        m.eval()(x)
    for h in hooks:
        h.remove()
    sops = macs = 0.0
    for path, mod in m.named_modules():
        if path not in inputs:
            continue
        inp = inputs[path]
        real = path in ("prologue.0", "classifier")
        if isinstance(mod, torch.nn.Conv2d):
            v = inp[0].double().flatten(0, 1)  # [T*B, C, H, W]
            v = torch.ones_like(v) if real else v
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = mod.kernel_size, mod.stride, mod.padding, mod.dilation
            H, W = v.shape[-2:]
            Ho, Wo = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            fan = (mod.out_channels // mod.groups) * torch.outer(_reach(H, Ho, kh, sh, ph, dh), _reach(W, Wo, kw, sw, pw, dw))
            ops = float((v.sum(0) * fan).sum())
        elif isinstance(mod, torch.nn.Linear):
            v = inp[0].double()
            ops = float((torch.ones_like(v) if real else v).sum()) * mod.out_features
        else:
            left, right = inp
            assert mod.spike == "r"
            ops = left.shape[-2] * float(right.double().sum())
        if real:
            macs += ops
        else:
            sops += ops
    return sops / len(x), macs / len(x)


def test_direct_count_of_the_paper_energy(setup):
    """SOPs, MACs and energy from a direct count, not from the counting code's own per-layer rows."""
    m, x, ct, _ = setup
    sops, macs = direct_counts(m, x)
    # T=4 steps of: stem 1 -> 16 channels, 3x3, padding 1 on 8x8 (22 in-bounds taps per axis: 3 x 8
    # minus the 2 that fall on the padding), and the 64 -> 10 classifier
    assert macs == 4 * (16 * 22 * 22 + 64 * 10)
    e = energy_report(ct, len(x))
    assert e.sops == pytest.approx(sops, rel=1e-12) and sops > 0
    assert e.energy_mJ == pytest.approx(0.9e-9 * sops, rel=1e-12)
    both = energy_report(ct, len(x), include_stem=True, include_classifier=True)
    assert both.energy_mJ == pytest.approx((0.9 * sops + 4.6 * macs) * 1e-9, rel=1e-12)


@pytest.mark.parametrize("target", ["reference", "lava-cpu"])
def test_graph_run_counts_agree_with_pytorch(setup, target):
    m, x, ct, g = setup
    r = get_target(target).run(RunRequest.of(g, x, 4))
    cg = count_graph(g, r.spikes, 4, len(x))
    for path, v in ct.items():
        assert cg[path].ops == pytest.approx(v.ops, rel=1e-12), path
    e_g = energy_report(cg, len(x))
    assert e_g.sops == pytest.approx(direct_counts(m, x)[0], rel=1e-12)
    assert e_g.per_image["residual_add"] == 4 * (16 * 64 * 2 + 64 * 64 + 32 * 16 * 2 + 128 * 16
                                                 + 64 * 4 * 2 + 256 * 4)


def test_ops_command(tmp_path):
    import json
    from tests.cli.test_cli import run
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


CONV_GEOMETRIES = [  # (cin, cout, groups, k, stride, padding, dilation, H, W)
    (4, 6, 1, 3, 1, 1, 1, 7, 7), (4, 6, 2, 3, 2, 1, 1, 8, 7), (6, 6, 6, 3, 1, 2, 2, 9, 9),
    (4, 8, 4, (3, 1), (2, 1), (1, 0), 1, 6, 5), (2, 3, 1, 5, 3, 2, (1, 2), 11, 10), (4, 4, 1, 1, 2, 0, 1, 7, 7)]


@pytest.mark.parametrize("geo", CONV_GEOMETRIES)
def test_conv_fan_out_equals_the_unrolled_matrix_column_counts(geo):
    """Oracle: the unrolled connectivity (passes.unroll_dense.window_matrix), nonzeros per input."""
    import numpy as np
    from resformer_deploy.analysis.operations import conv_fan_out
    from resformer_deploy.lava.conv import out_hw
    from resformer_deploy.passes.unroll_dense import window_matrix
    cin, cout, groups, k, stride, pad, dil, H, W = geo
    kh, kw = np.broadcast_to(np.asarray(k), (2,))
    rng = np.random.RandomState(0)
    w = rng.randn(cout, cin // groups, kh, kw) * (rng.rand(cout, cin // groups, kh, kw) < 0.7)  # zero weights
    ho, wo = out_hw((H, W), (kh, kw), stride, pad, dil)
    m = window_matrix(w, (cin, H, W), (cout, ho, wo), stride, pad, dil, groups)
    fan = conv_fan_out(w, (cin, H, W), stride, pad, dil, groups)
    assert fan.shape == (cin, H, W) and fan.dtype == np.float64
    np.testing.assert_array_equal(fan.reshape(-1), m.getnnz(axis=0))


def test_graph_counts_of_a_small_official_topology_equal_the_unrolled_count_and_pytorch():
    """cifar topology at 16x16, with exactly-zero weights in every convolution: each layer's count
    from a reference run equals the count from the unrolled matrices of the full kernel windows (the
    oracle) and PyTorch's hooks (SOPMonitor counts zero weights too), where the unrolled matrices of
    the weights themselves, which drop the zeros, count fewer."""
    import numpy as np
    from exporters.graph_check import check_graph
    import nir
    from resformer_deploy.passes.unroll_dense import window_matrix
    from tests.support.small_models import small_inputs, small_model
    m = small_model("cifar16")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.Conv2d):  # a tenth of the weights zero (BN folding keeps them zero)
                mod.weight[torch.rand(mod.weight.shape, generator=gen) < 0.1] = 0.0
    x = small_inputs(m, 2)
    g = export_model(m)
    T = m.config.T
    r = get_target("reference").run(RunRequest.of(g, x, T))
    cg = count_graph(g, r.spikes, T, len(x))
    shapes, _ = check_graph(g)
    checked = fewer_count = 0
    for n, node in g.nodes.items():
        if not isinstance(node, nir.Conv2d):
            continue
        src = next(a for a, b in g.edges if b == n)
        path = node.metadata["torch_module"]
        geo = (shapes[src], shapes[n], node.stride, node.padding, node.dilation, node.groups)
        fan = window_matrix(np.ones_like(node.weight), *geo).getnnz(axis=0).astype(np.float64)
        fan_nz = window_matrix(node.weight, *geo).getnnz(axis=0).astype(np.float64)
        if cg[path].kind == "stem_mac":
            want, fewer = fan.sum() * T * len(x), fan_nz.sum() * T * len(x)
        else:
            counts = r.spikes[src].reshape(T * len(x), -1).double().sum(0).numpy()
            want, fewer = float((counts * fan).sum()), float((counts * fan_nz).sum())
        assert cg[path].ops == want >= fewer, path
        checked += 1
        fewer_count += want > fewer  # equal only where no zeroed weight's input spiked
    assert checked == 33  # the stem (host) and the 32 neuromorphic convolutions
    assert fewer_count == 33
    for path, v in count_torch(m, x).items():
        assert cg[path].ops == pytest.approx(v.ops, rel=1e-12), path


def test_replayed_counts_of_a_fixed_point_run_equal_its_graph_count():
    """ops --target loihi2-emu: PyTorch's counter (hooks as SOPMonitor) replaying the emulator's
    own spikes equals the graph count of that run; replaying the float run's spikes gives back the
    plain PyTorch count (so the replay changes nothing but the spikes)."""
    from resformer_deploy.analysis.operations import max_rel_diff, replay_counts
    from resformer_deploy.flows import prepare
    from resformer_deploy.model.precision import model_in_dtype
    from tests.support.small_models import small_inputs, small_model
    m = small_model("cifar16")
    x = small_inputs(m, 3).double()
    g, T = export_model(m, "float64"), m.config.T
    with model_in_dtype(m, torch.float64) as m64:
        ct = count_torch(m64, x)
    ref = get_target("reference").run(RunRequest.of(g, x, T))
    assert max_rel_diff({k: v.ops for k, v in ct.items()}, replay_counts(m, g, x, ref.spikes, ct)) == 0.0
    emu = get_target("loihi2-emu")
    res = emu.run(RunRequest.of(g, x, T, prepared=prepare(emu, g, samples=x, T=T)))
    cg = count_graph(g, res.spikes, T, 3)
    rc = replay_counts(m, g, x, res.spikes, ct)
    assert set(rc) == set(ct)
    assert max_rel_diff({k: v.ops for k, v in rc.items()}, cg) == 0.0
    assert max_rel_diff({k: v.ops for k, v in ct.items()}, cg) > 0  # the fixed-point spikes are not the float ones
    with pytest.raises(ValueError, match="replay has no spikes of neuron"):
        count_torch(m, x.float(), replay={})


def test_counts_in_chunks_equal_one_forward():
    """batch=: one forward per chunk (bounded activations); the totals are the whole batch's, with
    and without replaying another run's spikes (each chunk replays its own samples)."""
    from resformer_deploy.model.precision import model_in_dtype
    from tests.support.small_models import small_inputs, small_model
    m = small_model("cifar16")
    x = small_inputs(m, 5).double()
    g, T = export_model(m, "float64"), m.config.T
    ref = get_target("reference").run(RunRequest.of(g, x, T))
    replay = {(node.metadata or {})["torch_module"]: ref.spikes[n] for n, node in g.nodes.items()
              if (node.metadata or {}).get("role") == "neuron"}
    with model_in_dtype(m, torch.float64) as m64:
        for rp in (None, replay):
            whole = count_torch(m64, x, replay=rp)
            chunked = count_torch(m64, x, replay=rp, batch=2)  # chunks of 2, 2, 1
            assert set(chunked) == set(whole)
            assert {k: v.ops for k, v in chunked.items()} == {k: v.ops for k, v in whole.items()}
            assert sum(v.ops for v in whole.values()) > 0


def test_ops_command_on_the_emulator_checks_the_replayed_count(tmp_path):
    import json
    from tests.cli.test_cli import run
    r = run("ops", str(DIGITS_CKPT), "--target", "loihi2-emu", "--samples", "4", "--json-out", str(tmp_path / "o.json"))
    assert r.exit_code == 0, r.stderr
    j = json.loads((tmp_path / "o.json").read_text())
    assert j["reference"] == "PyTorch (replayed)" and j["max_rel_diff"] == 0.0
    assert set(j["reference_counts"]) == set(j["target_counts"]) - {k for k, v in j["target_counts"].items()
                                                                    if v["kind"] == "residual_add"}
    assert all("torch_ops" in v for v in j["reference_counts"].values())
