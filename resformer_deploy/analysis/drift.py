"""The drift ladder: PyTorch float -> float Lava -> fixed-point Lava, measured rung by rung.

Rungs (all compared with the PyTorch model, per LIF layer, with the first divergence):
1. PyTorch float64 on the evaluation set (the full held-out digits split): accuracy.
2. Float Lava (target lava-cpu) on the first ``lava_samples``: must be exact (issue 4).
3. Fixed-point emulator (loihi2-emu) on the whole evaluation set: accuracy, prediction
   agreement, per-layer spike agreement, saturation counts.
4. Fixed-point Lava (loihi2-sim, Loihi2SimCfg fixed_pt) on the first ``lava_samples``: the same
   comparison, plus bit-exactness against the emulator on those samples (which is what makes
   rung 3 stand for Lava on the full set).
Calibration (quantization scales) uses the training split, never the evaluation data.
"""
import tempfile
import time
from pathlib import Path

import torch

from exporters.nir_io import read_nir, write_nir
from exporters.torch_to_nir import export_model
from targets import get_target

from resformer_deploy.errors import DeployError
from resformer_deploy.flows.fixed_point import quantize_graph
from resformer_deploy.fixed_point.quantize import MARGIN
from resformer_deploy.analysis.equivalence import inputs_for
from resformer_deploy.analysis.compare import compare_run, record_torch

MAX_ACCURACY_DROP_PP = 1.0


def _accuracy(logits, y):
    return None if y is None else float((logits.mean(0).argmax(-1) == y).float().mean())


def _rung(name, target, rep, y, seconds, extra=None):
    out = {"rung": name, "target": target, "samples": rep["samples"],
           "accuracy": _accuracy_from(rep, y), "prediction_agreement_with_torch": rep["prediction_agreement"],
           "min_layer_identical_pct": rep["min_layer_identical_pct"], "total_mismatches": rep["total_mismatches"],
           "first_divergence": rep["first_divergence"], "layers": rep["layers"], "seconds": seconds}
    out.update(extra or {})
    return out


def _accuracy_from(rep, y):
    if y is None:
        return None
    pred = torch.as_tensor(rep["predictions_target"])
    return float((pred == y[: len(pred)]).float().mean())


def drift_ladder(model, eval_samples: int = 0, lava_samples: int = 10, calib_samples: int = 128,
                 dssa: str = "fused", margin: float = MARGIN, seed: int = 0, progress=None, lava: bool = True,
                 keep: dict = None) -> dict:
    """``eval_samples`` 0: the full held-out digits split (random inputs: 32). ``keep``: filled with
    the objects behind the numbers (graph, quant, x, emulator run) for further reports."""
    cfg = model.config
    in_shape = (cfg.in_channels, cfg.img_size, cfg.img_size)
    dvs = cfg.T if cfg.neuron == "plif" else 0
    if in_shape == (1, 8, 8):
        from resformer_deploy.data.digits import load_digits_split
        n_eval = eval_samples or len(load_digits_split().y_test)
    else:
        n_eval = eval_samples or 32
    x, y, source = inputs_for(in_shape, n_eval, seed, dvs_steps=dvs)
    if lava_samples > n_eval:
        raise DeployError(f"--lava-samples {lava_samples} exceeds the {n_eval} evaluation samples")
    m = model.double().eval()
    x = x.double()
    say = progress or (lambda msg: None)
    t0 = time.time()
    rec = record_torch(m, x)
    t_torch = time.time() - t0
    with tempfile.TemporaryDirectory() as d:  # what a user deploys: the file read back
        path = Path(d) / "model.nir"
        write_nir(export_model(m, "float64"), path)
        graph = read_nir(path)
    say(f"calibrating on {calib_samples} samples")
    qn = quantize_graph(graph, calib_samples, dssa, margin)
    rungs = [{"rung": "PyTorch float64", "target": "torch", "samples": n_eval, "accuracy": _accuracy(rec.logits, y),
              "seconds": t_torch}]
    say(f"fixed-point emulator on {n_eval} samples")
    t0 = time.time()
    info = {}
    emu = get_target("loihi2-emu").run(graph, x, cfg.T, quant=qn, info=info)
    t_emu = time.time() - t0
    rep = compare_run(graph, rec, emu)
    if keep is not None:
        keep.update(graph=graph, quant=qn, x=x, y=y, emulator=emu)
    saturation = info.get("saturation", {})
    emu_rung = _rung("fixed-point emulator (bit-accurate)", "loihi2-emu", rep, y, t_emu,
                     {"saturation_events": sum(sum(v.values()) for v in saturation.values())})
    if lava and lava_samples:
        xs = x[:lava_samples]
        rec_s = rec.head(lava_samples)
        for name, target, q in (("float Lava", "lava-cpu", None), ("fixed-point Lava", "loihi2-sim", qn)):
            say(f"{name} ({target}, Loihi2SimCfg) on {lava_samples} samples")
            t0 = time.time()
            tinfo = {}
            res = get_target(target).run(graph, xs, cfg.T, dssa=dssa, quant=q, info=tinfo)
            extra = {"processes": tinfo.get("processes"), "pipeline_latency": tinfo.get("latency")}
            if q is not None:  # the emulator's run of the same samples (samples are independent)
                e_out = emu.output[:, :lava_samples]
                mism = sum(int((emu.spikes[n][:, :lava_samples] != res.spikes[n]).sum()) for n in res.spikes)
                extra["emulator_match"] = {
                    "spike_mismatches": mism, "compared_spikes": sum(int(s.numel()) for s in res.spikes.values()),
                    "logits_max_abs_diff": float((e_out - res.output).abs().max()),
                    "bit_exact": mism == 0 and bool(torch.equal(e_out, res.output.to(e_out.dtype)))}
            rungs.append(_rung(name, target, compare_run(graph, rec_s, res), y, time.time() - t0, extra))
    rungs.append(emu_rung)
    acc_t, acc_f = rungs[0]["accuracy"], emu_rung["accuracy"]
    drop = None if acc_t is None else 100.0 * (acc_t - acc_f)
    exact = [r["emulator_match"]["bit_exact"] for r in rungs if "emulator_match" in r]
    model.float()
    return {
        "evaluation": {"source": source, "samples": n_eval}, "dssa": dssa,
        "calibration": qn.calibration, "rungs": rungs,
        "quantization": {"groups": qn.groups, "layers": qn.layers, "weights_or_biases_clipped": qn.saturation_total()},
        "saturation": saturation,
        "accuracy_drop_pp": drop, "goal_max_drop_pp": MAX_ACCURACY_DROP_PP,
        "accuracy_goal_met": None if drop is None else drop <= MAX_ACCURACY_DROP_PP,
        "emulator_bit_exact_vs_lava": all(exact) if exact else None,
    }
