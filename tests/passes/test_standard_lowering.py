"""Pure-standard NIR: dense unrolling + SpikeMatMul -> coincidence neurons; norse interoperability."""
import nir
import numpy as np
import pytest
import torch

from exporters.graph_check import check_graph
from exporters.nir_io import read_nir, write_nir
from exporters.norse_adapter import prepare_for_norse, run_norse
from exporters.torch_to_nir import export_model
from resformer_deploy.errors import DeployError
from resformer_deploy.model.resformer import build_model
from resformer_deploy.passes.spike_matmul_to_standard import lower_spike_matmuls
from resformer_deploy.passes.unroll_dense import unroll_dense
from resformer_deploy.analysis.compare import compare_run, record_torch
from targets import get_target
from targets.base import RunRequest
from resformer_deploy.model.calibration import randomize_state


@pytest.fixture(scope="module")
def tiny():
    m = randomize_state(build_model("tiny"), seed=2, bias_mean=0.8).eval()
    x = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2
    return m, x


def test_standard_file_passes_stock_nir_type_checking(tiny, tmp_path):
    m, _ = tiny
    g = lower_spike_matmuls(unroll_dense(export_model(m)))
    write_nir(g, tmp_path / "std.nir")
    stock = nir.read(tmp_path / "std.nir")  # stock reader, type_check=True
    std_types = {"Input", "Output", "Flatten", "Affine", "Linear", "LIF", "Scale"}
    assert {type(v).__name__ for v in stock.nodes.values()} <= std_types
    assert "SpikeMatMul" not in {type(v).__name__ for v in read_nir(tmp_path / "std.nir").nodes.values()}
    ands = [v for n, v in stock.nodes.items() if n.endswith("_and")]
    assert len(ands) == 4 and all(np.all(v.v_threshold == 1.5) for v in ands)


def test_standard_lowering_reproduces_pytorch_exactly_in_float64(tiny):
    m, x = tiny
    m64 = m.double()
    rec = record_torch(m64, x.double())
    g = lower_spike_matmuls(unroll_dense(export_model(m64, "float64")))
    r = get_target("reference").run(RunRequest.of(g, x.double(), 4, record_membranes=True, dtype=torch.float64))
    rep = compare_run(g, rec, r)
    m.float()
    assert rep.total_mismatches == 0 and rep.logits_max_rel_diff < 1e-12
    rates = [layer.torch_rate for layer in rep.layers]
    assert min(rates[:3]) > 0.01 and max(rates) > 0.3  # DSSA layers spike
    and_rates = [float(r.spikes[n].float().mean()) for n in r.spikes if n.endswith("_and")]
    assert all(a > 0 for a in and_rates)  # coincidences actually happen


def test_norse_reproduces_the_interpreter_bit_exactly(tiny):
    m, x = tiny
    g = lower_spike_matmuls(unroll_dense(export_model(m)))
    ours = get_target("reference").run(RunRequest.of(g, x, 4))
    out, spikes = run_norse(g, x, 4)
    assert set(spikes) == set(ours.spikes) and len(spikes) == 17
    for n in ours.spikes:
        assert torch.equal(spikes[n], ours.spikes[n]), n
    assert torch.equal(out, ours.output)


def test_norse_without_the_execution_order_fix_is_wrong(tiny):
    # Guards the workaround: nirtorch 2.6 runs nodes in DFS preorder, so a coincidence
    # neuron reads one of its inputs from the previous step.
    import norse.torch as nt
    m, x = tiny
    g = prepare_for_norse(lower_spike_matmuls(unroll_dense(export_model(m))))
    net = nt.from_nir(g, dt=1e-3)
    order = [n.name for n in net.execution_order]
    assert order.index("layers_0_0_matmul1_and") < order.index("layers_0_0_matmul1_sel_r")


def test_norse_refuses_extension_nodes_listing_them(tiny):
    m, _ = tiny
    with pytest.raises(DeployError, match=r"norse 1.1.0 cannot run .* layers_0_0_matmul1 \(SpikeMatMul\)"):
        prepare_for_norse(export_model(m))


def test_norse_runs_conv_form_gwffn_and_downsample(tmp_path):
    """The conv-form graph (grouped conv expanded for norse) of a model without attention
    products: cut the digits graph after stage 0's GWFFN + stage 1's downsample."""
    from tests.conftest import DIGITS_CKPT
    from resformer_deploy.model.checkpoint import load_checkpoint
    g = export_model(load_checkpoint(DIGITS_CKPT).model)
    keep = ["layers_0_1_up_0", "layers_0_1_up_1", "layers_0_1_conv_0_0", "layers_0_1_conv_0_1",
            "layers_0_1_inner_add", "layers_0_1_down_0", "layers_0_1_down_1", "layers_0_1_add",
            "layers_1_0_activation", "layers_1_0_conv"]
    nodes = {n: g.nodes[n] for n in keep}
    nodes["input"] = nir.Input(input_type=np.array([16, 8, 8]))
    nodes["output"] = nir.Output(output_type=np.array([32, 4, 4]))
    edges = [(a, b) for a, b in g.edges if a in keep and b in keep]
    edges += [("input", "layers_0_1_up_0"), ("input", "layers_0_1_add"), ("layers_1_0_conv", "output")]
    sub = nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(g.metadata), type_check=False)
    assert check_graph(sub)[1] == [] and sub.nodes["layers_0_1_conv_0_1"].groups == 4
    x = torch.randn(6, 16, 8, 8, generator=torch.Generator().manual_seed(1)) + 0.5
    ours = get_target("reference").run(RunRequest.of(sub, x, 4))
    out, spikes = run_norse(sub, x, 4)
    for n in ours.spikes:
        assert torch.equal(spikes[n], ours.spikes[n]), n
        assert ours.spikes[n].float().mean() > 0.01
    torch.testing.assert_close(out, ours.output, rtol=1e-5, atol=1e-5)  # dense vs grouped conv sum order


def test_lowering_refuses_large_products_naming_them():
    from tests.conftest import DIGITS_CKPT
    from resformer_deploy.model.checkpoint import load_checkpoint
    g = unroll_dense(export_model(load_checkpoint(DIGITS_CKPT).model))
    with pytest.raises(DeployError, match="layers_0_0_matmul1: needs .* coincidence neurons"):
        lower_spike_matmuls(g, max_units=10_000)


def test_unroll_refuses_max_pool():
    m = randomize_state(build_model("ti", img_size=32), seed=0).eval()
    with pytest.raises(DeployError) as e:
        unroll_dense(export_model(m))
    msg = str(e.value)  # every violation at once
    assert "prologue_2: max-pooling has no standard NIR form" in msg and "prologue_0: unrolled matrix" in msg
