"""Sizing happens in one place (issue 26): every job's estimate-tell-refuse step is a function of
api/sizing.py, also where an analysis sizes in the middle of its work (an evaluation once
exported, the drift ladder's rungs before the PyTorch record, a rung once calibrated). Each
function is made to refuse in turn: the job must stop with that refusal, before the work that
step sizes. A job that sized anywhere else would run on past it."""
import pytest

from resformer_deploy import api
from resformer_deploy.analysis import drift, equivalence, evaluation
from resformer_deploy.api import sizing
from resformer_deploy.util.memory_budget import MemoryBudgetError
from targets import get_target


class Refused(MemoryBudgetError):
    pass


@pytest.fixture
def work(monkeypatch):
    """The work each sizing step comes before, as it starts: PyTorch batches, records and
    predictions, and any target's run."""
    done = []

    def mark(owner, name, what):
        real = getattr(owner, name)

        def marked(*a, **k):
            done.append(what)
            return real(*a, **k)
        monkeypatch.setattr(owner, name, marked)

    mark(evaluation, "run_batches", "batches")
    mark(drift, "record_torch", "torch record")
    mark(equivalence, "record_torch", "torch record")
    import resformer_deploy.training.loop as loop
    mark(loop, "predict", "torch predict")
    for name in ("reference", "loihi2-emu"):
        mark(type(get_target(name)), "run", f"{name} run")
    return done


def refuse(monkeypatch, name):
    """api.sizing.<name> sizes as before (its lines still said, its own refusal kept) and then
    refuses: the job gets that far and no further."""
    called = []
    real = getattr(sizing, name)

    def refusing(*a, **k):
        called.append(name)
        real(*a, **k)
        raise Refused(f"{name} refused")
    monkeypatch.setattr(sizing, name, refusing)
    return called


def _evaluate(ck, tmp_path, monkeypatch):
    data, _ = api.open_data(api.DataArgs(data="digits"), ck)
    api.evaluate(ck, data, api.EvaluateOptions(target="reference", limit=8, batch_size=4))


def _drift(ck, tmp_path, monkeypatch):
    api.drift(ck, api.DriftOptions(targets=("loihi2-emu",), lava_samples=0, eval_samples=16, calib_samples=16))


def _demo(ck, tmp_path, monkeypatch):
    """The demo on digits with the held-out split also as a data set (as a generated split is:
    cifar, dvsg), so the whole split is streamed after a 16-sample ladder."""
    import importlib
    demo = importlib.import_module("resformer_deploy.api.demo")  # the module (api.demo is the job)
    real = demo.demo_split

    def with_data(*a, **k):
        split = real(*a, **k)
        split.data, _ = api.open_data(api.DataArgs(data="digits"), ck)
        return split
    monkeypatch.setattr(demo, "demo_split", with_data)
    api.demo(api.DemoOptions(lava_samples=0, eval_samples=16, calib_samples=16, out_dir=str(tmp_path)))


def _verify(ck, tmp_path, monkeypatch):
    api.verify(ck, api.VerifyOptions(target="reference", samples=2, precision="float64"))


def _report(ck, tmp_path, monkeypatch):
    api.report(ck, str(tmp_path / "report"), api.ReportOptions(lava_samples=0, eval_samples=16, calib_samples=16))


def _simulate(ck, tmp_path, monkeypatch):
    nir_file = api.export(ck, str(tmp_path / "d.nir")).path
    api.simulate(nir_file, api.SimulateOptions(target="reference", samples=2))


def _ops(ck, tmp_path, monkeypatch):
    api.ops(ck, api.OpsOptions(target="reference", samples=2))


# (job, the sizing function made to refuse, work that must have started before it, work that must not)
CASES = [
    (_evaluate, "size_estimate", [], ["batches", "reference run"]),
    (_drift, "size_ladder", [], ["torch record", "loihi2-emu run"]),
    (_drift, "size_rungs", [], ["torch record", "loihi2-emu run"]),
    (_drift, "size_run", ["torch record"], ["loihi2-emu run"]),  # the fixed-point rung, once calibrated
    (_demo, "size_rungs", [], ["torch predict", "torch record", "loihi2-emu run"]),
    (_demo, "size_evaluation", [], ["torch predict", "torch record", "loihi2-emu run"]),
    (_demo, "size_run", ["torch predict", "torch record"], ["loihi2-emu run"]),  # the ladder in the report
    (_demo, "size_estimate", ["torch predict", "torch record", "loihi2-emu run"], ["batches"]),  # the whole split
    (_verify, "fit_verification", [], ["torch record", "reference run"]),
    (_verify, "size_verification", [], ["torch record", "reference run"]),
    (_verify, "size_estimate", [], ["torch record", "reference run"]),  # each run, again, as it starts
    (_report, "size_ladder", [], ["torch record", "loihi2-emu run"]),
    (_report, "size_run", ["torch record"], ["loihi2-emu run"]),
    (_simulate, "fit_run", [], ["reference run"]),
    (_simulate, "size_run", [], ["reference run"]),
    (_ops, "size_run", [], ["reference run"]),
]


@pytest.mark.parametrize("job,step,before,not_after", CASES,
                         ids=[f"{job.__name__[1:]}-{step}" for job, step, _, _ in CASES])
def test_each_job_sizes_through_api_sizing_before_the_work(job, step, before, not_after, ck, work, monkeypatch,
                                                           tmp_path):
    called = refuse(monkeypatch, step)
    with pytest.raises(Refused, match=f"{step} refused"):
        job(ck, tmp_path, monkeypatch)
    assert called == [step]
    assert set(before) <= set(work), work
    assert not set(not_after) & set(work), work


def test_every_function_of_api_sizing_is_some_jobs_step():
    """The table above reaches every sizing function (none is left unused or untested)."""
    assert {step for _, step, _, _ in CASES} == set(sizing.__all__)

