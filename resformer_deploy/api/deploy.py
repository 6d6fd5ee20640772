"""The deployable artifact: a model's whole quantized network in one HDF5 file (targets/artifact),
written, read back and checked; run on Lava's stock process models against the bit-accurate
emulator, and on Loihi 2 where Intel's lava-loihi is installed.

    >>> from resformer_deploy import api
    >>> net = api.load_graph("examples/digits/digits_resformer.pt")
    >>> result = api.deploy(net, "digits.h5")
    >>> result.figures.layers, result.figures.netx_layers  # netx_bias_grid=True: 47, 5
    (52, 0)
"""
from dataclasses import dataclass, fields
from typing import Callable, Dict, List, Optional, Tuple

from resformer_deploy.errors import DeployError
from targets.stock_check import StockCheck


@dataclass(frozen=True)
class DeployOptions:
    """``dssa``: the synaptic lowering runs on Lava's stock models (and so the chip's); ``samples``:
    samples run on the stock models (``simulate``) or on the chip."""
    dssa: str = "synaptic"
    calib_samples: int = 128
    netx_bias_grid: bool = False
    samples: int = 4


@dataclass(frozen=True)
class ArtifactFigures:
    """What writing an artifact produced: layer groups (``netx_layers`` of them in lava-dl netx's
    schema), the groups by kind, the file's size and the seconds taken."""
    layers: int
    netx_layers: int
    types: Dict[str, int]
    bytes: int
    seconds: float


@dataclass(frozen=True)
class DeployResult:
    """The artifact written: its path, figures, the design rules it breaks (an estimate: the chip
    may refuse it), what it was calibrated on, and the artifact read back (targets.artifact)."""
    path: str
    figures: ArtifactFigures
    violations: Tuple[str, ...]
    calibration: dict
    artifact: object


@dataclass
class StockModelsCheck(StockCheck):
    """An artifact on Lava's stock process models against the bit-accurate emulator
    (targets.stock_check.StockCheck: the logits and the mismatches, none: ``bit_exact``), with the
    classes and how many are correct (None without labels)."""
    predictions: List[int]
    correct: Optional[int]


@dataclass(frozen=True)
class ChipRun:
    """Samples of an artifact run on Loihi 2 (Loihi2HwCfg): the classes, and how many are correct."""
    predictions: List[int]
    correct: Optional[int]


def write_artifact(path, compiled, net, preset: str = "auto") -> ArtifactFigures:
    """The artifact of a quantized compile result (api.compile with ``quantize``; or a flow's
    artifacts) of ``net`` (api.load_graph), written atomically and read back once (a file that
    does not load is never left as the result)."""
    from targets.artifact import artifact_meta, read_artifact
    from targets.artifact import write_artifact as write
    prepared = getattr(compiled, "artifacts", compiled)
    qn = prepared.quantized_net
    fig = write(path, qn, net.graph, artifact_meta(net.graph, qn, net.path, preset))
    types = read_artifact(path).layer_types
    return ArtifactFigures(fig["layers"], fig["netx_layers"], dict(types), fig["bytes"], fig["seconds"])


def read_artifact(path):
    """An artifact written before (targets.artifact.read_artifact: checked as it is read)."""
    from targets.artifact import read_artifact as read
    return read(path)


def deploy(net, output, options: DeployOptions = DeployOptions(), *, calibration=None, preset: str = "auto",
           say: Callable[[str], None] = lambda m: None) -> DeployResult:
    """Quantize ``net`` (api.load_graph; calibrated on ``calibration``, else the flow's choice) for
    the mapping target (chosen by capability) and write its artifact to ``output``."""
    from resformer_deploy.api.compile import made, mapping_target
    from resformer_deploy.flows import prepare
    o = options
    target = mapping_target(None)
    prepared = prepare(target, net.graph, dssa=o.dssa, quantize=True, calib_samples=o.calib_samples,
                       calibration=calibration, netx_bias_grid=o.netx_bias_grid)
    calib = made(prepared.quantized_net, "quantized_net", target).calibration
    say(f"quantized on {calib['source']}")
    fig = write_artifact(output, prepared, net, preset)
    violations, _ = made(prepared.drc, "drc", target)
    return DeployResult(str(output), fig, tuple(violations), calib, read_artifact(output))


def _inputs(data, samples: int):
    x, y, _ = data.take(samples, "--samples")
    return (x.numpy() if hasattr(x, "numpy") else x), y


def _correct(pred, y) -> Optional[int]:
    return None if y is None else sum(int(p == int(t)) for p, t in zip(pred, y))


def simulate_artifact(art, data, samples: int = 4, bar=None) -> StockModelsCheck:
    """``samples`` of ``data`` through ``art`` on Lava's stock models (Loihi2SimCfg fixed_pt, no
    exception map: the chip's arithmetic), every output value and spike checked against the
    emulator (targets.stock_check). ``bar(total, label, unit)``: a progress context manager."""
    from contextlib import nullcontext
    from targets.stock_check import check_on_stock_models
    if data is None:
        raise DeployError("--simulate runs samples of --data: give --data (e.g. --data digits)")
    x, y = _inputs(data, samples)
    steps = x.shape[0] * art.T + art.plan.total_latency
    with (bar(steps, f"Lava stock models, {x.shape[0]} sample(s)", "steps") if bar else nullcontext()) as b:
        chk = check_on_stock_models(art, x, progress=b.update if b is not None else None)
    pred = [int(c) for c in chk.logits.mean(0).argmax(-1)]
    return StockModelsCheck(**{f.name: getattr(chk, f.name) for f in fields(chk)}, predictions=pred,
                            correct=_correct(pred, y))


def chip_available() -> Tuple[bool, str]:
    """(Loihi 2 can run here, the reason when it cannot)."""
    from targets.loihi2_hardware import lava_loihi_installed, loihi2_hardware_message
    return (True, "") if lava_loihi_installed() else (False, loihi2_hardware_message())


def run_on_loihi2(art, data, samples: int = 4) -> ChipRun:
    """``samples`` of ``data`` through ``art`` on Loihi 2 (needs Intel's lava-loihi)."""
    from targets.loihi2_hardware import run_on_chip
    x, y = _inputs(data, samples)
    logits, _ = run_on_chip(art, x)
    pred = [int(c) for c in logits.mean(0).argmax(-1)]
    return ChipRun(pred, _correct(pred, y))
