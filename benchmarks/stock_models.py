"""The shipped cifar model (examples/cifar_digits), synaptic DSSA lowering, in fixed point on plain
``Loihi2SimCfg(select_tag='fixed_pt')`` with Lava's stock process models only (no exception model
map: the target's ``stock_models=True``), against the bit-accurate emulator (loihi2-emu) on the
same first N held-out samples: spikes of every LIF layer, outputs, classes. Too slow for the test
suite (the stock Conv loops over channel pairs in Python); the digits model is the test.

    .venv/bin/python benchmarks/stock_models.py --data DIR [--samples 2] [--json-out FILE]

DIR: the generated cifar_digits set (re-created from the checkpoint's record by
``resformer-deploy demo --model cifar``, or resformer_deploy.data.generators.recorded).
"""
import _bench  # noqa: F401  (this checkout first on sys.path)
import argparse
import json
import resource
import time

import torch

from exporters.torch_to_nir import export_model
from resformer_deploy.analysis.data_inputs import DataArgs
from resformer_deploy.cli.data import open_data_args
from resformer_deploy.flows.fixed_point import calibrate_and_quantize
from resformer_deploy.model.checkpoint import load_checkpoint
from targets import RunRequest, get_target

CKPT = "examples/cifar_digits/cifar_digits_resformer.pt"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--json-out")
    a = ap.parse_args()
    ck = load_checkpoint(CKPT)
    m = ck.model.double().eval()
    g = export_model(m, "float64")
    rec = ck.records.evaluation if ck.records else None
    preset = (rec.preset.preset if rec is not None and rec.preset is not None else None) or "auto"
    md, cal = open_data_args(DataArgs(data=a.data, preset=preset, calib_data=a.data, calib_split="train"),
                             ck.config, ck.variant, 128, True)
    x, y, _ = md.take(a.samples, "held-out")
    t0 = time.time()
    q = calibrate_and_quantize(g, cal.x.double(), m.config.T, dssa="synaptic", source=cal.source)
    t_quant = time.time() - t0
    t0 = time.time()
    lava = get_target("loihi2-sim").run(RunRequest.of(g, x.double(), m.config.T, quant=q, dssa="synaptic",
                                                      stock_models=True))
    t_lava = time.time() - t0
    emu = get_target("loihi2-emu").run(RunRequest.of(g, x.double(), m.config.T, quant=q))
    info, emu_info = lava.stats.to_json(), emu.stats.to_json()
    res = dict(samples=a.samples, quantize_s=round(t_quant, 1), lava_s=round(t_lava, 1),
               conv_weight_exps=sorted({s.exp for s in q.syn.values() if s.kind == "conv"}),
               spikes_differ=sum(int((lava.spikes[k] != emu.spikes[k]).sum()) for k in lava.spikes),
               spikes=sum(lava.spikes[k].numel() for k in lava.spikes), layers=len(lava.spikes),
               lava_classes=lava.output.mean(0).argmax(-1).tolist(),
               emu_classes=emu.output.mean(0).argmax(-1).tolist(),
               labels=[int(v) for v in y],
               outputs_equal=bool(torch.equal(lava.output, emu.output.to(lava.output.dtype))),
               processes=info["processes"], process_kinds=info["process_kinds"], emu_saturation=emu_info["saturation"],
               peak_rss_self_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2))
    print(json.dumps(res))
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
