"""Passes as objects with a contract, and the one manager that runs them and checks it.

A ``Pass`` names the artifacts it *requires* (present before it runs) and the ones it *ensures*
(present after it runs). ``PassManager`` runs a ``Flow`` (a named, ordered list of passes) over
an ``Artifacts`` store and, after every pass, checks its contract: required artifacts before,
ensured ones after, and every graph artifact the pass wrote through
``exporters.graph_check.check_graph``, failing with all of the checker's problems listed.

Modelled on torch.fx's pass infrastructure (``torch.fx.passes.infra.pass_manager.PassManager``:
passes run in order, ``run_checks_after_each_pass`` re-checks the graph's invariants after each
one, an error names the pass and the passes before it; https://pytorch.org/docs/stable/fx.html)
and on hls4ml flows (a flow is a named list of passes, each declaring the flows it needs;
https://fastmachinelearning.org/hls4ml/api/flows.html). Unlike torch.fx's passes, which all
map a GraphModule to a GraphModule, ours produce different kinds of results (a Lava plan, a
quantized network, a core plan), hence named artifacts instead of one module.
"""
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from exporters.graph_check import check_graph
from resformer_deploy.errors import InternalError

# The artifacts passes exchange, by name: a Pass or Flow naming any other fails where it is defined
# (declare_artifact adds one, e.g. for a target's own flow). Descriptions are listed by `resformer-deploy targets`.
ARTIFACTS: Dict[str, str] = {
    "nir_graph": "NIR graph in deployment-normal form (exporters.torch_to_nir / nir_io.read_nir)",
    "graph_shapes": "output shape of every node, inferred by exporters.graph_check",
    "dense_form": "the graph unrolled to dense 1-D form (passes.unroll_dense)",
    "standard_form": "the dense graph with standard NIR nodes only (passes.spike_matmul_to_standard)",
    "timing": "per-node latency and per-edge delays under Lava timing (passes.delay_balance)",
    "lava_plan": "Lava process-graph plan (resformer_deploy.lava.plan)",
    "operand_samples": "run inputs whose recorded DSSA operands verify the synaptic lowering",
    "product_lowerings": "per SpikeMatMul the verified synaptic-primitive lowering (passes.dssa_lowering)",
    "calibration_inputs": "calibration data, never the evaluation data (flows.fixed_point)",
    "calibration": "value ranges of a float run in the Lava representation",
    "quantized_net": "the network in Loihi 2 fixed point (fixed_point.quantize)",
    "core_plan": "the neuromorphic partition mapped onto Loihi 2 cores (hardware.loihi2.partition)",
    "drc": "design-rule violations and skipped checks of the core plan (hardware.loihi2.drc)",
    "stock_models": "processes of the plan that stock Lava models would not run (hardware.loihi2.drc)",
}
GRAPH_ARTIFACTS = ("nir_graph", "dense_form", "standard_form")  # checked by check_graph when written


class PassError(InternalError):
    """A pass or a flow broke its declared contract: a bug in the toolchain, not in the user's input."""


def declare_artifact(name: str, doc: str) -> None:
    """Declare an artifact passes may require or ensure (a plug-in target's flow declares its own).
    Declaring a name again with another description is an error: two meanings, one name."""
    if not (isinstance(name, str) and name and doc):
        raise PassError(f"an artifact needs a name and a description: {name!r}")
    if ARTIFACTS.setdefault(name, doc) != doc:
        raise PassError(f"artifact '{name}' is declared already ({ARTIFACTS[name]}); choose another name")


def undeclared(names: Iterable[str]) -> List[str]:
    return sorted({n for n in names if n not in ARTIFACTS})


class Artifacts(dict):
    """Named results of passes (``nir_graph``, ``lava_plan``, ...), plus the log of what ran
    (resformer_deploy.flows.artifacts.Prepared adds typed accessors)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log: List[dict] = []  # one entry per pass: name, status (ran/skipped), seconds

    def missing(self, names: Iterable[str]) -> List[str]:
        return [n for n in names if n not in self]


@dataclass(frozen=True)
class Pass:
    """One step of a flow. ``run(artifacts, options) -> {artifact: value}`` returns the artifacts
    it produces (at least everything in ``ensures``); it never mutates the ones it reads.

    ``uses``: artifacts read when present (e.g. the quantized network for number-format checks).
    ``options``: the flow options it reads (documentation, and which options a flow accepts).
    ``when``: the pass runs only if this holds for the options (e.g. the synaptic DSSA lowering
    only for ``dssa == "synaptic"``); ``None``: always."""
    name: str
    run: Callable[[Artifacts, dict], dict]
    requires: Tuple[str, ...]
    ensures: Tuple[str, ...]
    uses: Tuple[str, ...] = ()
    options: Tuple[str, ...] = ()
    when: Optional[Callable[[dict], bool]] = None
    doc: str = ""

    def __post_init__(self):
        bad = undeclared(self.requires + self.ensures + self.uses)
        if bad:
            raise PassError(f"pass '{self.name}' names undeclared artifact(s) {', '.join(bad)} "
                            f"(declare them with resformer_deploy.passes.manager.declare_artifact)")

    def applies(self, options: dict) -> bool:
        return self.when is None or bool(self.when(options))

    def describe(self) -> dict:
        return {"name": self.name, "requires": list(self.requires), "ensures": list(self.ensures),
                "uses": list(self.uses), "options": list(self.options), "conditional": self.when is not None,
                "doc": self.doc}


@dataclass(frozen=True)
class Flow:
    """A named, ordered list of passes, the artifacts it takes from its caller (``inputs``: every
    artifact some pass requires that no earlier pass ensures) and the ones it is run for
    (``outputs``; empty: everything its passes ensure)."""
    name: str
    passes: Tuple[Pass, ...]
    inputs: Tuple[str, ...] = ("nir_graph",)
    outputs: Tuple[str, ...] = ()
    doc: str = ""

    def __post_init__(self):
        names = [p.name for p in self.passes]
        if len(set(names)) != len(names):
            raise PassError(f"flow '{self.name}' lists a pass twice: {', '.join(names)}")
        bad = undeclared(self.inputs + self.outputs)
        if bad:
            raise PassError(f"flow '{self.name}' names undeclared artifact(s) {', '.join(bad)}")

    @property
    def options(self) -> Tuple[str, ...]:
        return tuple(dict.fromkeys(o for p in self.passes for o in p.options))

    @property
    def ensures(self) -> Tuple[str, ...]:
        return tuple(dict.fromkeys(a for p in self.passes for a in p.ensures))

    def order_problems(self) -> List[str]:
        """Every pass whose requirements no earlier pass ensures and the flow does not take as input
        (statically: conditional passes count as having run)."""
        have, problems = set(self.inputs), []
        for p in self.passes:
            lacking = [a for a in p.requires if a not in have]
            if lacking:
                problems.append(f"flow '{self.name}': pass '{p.name}' requires {', '.join(lacking)}, which no "
                                f"earlier pass ensures and the flow does not take as input")
            have.update(p.ensures)
        problems += [f"flow '{self.name}': output {a} is ensured by none of its passes"
                     for a in self.outputs if a not in have]
        return problems

    def describe(self) -> dict:
        return {"name": self.name, "inputs": list(self.inputs), "outputs": list(self.outputs or self.ensures),
                "options": list(self.options), "passes": [p.describe() for p in self.passes], "doc": self.doc}


def graph_problems(graph) -> List[str]:
    try:
        _, problems = check_graph(graph)
    except Exception as e:  # a graph broken badly enough to crash the checker is broken too
        problems = [f"the graph checker failed: {type(e).__name__}: {e}"]
    return problems


class PassManager:
    """Runs the passes of a flow in order over an ``Artifacts`` store, checking after each one.

    Which passes run is decided from the flow's outputs backwards, as make does: a pass runs if
    its condition holds and it ensures something wanted (an output, or an artifact a running
    later pass requires or uses) that the caller did not supply. So a report that already holds
    the quantized network maps it without re-quantizing. Every pass that does not run is logged
    with the reason. ``check_graphs``: run the graph checker after passes that write a graph."""

    def __init__(self, flow: Flow, check_graphs: bool = True):
        problems = flow.order_problems()
        if problems:
            raise PassError("; ".join(problems))
        self.flow, self.check_graphs = flow, check_graphs

    def run(self, artifacts: Optional[dict] = None, **options) -> Artifacts:
        store = artifacts if isinstance(artifacts, Artifacts) else Artifacts(artifacts or {})
        unknown = sorted(set(options) - set(self.flow.options))
        if unknown:
            raise PassError(f"flow '{self.flow.name}' has no option {', '.join(repr(o) for o in unknown)} "
                            f"(its options: {', '.join(self.flow.options) or 'none'})")
        needed = self.schedule(options, set(store))
        for p in self.flow.passes:
            if p.name in needed:
                self.run_pass(p, store, options)
            else:
                why = ("condition false" if not p.applies(options) else "supplied by the caller"
                       if all(a in store for a in p.ensures) else "not needed")
                store.log.append({"pass": p.name, "status": f"skipped ({why})", "seconds": 0.0})
        return store

    def schedule(self, options: dict, supplied: set) -> set:
        """Names of the passes to run (see the class docstring)."""
        wanted, run = set(self.flow.outputs or self.flow.ensures), set()
        for p in reversed(self.flow.passes):
            if p.applies(options) and any(a in wanted and a not in supplied for a in p.ensures):
                run.add(p.name)
                wanted.update(p.requires, p.uses)
        return run

    def run_pass(self, p: Pass, store: Artifacts, options: dict) -> None:
        lacking = store.missing(p.requires)
        if lacking:  # checked before the pass runs, so it never sees half its inputs
            raise PassError(f"pass '{p.name}' (flow '{self.flow.name}') requires {', '.join(lacking)}, "
                            f"which {'is' if len(lacking) == 1 else 'are'} not present (present: "
                            f"{', '.join(sorted(store)) or 'nothing'})")
        t0 = time.time()
        out = p.run(store, {k: v for k, v in options.items() if k in p.options})
        if not isinstance(out, dict):
            raise PassError(f"pass '{p.name}' returned {type(out).__name__}, not a dict of artifacts")
        lacking = [a for a in p.ensures if out.get(a) is None]
        if lacking:
            raise PassError(f"pass '{p.name}' (flow '{self.flow.name}') did not produce {', '.join(lacking)}, "
                            f"which it ensures")
        undeclared = sorted(set(out) - set(p.ensures))
        if undeclared:  # an artifact nobody declared would bypass the contract
            raise PassError(f"pass '{p.name}' produced undeclared artifact(s) {', '.join(undeclared)}")
        if self.check_graphs:
            for a in (a for a in p.ensures if a in GRAPH_ARTIFACTS):
                problems = graph_problems(out[a])
                if problems:
                    raise PassError(f"pass '{p.name}' (flow '{self.flow.name}') left an invalid graph "
                                    f"({a}): {len(problems)} problem(s): " + "; ".join(problems))
        store.update(out)
        store.log.append({"pass": p.name, "status": "ran", "seconds": time.time() - t0})
