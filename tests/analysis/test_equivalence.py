"""verify_model: estimated before any work and refused, with the figures, beyond the memory
budget; a target without a cost model is said to have none and verified all the same; each
phase reports progress."""
import pytest
import torch

from resformer_deploy.analysis import equivalence
from resformer_deploy.api import sizing
from resformer_deploy.model.resformer import build_model
from resformer_deploy.util.memory_budget import ENV, MemoryBudgetError
from targets.reference import ReferenceTarget
from targets.base import RunRequest
from resformer_deploy.model.calibration import randomize_state


@pytest.fixture
def tiny():
    m = randomize_state(build_model("tiny"), seed=0, bias_mean=0.8).eval()
    return m, torch.rand(3, m.config.in_channels, m.config.img_size, m.config.img_size,
                         generator=torch.Generator().manual_seed(0))


class Bars:
    """Records every progress bar verify_model opens: (label, total, unit, updates)."""

    def __init__(self):
        self.opened = []

    def __call__(self, total, label, unit):
        bars = self

        class Bar:
            def __enter__(self):
                self.row = [label, total, unit, 0]
                bars.opened.append(self.row)
                return self

            def __exit__(self, *exc):
                return False

            def update(self, n=1):
                self.row[3] += n
        return Bar()


def test_refused_before_any_work_with_the_figures(tiny, monkeypatch):
    m, x = tiny
    ran = []
    monkeypatch.setattr(equivalence, "record_torch", lambda *a, **k: ran.append("torch"))
    monkeypatch.setattr(ReferenceTarget, "run", lambda *a, **k: ran.append("target"))
    monkeypatch.setenv(ENV, "1000")
    lines = []
    with pytest.raises(MemoryBudgetError, match=r"verify on target 'reference' \[float64\] needs about [\d.]+ KiB > "
                                                r"memory budget 1.0 KiB") as e:
        equivalence.verify_model(m, x, precision="float64", say=lines.append, sizing=sizing)
    assert ran == []  # neither PyTorch nor the target ran
    assert "PyTorch phase" in str(e.value) and "target phase" in str(e.value) and "run " in str(e.value)
    assert len(lines) == 1 and lines[0].startswith("estimate [float64]: ~")
    with pytest.raises(MemoryBudgetError):
        sizing.size_verification(m, x.shape[0], "reference", [("float32", {})])


def test_estimate_has_the_targets_streamed_run_and_is_refused_only_beyond_the_budget(tiny, monkeypatch):
    from exporters.torch_to_nir import export_model
    m, x = tiny
    g = export_model(m)
    tgt = ReferenceTarget()
    est = equivalence.estimate_verification(m, 100, g, tgt, torch.float64)
    # streamed: the target is estimated as run, keeping no spike record
    assert est.streamed and est.target_estimate == tgt.estimate(RunRequest.sizing(g, 100, m.config.T, dtype=torch.float64,
                                                                 record_spikes=False, on_spikes=print))
    assert est.peak_bytes == max(est.torch_bytes + est.record_bytes, est.record_bytes + est.graph_bytes
                                 + est.target_estimate.peak_bytes + est.compare_bytes)
    monkeypatch.setenv(ENV, str(est.peak_bytes))
    est.check()  # exactly at the budget: fits
    monkeypatch.setenv(ENV, str(est.peak_bytes - 1))
    with pytest.raises(MemoryBudgetError):
        est.check()


def test_a_target_without_cost_model_is_said_so_and_verified(tiny, monkeypatch):
    m, x = tiny

    class NoModel(ReferenceTarget):
        def estimate(self, *a, **k):
            return None
    monkeypatch.setattr(equivalence, "get_target", lambda name: NoModel())
    lines, bars = [], Bars()
    rep = equivalence.verify_model(m, x, precision="float64", say=lines.append, bars=bars, sizing=sizing)
    assert rep.verdict == "exact"
    assert len(lines) == 1 and "has no cost model: its time and memory are not included" in lines[0]
    n_lif = len(rep.layers)
    assert bars.opened == [["PyTorch record (float64)", n_lif, "layers", n_lif],
                           ["reference run + comparison (float64)", m.config.T, "steps", m.config.T]]


def test_a_target_that_does_not_stream_is_compared_after_its_run(tiny, monkeypatch):
    """Without ``on_spikes`` the run returns whole records and compare_run compares them, with
    its own progress bar; the report is the streamed one."""
    m, x = tiny

    class Whole(ReferenceTarget):
        capabilities = ReferenceTarget.capabilities.__class__(
            **{**ReferenceTarget.capabilities.__dict__, "options": ("record_nodes",)})
    streamed = equivalence.verify_model(m, x, precision="float32")
    monkeypatch.setattr(equivalence, "get_target", lambda name: Whole())
    bars = Bars()
    whole = equivalence.verify_model(m, x, precision="float32", bars=bars)
    n_lif = len(whole.layers)
    assert [b[0] for b in bars.opened] == ["PyTorch record (float32)", "reference run (float32)",
                                           "comparison (float32)"]
    assert bars.opened[2][1:] == [n_lif, "layers", n_lif]
    skip = {"seconds"}
    assert {k: getattr(whole, k) for k in whole.keys() if k not in skip} == {
        k: getattr(streamed, k) for k in streamed.keys() if k not in skip}
