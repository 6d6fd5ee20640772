"""Run a NIR file on a target (`simulate`): predictions, accuracy (digits or the user's data),
wall time and the target's run statistics.

    >>> from resformer_deploy import api
    >>> from targets import names_with
    >>> nir_file = api.export(api.load("examples/digits/digits_resformer.pt"), "digits.nir").path
    >>> r = api.simulate(nir_file, api.SimulateOptions(target=names_with(engine="pytorch")[0], samples=4))
    >>> len(r.predictions), r.T
    (4, 4)
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from resformer_deploy.api.options import DataOptions, Messages

__all__ = ["DEFAULT_SAMPLES", "SimulateOptions", "SimulateResult", "simulate"]

DEFAULT_SAMPLES = 10


@dataclass(frozen=True)
class SimulateOptions:
    """``samples``: None for DEFAULT_SAMPLES lowered to what fits the memory budget (said through
    ``Messages.note``); a number is run as asked, or refused with advice when it cannot fit.
    ``dssa``: the DSSA lowering, for targets that take it; ``seed``: of random inputs (models
    that are not digits-shaped, without ``data``); ``calib_samples``: fixed-point targets'
    calibration samples; ``lava_processes``: "merged" runs every Lava process model of a lava-cpu run in
    one worker process (targets.LAVA_PROCESSES; refused by targets without it)."""
    target: str
    samples: Optional[int] = None
    dssa: str = "fused"
    seed: int = 0
    calib_samples: int = 128
    data: DataOptions = field(default_factory=DataOptions)
    lava_processes: str = "separate"


@dataclass(frozen=True)
class SimulateResult:
    target: str
    samples: int  # run (a default may have been lowered to fit)
    inputs: str  # what the samples are (and why there is no accuracy, where there is none)
    T: int
    output_shape: Tuple[int, ...]
    per_class: bool  # the output is class scores (predictions and accuracy are defined)
    predictions: Optional[List[int]]
    accuracy: Optional[float]  # in [0, 1]; None without labels
    output_mean: float  # mean of every output value over steps and samples
    seconds: float  # wall time of the run
    stats: dict  # the target's run statistics (targets.RunStats.to_json: processes, latency, ...)
    data: Optional[dict]  # the user's data set (ModelData.to_json), None for the built-in inputs
    calibration: Optional[dict]  # what calibrated the quantized network (None: nothing quantized)


def simulate(model: str, options: SimulateOptions, messages: Messages = Messages()) -> SimulateResult:
    """Run the NIR file ``model`` on ``options.target``: sized before its flow (a default count
    lowered to fit, an asked one refused when it cannot), the flow run (fixed point: calibrated
    and quantized), sized again where the target's cost model needs the flow, then run."""
    import time
    from math import prod

    from exporters.nir_io import interface, read_nir
    from targets import RunRequest, get_target
    from resformer_deploy.analysis.equivalence import inputs_for
    from resformer_deploy.api.sizing import fit_run, size_run
    from resformer_deploy.flows import flow_options, prepare
    from resformer_deploy.training.loop import accuracy

    target = options.target
    tgt = get_target(target)
    graph = read_nir(model)
    T = int(graph.metadata.get("time_steps", 4))
    in_shape, out_shape, shapes = interface(graph)
    md = cal = None
    if options.data.data or options.data.calib_data:
        from resformer_deploy.analysis.data_inputs import graph_model
        from resformer_deploy.api.data import open_data
        cfg, variant = graph_model(graph, model)
        md, cal = open_data(options.data, None, options.calib_samples, tgt.capabilities.needs_quantized_net,
                            f"target '{target}' runs floating point", messages.say, config=cfg, variant=variant)
    opts: Dict[str, Any] = tgt.run_options(options.dssa, options.lava_processes)  # the target's own
    run_kw = dict(opts, record_spikes=False)
    n_values = sum(prod(s) for s in shapes.values())
    # a default count lowered to what fits
    samples, advice_for = fit_run(tgt, graph, T, options.samples, DEFAULT_SAMPLES, run_kw, n_values, prod(out_shape),
                                  messages.note)
    advice = lambda: advice_for(samples)  # noqa: E731  (samples: as read from the data, below)
    if md is not None:
        x, labels, _ = md.take(samples, "--samples")
        samples, source = len(labels), md.describe()
        messages.skipped([why for _, why in md.bad])
    else:
        x, labels, source = inputs_for(in_shape, samples, options.seed)
    what = f"simulate: {samples:,} samples of {model}"
    # no cost model before the flow: a step holds every node's value for the batch, float64
    est = size_run(tgt, graph, samples, T, what, advice=advice, say=messages.say,
                   bound=(8 * samples * (n_values + T * prod(out_shape)),
                          f"simulate: {samples:,} samples x {n_values:,} values per step of {model}"), **run_kw)
    # per-class scores give predictions; digits accuracy needs the 10 digit classes
    per_class = len(out_shape) == 1
    if labels is not None and md is None and out_shape != (10,):
        labels, source = None, f"{source}; no accuracy: the output is {out_shape}, not 10 class scores"
    # the target's flow (fixed point: calibrate and quantize first); the options it takes of ours
    prepared = prepare(tgt, graph, samples=x.double(), T=T, calibration=cal,
                       **flow_options(tgt, {**opts, "calib_samples": options.calib_samples}))
    qn = prepared.quantized_net
    if qn is not None:
        messages.note(f"quantized for Loihi 2 on {qn.calibration['source']}")
    if est is None:  # a cost model that needs the flow's artifacts
        size_run(tgt, graph, samples, T, what, prepared=prepared, advice=advice, say=messages.say, **run_kw)
    t0 = time.time()
    with messages.bars(tgt.steps(RunRequest.sizing(graph, samples, T, prepared=prepared, **opts)),
                       f"{target} simulation", unit="steps") as bar:
        res = tgt.run(RunRequest.of(graph, x.double(), T, record_spikes=False, progress=bar.update,
                                    prepared=prepared, **opts))
    wall = time.time() - t0
    pred = res.output.mean(0).argmax(-1) if per_class else None
    return SimulateResult(target, samples, source, T, tuple(int(v) for v in out_shape), per_class,
                          None if pred is None else pred.tolist(), accuracy(pred, labels), float(res.output.mean()),
                          wall, res.stats.to_json(), md.to_json() if md else None,
                          None if qn is None else qn.calibration)
