"""The pass manager checks every pass's contract (requires before, ensures after, the graph
checker after a pass that writes a graph) and every flow's declared order."""
import nir
import numpy as np
import pytest

from resformer_deploy.flows import FLOWS, prepare, run_flow
from resformer_deploy.passes.manager import Artifacts, Flow, Pass, PassError, PassManager


def small_graph():
    """input (host) -> Affine -> LIF -> output (host): valid for the checker and for Lava."""
    nodes = {"input": nir.Input({"input": np.array([3])}, metadata={"partition": "host"}),
             "fc": nir.Affine(np.ones((2, 3)), np.zeros(2)),
             "spk": nir.LIF(np.full(2, 0.002), np.ones(2), np.zeros(2), np.ones(2), np.zeros(2)),
             "output": nir.Output({"output": np.array([2])}, metadata={"partition": "host"})}
    edges = [("input", "fc"), ("fc", "spk"), ("spk", "output")]
    return nir.NIRGraph(nodes, edges, metadata={"time_steps": 2}, type_check=False)


def test_a_pass_whose_requirements_are_missing_fails_before_running():
    ran = []
    p = Pass("needs-plan", lambda art, o: ran.append(1) or {"core_plan": 1}, requires=("nir_graph", "lava_plan"),
             ensures=("core_plan",))
    # the flow takes lava_plan as input, so the order is fine; the caller did not supply it
    mgr = PassManager(Flow("f", (p,), inputs=("nir_graph", "lava_plan")))
    with pytest.raises(PassError, match=r"pass 'needs-plan' .* requires lava_plan, which is not present"):
        mgr.run({"nir_graph": small_graph()})
    assert ran == []


def test_a_pass_that_does_not_produce_what_it_ensures_fails():
    p = Pass("forgetful", lambda art, o: {}, requires=("nir_graph",), ensures=("timing",))
    with pytest.raises(PassError, match=r"pass 'forgetful' .* did not produce timing, which it ensures"):
        PassManager(Flow("f", (p,))).run({"nir_graph": small_graph()})
    sneaky = Pass("sneaky", lambda art, o: {"timing": 1, "lava_plan": 2}, requires=("nir_graph",),
                  ensures=("timing",))
    with pytest.raises(PassError, match="undeclared artifact"):
        PassManager(Flow("f", (sneaky,))).run({"nir_graph": small_graph()})


def test_a_pass_that_breaks_the_graph_is_caught_with_every_problem():
    def breaker(art, _o):  # drops a node its edges still use and wires a node that does not exist
        g = art["nir_graph"]
        nodes = {n: v for n, v in g.nodes.items() if n != "fc"}
        return {"dense_form": nir.NIRGraph(nodes, list(g.edges) + [("spk", "ghost")], metadata=g.metadata,
                                           type_check=False)}
    p = Pass("breaker", breaker, requires=("nir_graph",), ensures=("dense_form",))
    with pytest.raises(PassError) as e:
        PassManager(Flow("f", (p,))).run({"nir_graph": small_graph()})
    msg = str(e.value)
    assert "pass 'breaker' (flow 'f') left an invalid graph (dense_form): 3 problem(s)" in msg
    for problem in ("edge (input -> fc) references missing node 'fc'", "edge (fc -> spk) references missing node 'fc'",
                    "edge (spk -> ghost) references missing node 'ghost'"):
        assert problem in msg  # every problem the checker found, not the first only
    ok = Pass("identity", lambda art, _o: {"dense_form": art["nir_graph"]}, requires=("nir_graph",),
              ensures=("dense_form",))
    assert PassManager(Flow("f", (ok,))).run({"nir_graph": small_graph()})["dense_form"] is not None


def test_every_flow_is_consistently_ordered():
    for flow in FLOWS.values():
        assert flow.order_problems() == [], flow.name
        PassManager(flow)  # constructing checks the order too
    bad = Flow("backwards", (FLOWS["lava-float"].passes[2], FLOWS["lava-float"].passes[1]))
    assert any("pass 'plan-lava' requires timing" in p for p in bad.order_problems())
    with pytest.raises(PassError, match="plan-lava"):
        PassManager(bad)


def test_passes_run_only_when_needed_and_their_condition_holds():
    calls = []

    def mk(name, requires, ensures, when=None):
        return Pass(name, lambda art, o: calls.append(name) or {e: name for e in ensures}, requires=requires,
                    ensures=ensures, when=when, options=("go",))
    flow = Flow("f", (mk("a", ("nir_graph",), ("timing",)), mk("b", ("timing",), ("lava_plan",)),
                      mk("c", ("lava_plan",), ("core_plan",), when=lambda o: o.get("go"))), outputs=("core_plan",))
    art = PassManager(flow).run({"nir_graph": small_graph()}, go=True)
    assert calls == ["a", "b", "c"] and art["core_plan"] == "c"
    calls.clear()
    art = PassManager(flow).run({"nir_graph": small_graph(), "lava_plan": "given"}, go=True)
    assert calls == ["c"] and art["lava_plan"] == "given"  # supplied: a and b are not needed
    assert [e["status"] for e in art.log] == ["skipped (not needed)", "skipped (supplied by the caller)", "ran"]
    calls.clear()
    art = PassManager(flow).run({"nir_graph": small_graph()}, go=False)
    assert calls == [] and "core_plan" not in art
    with pytest.raises(PassError, match=r"flow 'f' has no option 'dssa' \(its options: go\)"):
        PassManager(flow).run({"nir_graph": small_graph()}, dssa="fused")


def test_real_flows_on_a_small_graph():
    g = small_graph()
    art = run_flow("lava-float", {"nir_graph": g})
    assert isinstance(art, Artifacts) and art["lava_plan"].neuro == ["fc", "spk"]
    assert [e["pass"] for e in art.log if e["status"] == "ran"] == ["check-graph", "balance-delays", "plan-lava"]
    assert art["lava_plan"].latency == art["timing"].latency  # the plan uses the pass's timing
    mapped = prepare("loihi2", g, dssa="fused")
    assert mapped["core_plan"].totals.neuro_cores >= 1 and mapped["drc"][0] == []
    with pytest.raises(PassError, match="flow 'graph-check' has no option 'dssa'"):
        prepare("reference", g, dssa="fused")


def test_standard_form_flow_is_the_two_passes():
    from resformer_deploy.analysis.equivalence import lower
    from resformer_deploy.passes.spike_matmul_to_standard import lower_spike_matmuls
    from resformer_deploy.passes.unroll_dense import unroll_dense
    from exporters.torch_to_nir import export_model
    from resformer_deploy.model.resformer import build_model
    from resformer_deploy.model.calibration import randomize_state
    g = export_model(randomize_state(build_model("tiny"), seed=2).eval())
    via_flow, direct = lower(g, "standard"), lower_spike_matmuls(unroll_dense(g))
    assert list(via_flow.nodes) == list(direct.nodes) and via_flow.edges == direct.edges
    for n, v in direct.nodes.items():
        if hasattr(v, "weight"):
            assert np.array_equal(via_flow.nodes[n].weight, v.weight), n


def test_commands_reach_passes_only_through_flows():
    """No command, analysis or report imports a pass function: they prepare graphs with flows."""
    import ast
    from pathlib import Path
    root = Path(__file__).resolve().parents[2] / "resformer_deploy"
    pass_functions = {"plan_lava", "balance_delays", "unroll_dense", "lower_spike_matmuls", "quantize",
                      "lower_products", "lower_product", "map_to_loihi2", "run_drc", "calibrate_and_quantize"}
    found = []
    for pkg in ("cli", "analysis", "reporting"):
        for path in sorted((root / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    found += [f"{path.name}:{node.lineno} {a.name}" for a in node.names if a.name in pass_functions]
    assert found == []


def test_a_pass_or_flow_naming_an_undeclared_artifact_fails_where_it_is_defined():
    from resformer_deploy.passes.manager import ARTIFACTS, declare_artifact
    with pytest.raises(PassError, match="pass 'typo' names undeclared artifact.s. lava_plna"):
        Pass("typo", lambda art, o: {}, requires=("nir_graph",), ensures=("lava_plna",))
    with pytest.raises(PassError, match="flow 'f' names undeclared artifact.s. core_pln"):
        Flow("f", (), outputs=("core_pln",))
    declare_artifact("test_only_marker", "a test's artifact")
    try:
        assert Pass("ok", lambda art, o: {}, requires=("nir_graph",), ensures=("test_only_marker",)).ensures
        declare_artifact("test_only_marker", "a test's artifact")  # the same declaration again: fine
        with pytest.raises(PassError, match="declared already"):
            declare_artifact("test_only_marker", "another meaning")
    finally:
        ARTIFACTS.pop("test_only_marker")
