"""The Loihi 2 core plan's records (resformer_deploy.hardware.loihi2.core_plan) check themselves,
name their layer, and keep the JSON form the report and ``compile --json`` read."""
import json

import nir
import numpy as np
import pytest

from resformer_deploy.hardware.loihi2 import map_to_loihi2
from resformer_deploy.hardware.loihi2.core_plan import (CoreLayer, CorePlan, CorePlanError, DelayLine,
                                                        EmbeddedProgram, InboundDelay, PlanTotals, Unmappable)

UTIL = {"neurons": 0.5, "memory": 0.1, "fan_in": 0.2, "routes": 0.0}


def _layer(**kw):
    args = dict(layer="l1", kind="lif", node="l1", coords=[4, 6, 1], inputs=["identity"], neurons=24, synapses=24,
                memory_bytes=24 * 8 + 100, synaptic_memory_bytes=100, cores=2, split=[2, 1, 1], chunk=[2, 6, 1],
                max_core_neurons=12, max_core_memory=150, max_fan_in=12, max_fan_out_routes=1,
                max_neuron_fan_out_cores=1, utilisation=UTIL, limiting="neurons", unmappable=[],
                fan_in_upper_bound=False, delays=[InboundDelay("host:x", "l1", 2)])
    args.update(kw)
    return CoreLayer(**args)


def test_a_core_layer_must_be_a_tiling_of_its_neurons():
    _layer()
    with pytest.raises(CorePlanError, match=r"^l1: 3 cores for a \[2, 1, 1\] split"):
        _layer(cores=3)
    with pytest.raises(CorePlanError, match=r"^l1: chunk \[1, 6, 1\] and split \[2, 1, 1\] do not tile"):
        _layer(chunk=[1, 6, 1])
    with pytest.raises(CorePlanError, match=r"^l1: 25 neurons in a \[4, 6, 1\] box"):
        _layer(neurons=25)
    with pytest.raises(CorePlanError, match="^l1: layer kind 'soma'"):
        _layer(kind="soma")
    with pytest.raises(CorePlanError, match="^l1: synaptic memory"):
        _layer(synaptic_memory_bytes=99)
    with pytest.raises(CorePlanError, match="^l1: utilisation of"):
        _layer(utilisation={"neurons": 0.5})


def test_programs_delays_and_unmappable_records_check_themselves():
    EmbeddedProgram("mm", "a:relay", "b", 2, 3, 4, 5, 120, {"a": 0, "b": 1}, 50)
    with pytest.raises(CorePlanError, match="^mm: 100 MACs per step for 2 x 3 x 4 x 5"):
        EmbeddedProgram("mm", "a:relay", "b", 2, 3, 4, 5, 100, {}, 50)
    with pytest.raises(CorePlanError, match="^l1: delay realised as 'wire'"):
        DelayLine("l1", "x", "l1", 3, "wire")
    with pytest.raises(CorePlanError, match="^c: delay 0 steps"):
        InboundDelay("x", "c", 0)
    with pytest.raises(CorePlanError, match="^axons: not a per-core metric"):
        Unmappable("axons", 5000, 4096)
    assert DelayLine("l1", "x", "v", 3, "synaptic delay").to_json() == {
        "layer": "l1", "from": "x", "via": "v", "delay": 3, "realised": "synaptic delay"}


TOTALS = dict(neuro_cores=130, chips=2, chips_for_neuro_cores=2, chips_for_embedded_programs=1, embedded_programs=3,
              neurons=1000, synapses=5000, memory_bytes=9000, synaptic_memory_bytes=4000, layers=7,
              embedded_macs_per_step=64)


def test_plan_totals_check_their_chip_arithmetic():
    t = PlanTotals(**TOTALS)  # 130 cores need 2 chips of 128; 3 programs fit the 3 usable embedded cores of one
    assert t.chips == 2
    for bad, match in (({"chips_for_neuro_cores": 1}, "1 chip\\(s\\) for 130 neuro cores"),
                       ({"embedded_programs": 4}, "1 chip\\(s\\) for 4 embedded programs"),
                       ({"chips": 3}, "3 chip\\(s\\) for 130 neuro cores and 3 programs"),
                       ({"synaptic_memory_bytes": 9001}, "synaptic memory 9001 B exceeds"),
                       ({"neurons": -1}, "neurons = -1"), ({"synapses": 2.5}, "synapses = 2.5"),
                       ({"layers": 131}, "130 neuro cores for 131 layers")):
        with pytest.raises(CorePlanError, match="^plan totals: .*" + match):
            PlanTotals(**{**TOTALS, **bad})


def test_a_core_plan_derives_its_totals_from_its_layers_and_programs():
    rows = [_layer(), _layer(layer="l2", node="l2")]
    prog = EmbeddedProgram("mm", "l1", "l2", 2, 3, 4, 5, 120, {}, 50)
    plan = CorePlan("fused", rows, [prog], [], [], [], {})
    t = plan.totals  # recounted here from the records' own figures
    assert (t.neuro_cores, t.neurons, t.synapses, t.layers) == (4, 48, 48, 2)
    assert (t.memory_bytes, t.synaptic_memory_bytes) == (2 * (24 * 8 + 100), 200)
    assert (t.embedded_programs, t.embedded_macs_per_step, t.chips) == (1, 120, 1)
    with pytest.raises(CorePlanError, match="^core plan: 1 embedded programs in a synaptic-DSSA plan"):
        CorePlan("synaptic", rows, [prog], [], [], [], {})
    with pytest.raises(CorePlanError, match="^core plan: layer names repeat"):
        CorePlan("fused", [_layer(), _layer()], [], [], [], [], {})
    with pytest.raises(CorePlanError, match="^core plan: DSSA lowering 'dense'"):
        CorePlan("dense", rows, [], [], [], [], {})


def test_core_plan_json_keeps_its_keys():
    rng = np.random.RandomState(0)
    nodes = {"input": nir.Input({"input": np.array([5000])}, metadata={"partition": "host"}),
             "fc": nir.Affine(rng.randn(10, 5000), np.zeros(10)),
             "lif": nir.LIF(*(np.full(10, v) for v in (0.01, 1.0, 0.0, 1.0, 0.0))),
             "output": nir.Output({"output": np.array([10])}, metadata={"partition": "host"})}
    plan = map_to_loihi2(nir.NIRGraph(nodes, [("input", "fc"), ("fc", "lif"), ("lif", "output")], metadata={}))
    j = plan.to_json(["v"], [], {"message": "none"})
    assert json.loads(json.dumps(j)) == j  # plain JSON values already
    (row,) = j["layers"]
    assert list(row) == ["layer", "kind", "node", "coords", "inputs", "neurons", "synapses", "memory_bytes",
                         "synaptic_memory_bytes", "cores", "split", "chunk", "max_core_neurons", "max_core_memory",
                         "max_fan_in", "max_fan_out_routes", "max_neuron_fan_out_cores", "utilisation", "limiting",
                         "unmappable", "fan_in_upper_bound", "delays"]
    assert row["unmappable"] == [{"metric": "fan_in", "one_neuron_needs": 5000, "limit": 4096}]
    assert list(j) == ["target", "dssa", "model", "kind", "totals", "layers", "embedded_programs", "delays",
                       "warnings", "limits", "violations", "drc_skipped", "hardware_runtime"]
    # the keys (and their order) reports and benchmarks/map_variants.json were written with
    assert list(j["totals"]) == ["neuro_cores", "chips", "chips_for_neuro_cores", "chips_for_embedded_programs",
                                 "embedded_programs", "neurons", "synapses", "memory_bytes", "synaptic_memory_bytes",
                                 "layers", "embedded_macs_per_step"]
    assert j["totals"]["neurons"] == 10 and j["totals"]["synapses"] == 50000 and j["totals"]["layers"] == 1
