"""The core lower bound (hardware/loihi2/core_bound.py) never exceeds a real plan: per layer where the
plan's design-rule check is clean, and in total; its fan-out floors never exceed the plan's own fan-out
(Mapper.fanout), neuron by neuron and summed. The plan it rests on, without offsets, is the same plan."""
import numpy as np
import pytest

from exporters.torch_to_nir import export_model
from resformer_deploy.errors import DeployError
from resformer_deploy.hardware.loihi2 import map_to_loihi2, run_drc
from resformer_deploy.hardware.loihi2 import limits as L
from resformer_deploy.hardware.loihi2.core_bound import core_lower_bound, floor_destinations
from resformer_deploy.hardware.loihi2.partition import Mapper
from resformer_deploy.hardware.loihi2.shape_graph import shape_graph
from resformer_deploy.lava.plan import plan_lava
from resformer_deploy.model.calibration import random_buffers
from resformer_deploy.model.resformer import build_model
from tests.hardware.test_mapping import toy_graph


def _model_graph(variant, size):
    return shape_graph(random_buffers(build_model(variant, img_size=size)))


# m @32 has a design-rule finding (layers_2_1_add fan-in), so the per-layer check skips that layer only
@pytest.mark.parametrize("variant,size", [("cifar", 32), ("dvsg", 48), ("ti", 64), ("s", 32), ("m", 32)])
def test_bound_is_at_most_the_plan_per_clean_layer_and_in_total(variant, size):
    g = _model_graph(variant, size)
    bound = core_lower_bound(g)
    plan = map_to_loihi2(g, "fused")
    violations = run_drc(plan)[0]
    assert list(bound.layers) == [r.layer for r in plan.layers]
    clean = [r for r in plan.layers if not any(v.startswith(r.layer + ":") for v in violations)]
    assert len(clean) >= len(plan.layers) - 1
    for r in clean:
        assert 1 <= bound.layers[r.layer] <= r.cores, r.layer
    assert bound.total <= plan.totals.neuro_cores
    # the bound is not the neuron count's: routes and memory make it several times larger
    assert bound.total > 2 * -(-plan.totals.neurons // L.MAX_NEURONS_PER_CORE)


@pytest.mark.parametrize("variant,size", [("cifar", 32), ("ti", 64)])
def test_fan_out_floors_are_at_most_the_plans_fan_out(variant, size):
    mp = Mapper(plan_lava(_model_graph(variant, size), "fused"))
    mp.run()
    each, total = floor_destinations(mp)
    assert set(each) == set(mp.layers) == set(total)
    raised = 0
    for name, layer in mp.layers.items():
        dest = np.broadcast_to(np.asarray(mp.dest[name], dtype=np.float64), (layer.size,))
        assert each[name] <= dest.min(), name
        assert total[name] <= dest.sum(), name
        assert each[name] * layer.size <= total[name]
        raised += total[name] > each[name] * layer.size
    assert raised  # the summed floor says more than the per-neuron one somewhere (convolution borders)


def test_plan_without_offsets_plans_the_same_and_holds_no_offsets():
    g = export_model(random_buffers(build_model("cifar", img_size=32)))
    lean = plan_lava(g, "fused", offsets=False)
    assert lean.bias == {} and lean.lif == {}
    full = plan_lava(g, "fused")
    assert full.bias and full.lif
    a, b = map_to_loihi2(lean), map_to_loihi2(full)
    assert a.to_json(*run_drc(a)) == b.to_json(*run_drc(b))


def test_identity_fed_layer_bound_by_hand():
    # one LIF layer from the host: 8 B + 2 B + 4 B of memory per neuron (state, identity synapse, fan-in
    # axon: 9,362 per core), but 1 fan-in axon and 1 route (the host read) each: at most 4,096 per core,
    # so 16 x 32 x 32 = 16,384 neurons need 4 cores; the plan agrees
    g = toy_graph([("big", "lif", (16, 32, 32))])
    bound = core_lower_bound(g)
    assert bound.destinations == {"big": 1} and bound.total_destinations == {"big": 16384}
    plan = map_to_loihi2(g)
    assert bound.layers == {"big": 4} and plan.layers[0].cores == 4


def test_synaptic_lowering_is_refused():
    with pytest.raises(DeployError, match="only the fused DSSA lowering"):
        core_lower_bound(toy_graph([("big", "lif", (4, 4, 4))]), "synaptic")
