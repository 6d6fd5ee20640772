"""A tour of resformer-deploy's Python API (resformer_deploy.api) on the shipped digits model:
load -> verify -> evaluate -> compile -> deploy, each job with typed options in and a typed
result out. Cells are marked ``# %%`` (VS Code, Jupytext and Spyder run them one by one).

    python examples/api_tour.py [OUT_DIR]    # the artifact goes to OUT_DIR (default: ./api_tour_out)

Every figure is printed as ``name: value`` (tests/examples/test_api_tour.py checks them)."""
# %% load the shipped digits checkpoint (trained by examples/train_digits.py)
import sys
from pathlib import Path

from resformer_deploy import api

checkpoint = str(api.DEMO_MODELS["digits"].checkpoint)
model = api.load(checkpoint)
print(f"model: {model.variant}, T={model.config.T}, {model.config.num_classes} classes")

# %% verify: the exported graph on the NIR interpreter ("reference") against PyTorch, spike for
# spike in every LIF layer, in float64 (where the two must agree exactly)
checked = api.verify(model, api.VerifyOptions(target="reference", samples=8, precision="float64"),
                     checkpoint=checkpoint)
print(f"verify reference verdicts: {','.join(checked.verdicts)}")
print(f"verify reference mismatches: {sum(c.total_mismatches for c in checked.checks)}")

# %% verify fixed point: the quantized network (Loihi 2 integer arithmetic, on the bit-accurate
# emulator) against PyTorch on the first 64 held-out digits; no Lava rungs (lava_samples=0): quick
verified = api.drift(model, api.DriftOptions(lava_samples=0, eval_samples=64), checkpoint=checkpoint)
ladder = verified.ladders[0]
print(f"verify passed: {verified.passed}")
print(f"verify samples: {ladder.fixed_point.samples}")
print(f"verify fixed-point accuracy: {ladder.fixed_point.accuracy:.6f}")
print(f"verify accuracy drop pp: {ladder.accuracy_drop_pp:.6f}")

# %% evaluate: top-1 of the PyTorch model on the whole held-out digits split
data, _ = api.open_data(api.DataArgs(data="digits"), model)
evaluation = api.evaluate(model, data, api.EvaluateOptions(batch_size=64))
print(f"evaluate samples: {evaluation.samples}")
print(f"evaluate top1: {evaluation.top1:.6f}")
worst = min(evaluation.per_class, key=lambda c: c.accuracy)
print(f"evaluate worst class: {worst.index} ({worst.accuracy:.6f} of {worst.samples})")

# %% compile: the core plan on the mapping target (chosen by capability) and its design-rule check
net = api.load_graph(checkpoint)
plan = api.compile(net, api.CompileOptions())
print(f"compile target: {plan.target}")
print(f"compile neuro cores: {plan.totals.neuro_cores}")
print(f"compile violations: {len(plan.violations)}")

# %% deploy: the quantized network as one HDF5 artifact, written and read back
out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "api_tour_out")
out_dir.mkdir(parents=True, exist_ok=True)
deployed = api.deploy(net, out_dir / "digits.h5", api.DeployOptions())
print(f"deploy artifact: {deployed.path}")
print(f"deploy layer groups: {deployed.figures.layers}")
print(f"deploy netx layers: {deployed.figures.netx_layers}")
print(f"deploy calibrated on: {deployed.calibration['source']}")
