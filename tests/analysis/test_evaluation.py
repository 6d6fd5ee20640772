"""analysis/evaluation.py: metrics against an independent computation from the PyTorch model's
outputs, batching (order, sizes, the flow prepared once), estimates before work, calibration."""
import numpy as np
import pytest
import torch

import resformer_deploy.flows as flows
from exporters.torch_to_nir import export_model
from resformer_deploy.analysis.data_inputs import DataArgs, calibration_data
from resformer_deploy.analysis.evaluation import PREDICTION_KEYS, RESULT_KEYS, Tally, evaluate, top_classes
from resformer_deploy.api import sizing
from resformer_deploy.data.digits import load_digits_split
from resformer_deploy.errors import DeployError
from resformer_deploy.model.precision import model_in_dtype
from resformer_deploy.util.memory_budget import ENV, MemoryBudgetError
from targets import get_target
from targets.reference import ReferenceTarget
from targets.base import RunRequest


@pytest.fixture(scope="module")
def digits(digits_heldout):
    return digits_heldout


def expected_metrics(scores: np.ndarray, labels: np.ndarray, k: int, K: int):
    """top-1, top-k and per-class accuracy by hand (numpy stable sort of -scores)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    pred = order[:, 0]
    topk = np.mean([labels[i] in order[i, :k] for i in range(len(labels))])
    per_class = [(int((labels == c).sum()), int(((pred == labels) & (labels == c)).sum())) for c in range(K)]
    return pred, order[:, :k], float(np.mean(pred == labels)), float(topk), per_class


def test_torch_metrics_match_the_model_outputs(ck, digits):
    n = 40
    rep = evaluate(ck, digits, "torch", limit=n, batch_size=16, workers=2)
    assert tuple(rep) == RESULT_KEYS
    split = load_digits_split()
    with torch.no_grad():
        scores = ck.model.eval()(split.x_test[:n]).mean(0).numpy()
    labels = split.y_test[:n].numpy()
    pred, top5, top1, topk, per_class = expected_metrics(scores, labels, 5, 10)
    assert rep["samples"] == n and rep["top5_k"] == 5
    assert rep["top1"] == top1 and rep["top5"] == topk
    assert [(c["samples"], c["correct"]) for c in rep["per_class"]] == per_class
    assert [c["accuracy"] for c in rep["per_class"]] == [k / m if m else None for m, k in per_class]
    assert [p["prediction"] for p in rep["predictions"]] == pred.tolist()
    assert [p["top5"] for p in rep["predictions"]] == top5.tolist()
    assert [p["label"] for p in rep["predictions"]] == labels.tolist()
    assert all(tuple(p) == PREDICTION_KEYS and p["torch_prediction"] is None for p in rep["predictions"])
    assert rep["agreement_with_torch"] is None and rep["torch_top1"] is None and rep["calibration"] is None
    assert rep["preset"]["preset"] == "digits" and rep["data"]["kind"] == "digits"
    tp = rep["throughput"]
    assert tp["samples_per_second"] == pytest.approx(n / tp["wall_seconds"])
    assert tp["loading_share"] == pytest.approx(tp["data_wait_seconds"] / tp["wall_seconds"])
    assert 0 <= tp["loading_share"] <= 1


def test_order_is_deterministic_whatever_the_batching(ck, digits):
    a = evaluate(ck, digits, "torch", limit=13, batch_size=5, workers=0)["predictions"]
    b = evaluate(ck, digits, "torch", limit=13, batch_size=13, workers=3)["predictions"]
    assert a == b
    assert [p["index"] for p in a] == list(range(13))
    assert [p["name"] for p in a] == [digits.source.ref(i).name for i in range(13)]


def test_target_runs_batches_on_one_prepared_flow(ck, digits, monkeypatch):
    """reference target: every batch at most --batch-size, the flow prepared once, predictions
    and agreement as the reference interpreter and the float64 PyTorch model give them."""
    sizes, prepares = [], []
    run, prepare = ReferenceTarget.run, flows.prepare
    monkeypatch.setattr(ReferenceTarget, "run", lambda self, req: sizes.append(len(req.x)) or run(self, req))
    monkeypatch.setattr(flows, "prepare", lambda *a, **kw: prepares.append(1) or prepare(*a, **kw))
    n = 20
    rep = evaluate(ck, digits, "reference", limit=n, batch_size=8)
    assert sizes == [8, 8, 4] and len(prepares) == 1
    x = load_digits_split().x_test[:n].double()
    graph = export_model(ck.model, "float64")
    out = get_target("reference").run(RunRequest.of(graph, x, 4, dtype=torch.float64, record_spikes=False)).output.mean(0)
    with model_in_dtype(ck.model, torch.float64) as m, torch.no_grad():
        ref = m(x).mean(0)
    assert [p["prediction"] for p in rep["predictions"]] == top_classes(out, 1)[:, 0].tolist()
    assert [p["torch_prediction"] for p in rep["predictions"]] == top_classes(ref, 1)[:, 0].tolist()
    agree = float((top_classes(out, 1) == top_classes(ref, 1)).float().mean())
    assert rep["agreement_with_torch"] == agree and rep["torch_precision"] == "float64"
    assert rep["torch_top1"] == float((top_classes(ref, 1)[:, 0] == load_digits_split().y_test[:n]).float().mean())


def test_given_torch_scores_replace_the_model_run(ck, digits, monkeypatch):
    """torch_scores (scores computed before, by sample index) are the PyTorch side of the
    comparison and the model is not run; scores of the wrong shape are refused."""
    n, K = len(digits.source), ck.config.num_classes
    with model_in_dtype(ck.model, torch.float64) as m, torch.no_grad():
        own = m.eval()(load_digits_split().x_test.double()).mean(0)
    plain = evaluate(ck, digits, "reference", limit=12, batch_size=5)
    given = evaluate(ck, digits, "reference", limit=12, batch_size=5, torch_scores=own)
    assert given["predictions"] == plain["predictions"]
    shifted = own.roll(1, dims=1)  # column c moves to c + 1: every PyTorch class shifts by one
    monkeypatch.setattr(type(ck.model), "forward", lambda *a, **k: pytest.fail("model run despite torch_scores"))
    rep = evaluate(ck, digits, "reference", limit=12, batch_size=5, torch_scores=shifted)
    assert [p["torch_prediction"] for p in rep["predictions"]] == \
        [(p["torch_prediction"] + 1) % K for p in plain["predictions"]]
    with pytest.raises(DeployError, match=rf"torch_scores: shape \(12, {K}\), expected \({n}, {K}\)"):
        evaluate(ck, digits, "reference", limit=12, torch_scores=own[:12])


def test_estimate_refuses_before_any_batch_runs(ck, digits, monkeypatch):
    runs = []
    monkeypatch.setattr(ReferenceTarget, "run", lambda *a, **k: runs.append(1))
    monkeypatch.setenv(ENV, str(2 ** 22))  # above the graph and one sample (else the advice is not the batch)
    lines = []
    with pytest.raises(MemoryBudgetError, match=r"evaluate on target 'reference': batches of 16 samples need about "
                                                r".* > memory budget 4.0 MiB .*use a smaller --batch-size"):
        evaluate(ck, digits, "reference", limit=40, batch_size=16, say=lines.append, sizing=sizing)
    assert runs == [] and lines[0].startswith("estimate: ~") and "3 batch(es) of <= 16" in lines[0]


def test_fixed_point_target_records_given_calibration(ck, digits):
    cal = calibration_data(DataArgs(data="digits", calib_data="digits"), ck.config, ck.variant, 16, digits)
    rep = evaluate(ck, digits, "loihi2-emu", limit=10, batch_size=5, calibration=cal)
    c = rep["calibration"]
    assert c["samples"] == 16 and "train split" in c["source"] and c["data"]["split"] == "train"
    assert c["data"]["samples_used"] == 16 and c["data"]["first"] == digits_train_name(0)
    assert 0.8 <= rep["agreement_with_torch"] <= 1.0 and rep["samples"] == 10
    with pytest.raises(DeployError, match="target 'reference' runs floating point; nothing is calibrated"):
        evaluate(ck, digits, "reference", limit=4, calibration=cal)


def digits_train_name(i):
    from resformer_deploy.data.sources import DigitsSource
    return DigitsSource("train").ref(i).name


def test_calibration_refuses_the_evaluation_samples(ck, digits):
    with pytest.raises(DeployError, match=r"--calib-data digits \(split test\) reads the evaluation samples"):
        calibration_data(DataArgs(data="digits", calib_data="digits", calib_split="test"), ck.config, ck.variant, 8,
                         digits)


def test_tally_ties_and_top_k():
    """Equal scores: the lower class first (as argmax); k below 5 for fewer classes."""
    scores = torch.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    assert top_classes(scores, 3).tolist() == [[1, 2, 0], [0, 1, 2]]
    assert top_classes(scores, 1)[:, 0].tolist() == scores.argmax(-1).tolist()
    from resformer_deploy.data.sources import SampleRef
    t = Tally(["a", "b", "c"], 2)
    t.add([SampleRef(0, "x0"), SampleRef(1, "x1")], torch.tensor([2, 2]), scores, torch.tensor([[0., 0., 1.]] * 2))
    assert (t.n, t.top1, t.topk, t.agree, t.torch_top1) == (2, 0, 1, 0, 2)
    assert t.per_class()[2] == {"class": 2, "name": "c", "samples": 2, "correct": 0, "accuracy": 0.0}
    assert t.per_class()[0]["accuracy"] is None


@pytest.mark.parametrize("target,precision,expected", [("loihi2-emu", "auto", "float32"),
                                                       ("loihi2-emu", "float64", "float64"),
                                                       ("reference", "float32", "float32")])
def test_torch_precision_beside_a_target(ck, digits, target, precision, expected):
    """auto: float32 PyTorch beside a fixed-point target (as deployed); the option overrides it.
    torch_prediction is the model's own prediction in that precision."""
    n = 12
    rep = evaluate(ck, digits, target, limit=n, batch_size=12, torch_precision=precision)
    assert rep["torch_precision"] == expected
    x = load_digits_split().x_test[:n]
    dtype = getattr(torch, expected)
    with model_in_dtype(ck.model, dtype) as m, torch.no_grad():
        ref = m(x.to(dtype)).mean(0)
    assert [p["torch_prediction"] for p in rep["predictions"]] == top_classes(ref, 1)[:, 0].tolist()


def test_fixed_point_evaluation_is_sized_before_calibration_and_without_a_given_pytorch_run(ck, digits, monkeypatch):
    from resformer_deploy.analysis.evaluation import estimate_evaluation
    from resformer_deploy.flows import prepare
    with model_in_dtype(ck.model, torch.float64) as m:
        g = export_model(m.eval(), "float64")
    emu, T = get_target("loihi2-emu"), ck.config.T
    args = (g, emu, 40, 8, T, digits.sample_bytes, 4)
    x = load_digits_split().x_test[:8].double()
    after = estimate_evaluation(*args, prepared=prepare(emu, g, samples=x, T=T, calib_samples=16),
                                record_spikes=False)
    before = estimate_evaluation(*args, record_spikes=False)
    assert before == after and before.torch_bytes > 0  # the quantized network has its plan's sizes
    given = estimate_evaluation(*args, torch_runs=False, record_spikes=False)
    assert given.torch_bytes == 0 and given.torch_seconds == 0 and given.target_estimate == before.target_estimate
    # refused before calibration: the flow is never prepared
    monkeypatch.setattr(flows, "prepare", lambda *a, **k: pytest.fail("prepared despite the refusal"))
    monkeypatch.setenv(ENV, str(2 ** 16))
    with pytest.raises(MemoryBudgetError, match="evaluate on target 'loihi2-emu': batches of 8 samples"):
        evaluate(ck, digits, "loihi2-emu", limit=40, batch_size=8, sizing=sizing)
