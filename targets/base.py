"""What every target is: a ``Target`` with declared ``Capabilities``.

Commands decide by capability (``get_target(name).capabilities``), never by a target's name, so
a target from another package (registered through the ``resformer_deploy.targets`` entry-point
group, see targets/registry.py) is driven like the built-in ones. A graph is prepared for a
target by the flow its capabilities name (resformer_deploy.flows.FLOWS); ``run`` receives the
flow's artifacts as ``prepared``.

The protocol is typed: ``run(RunRequest) -> RunResult`` (with ``RunStats``), ``steps`` and
``estimate`` take the same request (``RunRequest.sizing``: a sample count instead of inputs).
"""
import abc
from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Dict, Mapping, Optional, Protocol, Tuple

from resformer_deploy.errors import DeployError

# The name under which commands run the PyTorch model itself (`evaluate`'s default, the drift
# ladder's first rung): a role, not a registered target; no plug-in may take it.
PYTORCH_MODEL = "torch"
# The target a command runs when none is named: the NIR interpreter, the yardstick of every other
DEFAULT_TARGET = "reference"

ARITHMETIC = ("float", "fixed")
EXECUTES = ("simulation", "hardware")
ENGINES = ("pytorch", "lava", "numpy", "chip")


class FlowArtifacts(Protocol):
    """The flow's artifacts a target reads, by typed accessor (each None when the flow did not
    make it): resformer_deploy.flows.artifacts.Prepared, what ``flows.prepare`` returns, is one.
    A protocol here because targets sit below flows in the pipeline (tests/test_architecture.py)."""

    @property
    def lava_plan(self) -> Any: ...  # resformer_deploy.lava.plan.LavaPlan

    @property
    def quantized_net(self) -> Any: ...  # resformer_deploy.fixed_point.network.QuantNet

    @property
    def product_lowerings(self) -> Optional[Dict[str, Any]]: ...

    def get(self, name: str, default: Any = None) -> Any:
        """An artifact a plug-in target's own flow declared (passes.manager.declare_artifact), by name."""


@dataclass(frozen=True)
class RunRequest:
    """What a target is asked to run (``Target.run``) or to size (``steps``, ``estimate``).

    ``x``: the inputs [N, ...] (None in a sizing request, which gives ``n_samples`` instead);
    ``dtype``: of the output (None: the target's own); ``prepared``: the artifacts of the target's
    flow; ``quant``: its quantized network, given directly; ``options``: the target's own options
    (``Capabilities.options``, e.g. ``dssa``), any other is refused (``Target.refuse_unknown``)."""
    graph: Any
    x: Any
    T: int
    n_samples: Optional[int] = None
    record_spikes: bool = True
    record_membranes: bool = False
    dtype: Any = None
    progress: Optional[Callable[[int], None]] = None
    prepared: Optional[FlowArtifacts] = None
    quant: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.n_samples is None:
            if self.x is None:
                raise ValueError("RunRequest needs inputs x or, to size a run, n_samples")
            object.__setattr__(self, "n_samples", int(self.x.shape[0]))
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @classmethod
    def of(cls, graph, x, T: int, *, record_spikes: bool = True, record_membranes: bool = False, dtype=None,
           progress=None, prepared=None, quant=None, n_samples: Optional[int] = None, **options) -> "RunRequest":
        """A run of ``graph`` on ``x``; keywords beyond the fields are the target's options."""
        return cls(graph, x, T, n_samples, record_spikes, record_membranes, dtype, progress, prepared, quant,
                   options)

    @classmethod
    def sizing(cls, graph, n_samples: int, T: int, **keywords) -> "RunRequest":
        """A run of n_samples inputs, to count its steps or estimate its cost before it starts."""
        return cls.of(graph, None, T, n_samples=int(n_samples), **keywords)

    def option(self, name: str, default=None):
        return self.options.get(name, default)


# how a Lava CPU run's process models run: each in its own OS process under Lava's own multiprocess
# runtime, or all stepped by one worker process (the "merge" option, targets/lava_processes/cluster.py)
LAVA_PROCESSES = ("separate", "merged")

# the fields of a request every target takes (its own options come on top, as request.options)
COMMON_RUN_KEYWORDS = tuple(f.name for f in fields(RunRequest) if f.name not in ("graph", "x", "T", "n_samples",
                                                                                   "options"))


@dataclass(frozen=True)
class RunStats:
    """What a run measured, beyond its outputs; None where a target does not measure it."""
    dssa: Optional[str] = None  # the DSSA lowering the Lava network ran
    products: Optional[Mapping[str, Any]] = None  # per SpikeMatMul: lowering cost and verification
    processes: Optional[int] = None  # Lava processes of the network
    process_kinds: Optional[Mapping[str, int]] = None  # process class -> count
    steps: Optional[int] = None  # simulated time steps
    latency: Optional[int] = None  # pipeline latency of the plan, steps
    build_s: Optional[float] = None  # host side before the worker
    run_s: Optional[float] = None  # the worker's whole life
    stalls_retried: Optional[int] = None
    lava_build_s: Optional[float] = None  # inside the worker: process graph,
    lava_compile_s: Optional[float] = None  # Lava compile,
    lava_start_s: Optional[float] = None  # process start,
    lava_steps_s: Optional[float] = None  # stepping
    channel_slots: Optional[int] = None
    channel_bytes: Optional[int] = None
    shm_bytes: Optional[int] = None
    saturation: Optional[Mapping[str, Mapping[str, int]]] = None  # node -> {kind: count} of fixed-point clips
    exact_dtypes: Optional[Any] = None  # the integer dtypes the emulator proved exact

    def to_json(self) -> Dict[str, Any]:
        """The measured figures (fields that are None left out), as stored in reports."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass
class RunResult:
    output: Any  # torch.Tensor [T, B, *output shape] (per-step logits)
    spikes: Dict[str, Any] = field(default_factory=dict)  # LIF node -> bool [T, B, *shape]
    membranes: Dict[str, Any] = field(default_factory=dict)  # pre-reset v [T, B, *shape]
    seconds: float = 0.0
    values: Dict[str, Any] = field(default_factory=dict)  # requested node outputs [T, B, *shape]
    stats: RunStats = field(default_factory=RunStats)


@dataclass(frozen=True)
class Capabilities:
    """What a target can do, declared as data (``resformer-deploy targets`` lists it)."""
    arithmetic: str  # "float" or "fixed" (Loihi 2 integer arithmetic)
    flow: str  # the flow that prepares a graph for it (resformer_deploy.flows.FLOWS)
    engine: str  # what executes the graph: "pytorch", "lava", "numpy" or "chip"
    executes: str = "simulation"  # "simulation" or "hardware"
    needs_quantized_net: bool = False  # run() needs the flow's quantized_net
    options: Tuple[str, ...] = ()  # RunRequest.options it takes (beyond COMMON_RUN_KEYWORDS)
    records_spikes: bool = True  # RunResult.spikes of every LIF layer
    records_membranes: bool = False  # RunResult.membranes (pre-reset v) of every LIF layer
    supports_mapping: bool = False  # `compile` maps a graph onto its cores
    bit_exact_twin: Optional[str] = None  # a target whose spikes equal this one's bit for bit
    summary: str = ""

    def __post_init__(self):
        for field_, value, allowed in (("arithmetic", self.arithmetic, ARITHMETIC),
                                       ("executes", self.executes, EXECUTES), ("engine", self.engine, ENGINES)):
            if value not in allowed:
                raise ValueError(f"Capabilities.{field_} = {value!r} (one of {', '.join(allowed)})")

    def to_json(self) -> dict:
        d = asdict(self)
        d["options"] = list(self.options)
        return d


@dataclass(frozen=True)
class Estimate:
    """What a run will cost, stated before it starts (``Target.estimate``): commands print it and
    refuse, with these figures, a run whose peak does not fit the memory budget."""
    seconds: float  # wall time of run()
    # peak memory the run adds to what its caller already holds (graph, inputs, prepared artifacts),
    # every process it starts included
    peak_bytes: int
    basis: str  # how the figures were made, one line (e.g. "2.1 GMAC/step at 4 GMAC/s measured")

    def __post_init__(self):
        if not (self.seconds >= 0 and self.peak_bytes >= 0 and self.basis):
            raise ValueError(f"Estimate needs seconds >= 0, peak_bytes >= 0 and a basis: {self}")


class Target(abc.ABC):
    """A thing that executes a NIR graph. Subclasses set ``capabilities`` and implement ``steps``
    (simulated steps of a run, for progress bars) and ``run`` (RunRequest -> RunResult).

    A request option outside ``capabilities.options`` is an error (``refuse_unknown``), never ignored."""
    name: str = ""  # set by the registry (the entry point's name)
    capabilities: ClassVar[Capabilities]

    @classmethod
    def unavailable(cls) -> Optional[str]:
        """Why this target cannot run on this machine, or None."""
        return None

    @classmethod
    def flows(cls) -> Tuple[Any, ...]:
        """Flows this target brings (resformer_deploy.passes.manager.Flow), registered with it when
        it is loaded from its entry point, so ``capabilities.flow`` may name one of them."""
        return ()

    @abc.abstractmethod
    def steps(self, request: RunRequest) -> int:
        ...

    @abc.abstractmethod
    def run(self, request: RunRequest) -> RunResult:
        ...

    def estimate(self, request: RunRequest) -> Optional[Estimate]:
        """Time and peak memory of ``run`` on request.n_samples (None: this target has no cost model).

        Commands call it before any work, with ``prepared=None`` (then estimate from the graph, or
        return None: they ask again with the flow's artifacts before the run); a target that needs
        a quantized network is asked with the flow's artifacts, or before calibration with the
        plan alone (artifacts holding only ``lava_plan``, see ``sized_by``)."""
        return None

    # ---------------------------------------------------------------- checks shared by all targets
    @property
    def label(self) -> str:
        return self.name or type(self).__name__

    def refuse_unknown(self, request, allowed: Optional[Tuple[str, ...]] = None) -> None:
        """Raise naming every option of ``request`` (a RunRequest or its options) this target does
        not take, and the ones it does."""
        unknown = request.options if isinstance(request, RunRequest) else request
        allowed = self.capabilities.options if allowed is None else allowed
        bad = sorted(k for k in unknown if k not in allowed)
        if bad:
            raise DeployError(f"target '{self.label}' has no option {', '.join(repr(b) for b in bad)} "
                              f"(its options: {', '.join(self.capabilities.options) or 'none'}; every target "
                              f"takes {', '.join(COMMON_RUN_KEYWORDS)})")

    def run_options(self, dssa: Optional[str] = None, lava_processes: str = "separate") -> Dict[str, Any]:
        """The options a job hands this target on every run: ``dssa`` where it lowers DSSA products,
        ``merge`` for ``lava_processes`` "merged" (LAVA_PROCESSES), which a target without that
        option refuses here, before any work, naming the targets that take it."""
        opts: Dict[str, Any] = {"dssa": dssa} if dssa is not None and "dssa" in self.capabilities.options else {}
        if lava_processes not in LAVA_PROCESSES:
            raise DeployError(f"lava_processes {lava_processes!r}: one of {', '.join(LAVA_PROCESSES)}")
        if lava_processes == "merged":
            if "merge" not in self.capabilities.options:
                from targets.registry import target_class, target_names
                takers = [n for n in target_names() if "merge" in target_class(n).capabilities.options]
                raise DeployError(f"--lava-processes merged: target '{self.label}' does not run merged Lava "
                                  f"processes (targets that do: {', '.join(takers) or 'none'})")
            opts["merge"] = True
        return opts

    def check_recording(self, record_spikes: bool = False, record_membranes: bool = False) -> None:
        c = self.capabilities
        for what, asked, can in (("spikes", record_spikes, c.records_spikes),
                                 ("membranes", record_membranes, c.records_membranes)):
            if asked and not can:
                raise DeployError(f"target '{self.label}' does not record {what} "
                                  f"(capability records_{what} is false)")

    def sized_by(self, prepared: Optional[FlowArtifacts] = None, quant=None):
        """(quantized network or None, plan or None) that an estimate sizes a run from. Before
        calibration a fixed-point target is sized from the flow's plan alone (``prepared`` holding
        a ``lava_plan`` and no ``quantized_net``): quantization changes a network's numbers, not its sizes."""
        q = quant if quant is not None else prepared.quantized_net if prepared is not None else None
        plan = prepared.lava_plan if prepared is not None else None
        if q is None and self.capabilities.needs_quantized_net and plan is not None:
            return None, plan
        q = self.quantized_net(prepared, quant)
        return q, (q.plan if q is not None else None)

    def quantized_net(self, prepared: Optional[FlowArtifacts] = None, quant=None):
        """The quantized network (given directly or by the flow), checked against the target's
        arithmetic: a float target refuses one, a fixed-point target requires one."""
        q = quant if quant is not None else prepared.quantized_net if prepared is not None else None
        if q is not None and not self.capabilities.needs_quantized_net:
            raise DeployError(f"target '{self.label}' runs floating point and takes no "
                              f"quantized network; use a fixed-point target (e.g. loihi2-sim) for fixed point")
        if q is None and self.capabilities.needs_quantized_net:
            raise DeployError(f"target '{self.label}' needs a quantized network (its flow "
                              f"'{self.capabilities.flow}' makes one: resformer_deploy.flows.prepare); "
                              f"`verify --target {self.label}` builds one from calibration data")
        return q
