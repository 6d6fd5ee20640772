"""Defaults that fit (issue 27), below the command line: the counts and lowerings a user did not
ask for are lowered to what fits the memory budget and said so; what was asked for is left as it
is (refused later). Expected counts come from a linear scan of the estimates themselves, not from
the bisection under test; budgets are set small through RESFORMER_DEPLOY_MEMORY_BUDGET."""
import pytest
import torch

from resformer_deploy.analysis import drift
from resformer_deploy.analysis.equivalence import DTYPES, estimate_verification
from resformer_deploy.analysis.sizing import largest_that_fits
from resformer_deploy.api.sizing import fit_verification
from resformer_deploy.model.checkpoint import load_checkpoint
from resformer_deploy.model.precision import model_in_dtype
from resformer_deploy.util.memory_budget import ENV
from tests.conftest import DIGITS_CKPT
from exporters.torch_to_nir import export_model
from targets import get_target


@pytest.fixture(scope="module")
def digits():
    return load_checkpoint(DIGITS_CKPT).model


def _scan(fits, most):
    """The largest n in 1..most that fits, by trying every n (0: none)."""
    return max([n for n in range(1, most + 1) if fits(n)], default=0)


@pytest.mark.parametrize("limit", [0, 1, 2, 7, 8, 100])
@pytest.mark.parametrize("most", [1, 2, 9, 100])
def test_largest_that_fits_is_the_linear_scan(limit, most):
    calls = []

    def fits(n):
        calls.append(n)
        return n <= limit
    assert largest_that_fits(fits, most) == _scan(lambda n: n <= limit, most)
    assert len(calls) <= most.bit_length() + 1  # bisection: a handful of estimates, not one per count


def _verify_need(model, target, n, precision, dssa=None):
    with model_in_dtype(model, torch.float32) as m:
        graph = export_model(m.eval(), "float32")
    return estimate_verification(model, n, graph, get_target(target), DTYPES[precision],
                                 **({"dssa": dssa} if dssa else {})).peak_bytes


def test_default_samples_lowered_to_the_most_that_fit(digits, monkeypatch):
    budget = 5_000_000
    monkeypatch.setenv(ENV, str(budget))
    said = []
    n, lows = fit_verification(digits, 8, "reference", ["float64", "float32"], None, False, False, said.append)
    want = _scan(lambda k: all(_verify_need(digits, "reference", k, p) <= budget for p in ("float64", "float32")), 8)
    assert 1 <= want < 8 and n == want and lows is None
    assert said == [f"note: the default --samples 8 does not fit the memory budget 4.8 MiB: running {want} "
                    f"sample(s), the most that fit"]
    # asked for: kept as it is, nothing said (api.sizing.size_verification refuses it, with advice)
    said.clear()
    assert fit_verification(digits, 8, "reference", ["float64", "float32"], None, True, False, said.append) == (8, None)
    assert said == []


def test_default_dssa_both_drops_the_lowering_that_does_not_fit(digits, monkeypatch):
    fused, synaptic = (_verify_need(digits, "lava-cpu", 1, "float64", d) for d in ("fused", "synaptic"))
    assert fused < synaptic  # the synaptic lowering adds processes and channels
    budget = (fused + synaptic) // 2
    monkeypatch.setenv(ENV, str(budget))
    said = []
    n, lows = fit_verification(digits, 1, "lava-cpu", ["float64"], ["fused", "synaptic"], True, False, said.append)
    assert (n, lows) == (1, ["fused"])
    assert len(said) == 1 and said[0].startswith("note: the default --dssa both: the synaptic lowering needs about")
    assert said[0].endswith("running --dssa fused only")
    # --dssa both asked for: both kept (and refused later)
    assert fit_verification(digits, 1, "lava-cpu", ["float64"], ["fused", "synaptic"], True, True,
                            said.append) == (1, ["fused", "synaptic"])


def _ladder_need(graph, choices, e, lv, dssa, per_sample_record, plans={}):
    sizes = drift.rung_sizes(choices, graph, e, min(lv, e), 4, dssa, 8, plans.setdefault(id(graph), {}))
    return max([est.peak_bytes + beside for _, _, est, beside in sizes] + [per_sample_record * e])


def test_ladder_defaults_lowered_rung_by_rung(digits, monkeypatch):
    from resformer_deploy.model.summary import LADDER_RECORD_BYTES_PER_NEURON_STEP, neurons_per_step
    with model_in_dtype(digits, torch.float64) as m:
        graph = drift._read_back(m.eval())
    choices = drift.choose_rungs(None, subset=True)
    rec = neurons_per_step(digits) * 4 * LADDER_RECORD_BYTES_PER_NEURON_STEP
    fused_1 = _ladder_need(graph, choices, 1, 1, "fused", rec)
    synaptic_1 = _ladder_need(graph, choices, 1, 1, "synaptic", rec)
    budget = fused_1 + (synaptic_1 - fused_1) // 4  # a few dozen samples fit fused, none synaptic
    assert _ladder_need(graph, choices, 359, 10, "fused", rec) > budget  # the defaults do not fit
    monkeypatch.setenv(ENV, str(budget))
    said = []
    lows, e, lv = drift.fit_ladder(digits, ["fused", "synaptic"], 359, 10, set(), said.append)
    # the most that fit: e fits and e + 1 does not (the evaluation samples at one Lava sample), then
    # every Lava count up to the one kept fits and the next does not
    assert lows == ["fused"] and 1 <= e < 359 and 1 <= lv <= 10
    assert _ladder_need(graph, choices, e, 1, "fused", rec) <= budget < _ladder_need(graph, choices, e + 1, 1,
                                                                                      "fused", rec)
    assert lv == _scan(lambda k: _ladder_need(graph, choices, e, k, "fused", rec) <= budget, min(10, e))
    assert said[0].startswith("note: the default --dssa both: the synaptic ladder needs about")
    assert said[1].startswith("note: the default 359 evaluation samples do not fit the memory budget")
    assert said[1].endswith(f"running {e}, the most that fit")
    # what was asked for stays, nothing said
    said.clear()
    assert drift.fit_ladder(digits, ["fused", "synaptic"], 359, 10, {"dssa", "eval", "lava"}, said.append) == \
        (["fused", "synaptic"], 359, 10)
    assert said == []
