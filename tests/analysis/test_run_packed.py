"""The drift ladder's fixed-point run in chunks of samples with packed spike records
(analysis.drift.run_packed) against one run of the same samples."""
import dataclasses

import torch

from exporters.torch_to_nir import export_model
from resformer_deploy.analysis import drift
from resformer_deploy.analysis.compare import PackedMasks, count_true
from resformer_deploy.data.digits import load_digits_split
from resformer_deploy.flows.fixed_point import calibrate_and_quantize, calibration_inputs
from resformer_deploy.model.checkpoint import load_checkpoint
from targets import RunRequest, get_target
from tests.conftest import DIGITS_CKPT


def test_chunked_packed_run_equals_one_run_outputs_spikes_and_saturation(monkeypatch):
    m = load_checkpoint(DIGITS_CKPT).model.double().eval()
    g, T = export_model(m, "float64"), m.config.T
    xc, _ = calibration_inputs((1, 8, 8), 32)
    q = calibrate_and_quantize(g, xc.double(), T)
    # the input stream's scale raised 2^10-fold: layers wrap and saturate, so the counts are summed over chunks
    q = dataclasses.replace(q, scale={n: s * (2.0 ** 10 if n in q.plan.inputs else 1.0) for n, s in q.scale.items()})
    x = load_digits_split().x_test[:13].double()
    one = get_target("loihi2-emu").run(RunRequest.of(g, x, T, quant=q))
    per_sample = sum(int(s[0, 0].numel()) for s in one.spikes.values()) * T  # bool bytes of one sample's records
    monkeypatch.setattr(drift, "RECORD_CHUNK_BYTES", 5 * per_sample)  # chunks of 5, 5 and 3 samples
    calls = []
    real_run = get_target("loihi2-emu").__class__.run
    monkeypatch.setattr(get_target("loihi2-emu").__class__, "run",
                        lambda self, req: calls.append(req.n_samples) or real_run(self, req))
    got = drift.run_packed("loihi2-emu", g, x, T, quant=q)
    assert calls == [5, 5, 3]
    assert isinstance(got.spikes, PackedMasks) and list(got.spikes) == list(one.spikes)
    assert torch.equal(got.output, one.output)
    for n, s in one.spikes.items():
        assert got.spikes.shape(n) == tuple(s.shape) and torch.equal(got.spikes[n], s)
        assert torch.equal(got.spikes.head(4)[n], s[:, :4])
        assert count_true(got.spikes, n) == count_true(one.spikes, n) == int(s.sum())
    assert one.stats.saturation and got.stats.saturation == one.stats.saturation
    assert got.stats.exact_dtypes == one.stats.exact_dtypes
