"""What every target is: a ``Target`` with declared ``Capabilities``.

Commands decide by capability (``get_target(name).capabilities``), never by a target's name, so
a target from another package (registered through the ``resformer_deploy.targets`` entry-point
group, see targets/registry.py) is driven like the built-in ones. A graph is prepared for a
target by the flow its capabilities name (resformer_deploy.flows.FLOWS); ``run`` receives the
flow's artifacts as ``prepared``.
"""
import abc
from dataclasses import asdict, dataclass
from typing import ClassVar, Optional, Tuple

from resformer_deploy.errors import DeployError

ARITHMETIC = ("float", "fixed")
EXECUTES = ("simulation", "hardware")
ENGINES = ("pytorch", "lava", "numpy", "chip")
# keywords every target's run() takes (steps() takes prepared, quant and the target's options):
# ``prepared``: the artifacts of the target's flow; ``quant``: its quantized network, given directly
COMMON_RUN_KEYWORDS = ("record_spikes", "record_membranes", "dtype", "progress", "info", "prepared", "quant")


@dataclass(frozen=True)
class Capabilities:
    """What a target can do, declared as data (``resformer-deploy targets`` lists it)."""
    arithmetic: str  # "float" or "fixed" (Loihi 2 integer arithmetic)
    flow: str  # the flow that prepares a graph for it (resformer_deploy.flows.FLOWS)
    engine: str  # what executes the graph: "pytorch", "lava", "numpy" or "chip"
    executes: str = "simulation"  # "simulation" or "hardware"
    needs_quantized_net: bool = False  # run() needs the flow's quantized_net
    options: Tuple[str, ...] = ()  # run()/steps() options beyond COMMON_RUN_KEYWORDS
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
    (simulated steps of a run, for progress bars) and ``run`` (-> targets.reference.RunResult).

    ``run(graph, x, T, *, <COMMON_RUN_KEYWORDS>, <capabilities.options>, **unknown)``: an option
    outside both is an error (``refuse_unknown``), never ignored."""
    name: str = ""  # set by the registry (the entry point's name)
    capabilities: ClassVar[Capabilities]

    @classmethod
    def unavailable(cls) -> Optional[str]:
        """Why this target cannot run on this machine, or None."""
        return None

    @abc.abstractmethod
    def steps(self, graph, n_samples: int, T: int, *, prepared=None, quant=None, **options) -> int:
        ...

    @abc.abstractmethod
    def run(self, graph, x, T: int, **keywords):
        ...

    def estimate(self, graph, n_samples: int, T: int, *, prepared=None, quant=None, **options) -> Optional[Estimate]:
        """Time and peak memory of ``run`` on n_samples (None: this target has no cost model).

        ``options``: the keywords ``run`` will get (the target's options, and those of
        COMMON_RUN_KEYWORDS that change its cost: ``dtype``, ``record_spikes``, ``record_membranes``).
        Commands call it before any work, with ``prepared=None`` (then estimate from the graph, or
        return None: they ask again with the flow's artifacts before the run); a target that needs
        a quantized network is asked with the flow's artifacts, or before calibration with the
        plan alone (``{"lava_plan": plan}``, see ``sized_by``)."""
        return None

    # ---------------------------------------------------------------- checks shared by all targets
    @property
    def label(self) -> str:
        return self.name or type(self).__name__

    def refuse_unknown(self, unknown: dict, allowed: Tuple[str, ...] = None) -> None:
        """Raise naming every option this target does not take, and the ones it does."""
        allowed = self.capabilities.options if allowed is None else allowed
        # the common keywords are every target's (estimate() receives them among its options)
        bad = sorted(k for k in unknown if k not in allowed and k not in COMMON_RUN_KEYWORDS)
        if bad:
            raise DeployError(f"target '{self.label}' has no option {', '.join(repr(b) for b in bad)} "
                              f"(its options: {', '.join(self.capabilities.options) or 'none'}; every target "
                              f"takes {', '.join(COMMON_RUN_KEYWORDS)})")

    def check_recording(self, record_spikes: bool = False, record_membranes: bool = False) -> None:
        c = self.capabilities
        for what, asked, can in (("spikes", record_spikes, c.records_spikes),
                                 ("membranes", record_membranes, c.records_membranes)):
            if asked and not can:
                raise DeployError(f"target '{self.label}' does not record {what} "
                                  f"(capability records_{what} is false)")

    def sized_by(self, prepared=None, quant=None):
        """(quantized network or None, plan or None) that an estimate sizes a run from. Before
        calibration a fixed-point target is sized from the flow's plan alone (``prepared`` holding
        'lava_plan' and no 'quantized_net'): quantization changes a network's numbers, not its sizes."""
        q = quant if quant is not None else (prepared or {}).get("quantized_net")
        if q is None and self.capabilities.needs_quantized_net and (prepared or {}).get("lava_plan") is not None:
            return None, prepared["lava_plan"]
        q = self.quantized_net(prepared, quant)
        return q, (q.plan if q is not None else None)

    def quantized_net(self, prepared=None, quant=None):
        """The quantized network (given directly or by the flow), checked against the target's
        arithmetic: a float target refuses one, a fixed-point target requires one."""
        q = quant if quant is not None else (prepared or {}).get("quantized_net")
        if q is not None and not self.capabilities.needs_quantized_net:
            raise DeployError(f"target '{self.label}' runs floating point and takes no "
                              f"quantized network; use a fixed-point target (e.g. loihi2-sim) for fixed point")
        if q is None and self.capabilities.needs_quantized_net:
            raise DeployError(f"target '{self.label}' needs a quantized network (its flow "
                              f"'{self.capabilities.flow}' makes one: resformer_deploy.flows.prepare); "
                              f"`verify --target {self.label}` builds one from calibration data")
        return q
