"""lava-cpu's ``merge`` option (targets/lava_processes/cluster.py): the same Lava process models,
run by the worker process itself through in-memory channels, compute what they compute in separate
processes. Each model does the same operations in the same order either way (only the transport
differs), so outputs and spikes are compared for equality, and both against PyTorch."""
import time

import numpy as np
import pytest
import torch

from exporters.torch_to_nir import export_model
from resformer_deploy.data.digits import load_digits_split
from resformer_deploy.model.checkpoint import load_checkpoint
from targets import get_target
from targets.base import RunRequest
from tests.conftest import DIGITS_CKPT
from tests.support.lava_util import descendants


@pytest.fixture(scope="module")
def digits():
    model = load_checkpoint(DIGITS_CKPT).model
    return model, export_model(model), load_digits_split().x_test[:3]


@pytest.mark.parametrize("dssa", ["fused", "synaptic"])
def test_merged_run_equals_the_run_in_separate_processes(digits, dssa):
    model, graph, x = digits
    before = set(descendants())
    runs = {merge: get_target("lava-cpu").run(RunRequest.of(graph, x, model.config.T, dssa=dssa, merge=merge))
            for merge in (False, True)}
    sep, mer = runs[False], runs[True]
    assert mer.stats.processes == sep.stats.processes and mer.stats.process_kinds == sep.stats.process_kinds
    assert sep.stats.shm_bytes > 0 and mer.stats.shm_bytes == 0  # merged: no Lava runtime, no shm channel
    assert torch.equal(mer.output, sep.output)
    assert set(mer.spikes) == set(sep.spikes) and len(mer.spikes) == 20
    assert all(torch.equal(mer.spikes[n], sep.spikes[n]) for n in sep.spikes)
    assert sum(int(s.sum()) for s in mer.spikes.values()) > 0  # the layers do spike
    with torch.no_grad():
        ref = model.double()(x.double())
    model.float()
    assert torch.equal(mer.output.argmax(-1), ref.argmax(-1))
    # the separate-process run's own check against PyTorch (spike for spike) is
    # tests/targets/test_lava_backend.py::test_lava_reproduces_pytorch_on_digits; here a sanity bound
    np.testing.assert_allclose(mer.output.numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)
    time.sleep(0.5)  # the worker has been reaped; its children too
    assert set(descendants()) <= before


def test_a_model_with_a_management_phase_is_refused():
    from lava.magma.core.model.py.model import PyLoihiProcessModel

    from targets.lava_processes.cluster import cluster_members

    class Guarded(PyLoihiProcessModel):
        def post_guard(self):
            return True

    class Builder:
        proc_model = Guarded

    class Executable:
        proc_builders = {"p": Builder()}
        channel_builders = []
    with pytest.raises(ValueError, match="Guarded has its own post_guard"):
        cluster_members(Executable())


def test_the_estimate_counts_no_forked_process_when_merged(digits):
    model, graph, _ = digits
    est = {merge: get_target("lava-cpu").estimate(RunRequest.sizing(graph, 20, model.config.T, merge=merge))
           for merge in (False, True)}
    assert est[True].basis.startswith("86 Lava processes (merged), 97 steps")
    assert est[False].basis.startswith("86 Lava processes, 97 steps")
    # the same models and channels; no forked process (86 fewer), and a model's step without hand-overs
    from targets.lava_cpu import PROCESS_BYTES
    assert est[False].peak_bytes - est[True].peak_bytes == 86 * PROCESS_BYTES
    assert est[True].seconds < est[False].seconds


def test_the_float_delay_line_keeps_its_matrix_and_computes_what_the_stock_model_does():
    import scipy.sparse as sp
    from lava.proc.sparse.models import PyDelaySparseModelFloat

    from targets.lava_processes.sparse_float import PyDelaySparseModelFloatCached
    rng = np.random.RandomState(0)
    w = sp.random(7, 5, density=0.6, random_state=rng, format="csr")
    d = w.copy()
    d.data = rng.randint(0, 4, d.nnz).astype(float)  # delays 0..3
    models = []
    for cls in (PyDelaySparseModelFloat, PyDelaySparseModelFloatCached):
        m = cls({})
        m.weights, m.delays, m.a_buff = w.copy(), d.astype(int), np.zeros((7, 4))
        models.append(m)
    for _ in range(6):
        s_in = rng.rand(5) < 0.5
        for m in models:
            m.update_act(s_in)
        assert np.array_equal(models[0].a_buff, models[1].a_buff)
    assert models[1]._delay_wgts is not None and np.abs(models[0].a_buff).sum() > 0
