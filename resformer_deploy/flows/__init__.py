"""Flows: the named sequences of passes that prepare a graph for each kind of target.

A target names its flow in its capabilities (``Capabilities.flow``); every command prepares a
graph for a target with ``prepare(target, graph, ...)``, which runs that flow through the one
pass manager (resformer_deploy.passes.manager) and returns the artifacts the target's ``run``
takes as ``prepared``. Like hls4ml's flows (https://fastmachinelearning.org/hls4ml/api/flows.html),
a flow is a name for an ordered list of passes. The built-in ones are assembled in the table
below; a target may bring its own (``Target.flows()``, registered and order-checked when the
target is loaded, targets/registry.py): ``FLOWS`` holds both.
"""
from collections.abc import Mapping
from dataclasses import replace
from typing import Dict, Iterator

from resformer_deploy.errors import DeployError
from resformer_deploy.passes.graph_passes import BALANCE_DELAYS, CHECK_GRAPH, LOWER_SPIKE_MATMULS, UNROLL_DENSE
from resformer_deploy.passes.manager import Artifacts, Flow, Pass, PassManager

from targets import capabilities_of, flow_owner, target_flows

from resformer_deploy.flows.artifacts import Prepared
from resformer_deploy.flows.fixed_point import CALIBRATE, CHOOSE_CALIBRATION_DATA, QUANTIZE
from resformer_deploy.flows.lava_passes import LOWER_DSSA_SYNAPTIC, PLAN_LAVA, PLAN_LAVA_TO_SIMULATE
from resformer_deploy.flows.loihi2_mapping import CHECK_STOCK_MODELS, MAP_TO_LOIHI2, RUN_DRC


def only_if(p: Pass, option: str) -> Pass:
    """``p`` made conditional on a true flow option (e.g. quantize before mapping only if asked)."""
    return replace(p, when=lambda o: bool(o.get(option)), options=p.options + (option,))


class FlowTable(Mapping):
    """The built-in flows and those the registered targets bring (read anew: plug-ins load lazily).
    A target's flow may not take a built-in flow's name: the built-in one would be ambiguous."""

    def __init__(self, built_in: Dict[str, Flow]):
        self.built_in = built_in

    def _all(self) -> Dict[str, Flow]:
        brought = target_flows()
        clash = sorted(set(brought) & set(self.built_in))
        if clash:
            raise DeployError(f"target '{flow_owner(clash[0])}' brings flow '{clash[0]}', a built-in flow's name; "
                              f"rename its flow")
        return {**self.built_in, **brought}

    def __getitem__(self, name: str) -> Flow:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


_PLAN = (CHECK_GRAPH, BALANCE_DELAYS, PLAN_LAVA)
_SIM_PLAN = (CHECK_GRAPH, BALANCE_DELAYS, PLAN_LAVA_TO_SIMULATE)  # + the synaptic lowering's cost check
FLOWS = FlowTable({f.name: f for f in (
    Flow("graph-check", (CHECK_GRAPH,), outputs=("graph_shapes",),
         doc="check the graph: the reference interpreter runs any valid graph as it is"),
    Flow("dense-form", (CHECK_GRAPH, UNROLL_DENSE), outputs=("dense_form",),
         doc="every node 1-D, convolutions and pools unrolled (small models)"),
    Flow("standard-form", (CHECK_GRAPH, UNROLL_DENSE, LOWER_SPIKE_MATMULS), outputs=("standard_form",),
         doc="standard NIR nodes only (tiny models), which stock nir.read type-checks"),
    Flow("lava-plan", _PLAN, outputs=("lava_plan",),
         doc="the Lava plan alone: sizes a run before calibration (a quantized network has its plan's sizes)"),
    Flow("lava-float", _SIM_PLAN + (LOWER_DSSA_SYNAPTIC,), inputs=("nir_graph", "operand_samples"),
         outputs=("lava_plan", "product_lowerings"),
         doc="Lava plan, and with dssa=synaptic the verified synaptic lowering of every product"),
    Flow("loihi2-fixed", (CHECK_GRAPH, CHOOSE_CALIBRATION_DATA, BALANCE_DELAYS, PLAN_LAVA_TO_SIMULATE, CALIBRATE,
                          QUANTIZE, LOWER_DSSA_SYNAPTIC), inputs=("nir_graph", "operand_samples"),
         outputs=("lava_plan", "quantized_net", "product_lowerings"),
         doc="Lava plan calibrated and quantized to Loihi 2 fixed point (+ fixed-point synaptic lowering)"),
    Flow("loihi2-map", _PLAN + tuple(only_if(p, "quantize") for p in (CHOOSE_CALIBRATION_DATA, CALIBRATE, QUANTIZE))
         + (MAP_TO_LOIHI2, RUN_DRC, CHECK_STOCK_MODELS), outputs=("core_plan", "drc", "stock_models"),
         doc="Loihi 2 core plan, design-rule check (quantize=True: also the number-format rules) and the "
             "processes stock Lava models would not run"),
)})


def get_flow(name: str) -> Flow:
    if name not in FLOWS:
        raise DeployError(f"unknown flow '{name}' (flows: {', '.join(FLOWS)})")
    return FLOWS[name]


def run_flow(name: str, artifacts=None, **options) -> Artifacts:
    """Run flow ``name`` over ``artifacts`` (at least its inputs) with flow options."""
    store = artifacts if isinstance(artifacts, Artifacts) else Prepared(artifacts or {})  # a caller's store: its log
    return PassManager(get_flow(name)).run(store, **options)


def lava_plan(graph, dssa: str = "fused"):
    """The Lava plan of ``graph`` (flow ``lava-plan``), e.g. to size a fixed-point run before calibration."""
    return run_flow("lava-plan", {"nir_graph": graph}, dssa=dssa)["lava_plan"]


def flow_of(target) -> Flow:
    """The flow a target (a name or a Target) names in its capabilities."""
    caps = capabilities_of(target) if isinstance(target, str) else target.capabilities
    label = target if isinstance(target, str) else getattr(target, "label", type(target).__name__)
    if caps.flow not in FLOWS:
        raise DeployError(f"target '{label}' names flow '{caps.flow}', which does not exist "
                          f"(flows: {', '.join(FLOWS)})")
    return FLOWS[caps.flow]


def flow_options(target, options: dict) -> dict:
    """Of a command's target options (which ``run`` checks), the ones the target's flow takes
    (e.g. ``dssa`` plans the lowering; ``stall_timeout`` is the run's alone)."""
    takes = flow_of(target).options
    return {k: v for k, v in options.items() if k in takes}


def prepare(target, graph, *, samples=None, T=None, artifacts=None, calibration=None, **options) -> Prepared:
    """The artifacts ``target`` (a name or a Target) needs to run ``graph``: its flow, run.

    ``samples``: the inputs the run will see; the synaptic DSSA lowering is verified on operands
    recorded from their first samples. ``calibration``: the data to calibrate a quantization on
    (flows.fixed_point.CalibrationData, never the evaluation samples); without it the flow chooses
    (digits training split or seeded random inputs); a flow that calibrates nothing refuses it.
    ``T`` and ``samples`` go to the flows that take them; every other option must be one of the
    flow's (an unknown one is an error)."""
    flow = flow_of(target)
    art = Prepared(artifacts or {})
    art["nir_graph"] = graph
    if calibration is not None:
        if not any("calibration_inputs" in p.requires for p in flow.passes):
            label = target if isinstance(target, str) else getattr(target, "label", type(target).__name__)
            raise DeployError(f"target '{label}' is not quantized (flow '{flow.name}' calibrates nothing): "
                              f"calibration data ({calibration.source}) has no use; drop --calib-data")
        art["calibration_inputs"] = calibration
    if samples is not None and "operand_samples" in flow.inputs:
        art["operand_samples"] = samples
    if T is not None and "T" in flow.options:
        options["T"] = T
    return PassManager(flow).run(art, **{k: v for k, v in options.items() if v is not None})
