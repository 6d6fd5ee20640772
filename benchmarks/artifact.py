"""The deployment artifact at native size: `resformer-deploy deploy MODEL -o OUT.h5` as a user runs
it, for the shipped trained cifar and dvsg models and official ti @224 (random weights, made by
benchmarks/fullsize_models.py), measured by benchmarks/fullsize.py ``measure`` (wall time, peak PSS
of the process tree); the artifact's size and write time are the command's own line. Then the
loader round trip on cifar: the file alone, in an interpreter where torch and the project's
PyTorch side cannot be imported, on plain Loihi2SimCfg(select_tag='fixed_pt'), compared integer
for integer with the emulator on the same (loaded) network.

    .venv/bin/python benchmarks/artifact.py [--models cifar,dvsg,ti] [--round-trip cifar]
        [--samples 2] [--workdir DIR] [--json-out benchmarks/artifact.json]
"""
import _bench  # noqa: F401  (this checkout first on sys.path)
import argparse
import datetime
import json
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = {"cifar": REPO / "examples" / "cifar_digits" / "cifar_digits_resformer.pt",
          "dvsg": REPO / "examples" / "dvs_digits" / "dvs_digits_resformer.pt"}
# calibration samples: ti @224 and dvsg (T=16, 64x64) calibrate 128 inputs in more than half an
# hour on a shared 2-core machine; the sample count changes no size
CALIB = {"ti": 4, "dvsg": 8}
LINE = re.compile(r"wrote (\S+): (\d+) layer groups \((\d+) in lava-dl netx schema; ([^)]*)\), ([\d.]+) MiB in ([\d.]+) s")

RUNNER = """
import importlib.abc, json, sys, time
sys.path.insert(0, sys.argv[1])
BLOCKED = ("torch", "resformer_deploy.model", "exporters.torch_to_nir", "exporters.nir_io", "exporters.fold_bn",
           "targets.reference", "resformer_deploy.lava.host_partition", "lava.lib.dl")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"blocked: {name}")

sys.meta_path.insert(0, Block())
import numpy as np
from targets.artifact import read_artifact
from targets.artifact.network import run_artifact
t0 = time.time()
a = read_artifact(sys.argv[2])
t_read = time.time() - t0
logits, out = run_artifact(a, np.load(sys.argv[3]))
np.save(sys.argv[4], out)
print(json.dumps({"read_s": t_read, "run_s": time.time() - t0 - t_read,
                  "blocked_loaded": sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))}))
"""


def round_trip(path: Path, samples: int, workdir: Path, measure) -> dict:
    import numpy as np

    from targets.artifact import read_artifact
    from resformer_deploy.fixed_point.emulator import LavaSemantics
    art = read_artifact(path)
    shape = art.host.nodes[art.host.input].shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((samples, *shape)) if art.meta.get("variant") != "dvsg" else \
        rng.poisson(0.5, (samples, art.T, *shape)).astype(np.float64)
    np.save(workdir / "x.npy", x)
    runner = workdir / "runner.py"
    runner.write_text(RUNNER)
    res = measure([sys.executable, "-I", str(runner), str(REPO), str(path), str(workdir / "x.npy"),
                   str(workdir / "out.npy")], "round trip", workdir, 3600, f"loader + Lava on {path.name}")
    if res["exit_code"] != 0:
        return res
    res.update(json.loads(Path(res["stdout"]).read_text().strip().splitlines()[-1]))
    (o,) = art.plan.outputs
    (h,) = art.plan.inputs
    emu = LavaSemantics(art.plan, art.quant).run({h: art.chip_inputs(x)}, art.T, record_spikes=False)
    got = np.load(workdir / "out.npy")
    res["bit_exact_with_emulator"] = bool(np.array_equal(got, emu.outputs[o].swapaxes(0, 1)))
    res["output_values"] = int(got.size)
    res["classes"] = [int(c) for c in art.scores(got).mean(0).argmax(-1)]
    res["inputs"] = f"{samples} seeded random inputs (numpy default_rng(0))"
    return res


def main():
    from fullsize import measure
    from fullsize_models import generate
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="cifar,dvsg,ti")
    ap.add_argument("--round-trip", default="cifar")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--workdir")
    ap.add_argument("--json-out", default=str(REPO / "benchmarks" / "artifact.json"))
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="artifact-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {"date": datetime.datetime.utcnow().isoformat(timespec="seconds") + "Z", "rows": {}}
    for m in a.models.split(","):
        model = MODELS.get(m)
        if model is None:
            results.setdefault("made", {})[m] = generate(work, m)
            model = Path(results["made"][m]["path"])
        out = work / f"{m}.h5"
        argv = [sys.executable, "-m", "resformer_deploy.cli.main", "deploy", str(model), "-o", str(out),
                "--dssa", "synaptic", "--calib-samples", str(CALIB.get(m, 128))]
        res = measure(argv, f"deploy {m}", work, 3600, " ".join(argv[2:]))
        text = Path(res["stdout"]).read_text()
        hit = LINE.search(text)
        if hit:
            res.update({"artifact_bytes": out.stat().st_size, "layer_groups": int(hit.group(2)),
                        "netx_groups": int(hit.group(3)), "group_types": hit.group(4),
                        "write_s": float(hit.group(6))})
        res["calibration"] = [ln for ln in Path(res["stderr"]).read_text().splitlines() if "quantized on" in ln]
        results["rows"][m] = res
        if m in a.round_trip.split(",") and hit:
            results["rows"][f"{m} round trip"] = round_trip(out, a.samples, work, measure)
        Path(a.json_out).write_text(json.dumps(results, indent=1, default=str))
    print(json.dumps({k: {kk: v.get(kk) for kk in ("exit_code", "wall_s", "peak_pss_GiB", "artifact_bytes",
                                                    "write_s", "bit_exact_with_emulator", "run_s")}
                      for k, v in results["rows"].items()}, indent=1))


if __name__ == "__main__":
    main()
