"""Sizing messages name the real cause (issue 24, defect 15): a batch never counts more samples
than the run reads, and when one sample cannot fit the advice names T, not the batch size."""
import functools
import re

from click.testing import CliRunner

from resformer_deploy.cli.main import main
from resformer_deploy.util.memory_budget import ENV
from tests.conftest import DIGITS_CKPT
from tests.support.datasets import npz

D = str(DIGITS_CKPT)


def _evaluate(*argv, env=None):
    r = CliRunner().invoke(main, ["evaluate", D, *map(str, argv)], env=env)
    assert "Traceback" not in r.output
    return r


def test_huge_batch_with_limit_is_sized_as_the_limit(tmp_path):
    data = npz(tmp_path, (1, 8, 8), 20)
    budget = {ENV: "4000000"}  # 16 samples do not fit, 1 does: the refusal's wording is reached
    huge = _evaluate("--data", data, "--batch-size", 10 ** 9, "--limit", 16, env=budget)
    same = _evaluate("--data", data, "--batch-size", 16, "--limit", 16, env=budget)
    assert huge.exit_code == same.exit_code == 2
    assert huge.stderr == same.stderr  # the same 16-sample batch, byte for byte
    assert "batches of 16 samples" in huge.stderr and "use a smaller --batch-size" in huge.stderr
    ok = _evaluate("--data", data, "--batch-size", 10 ** 9, "--limit", 16)
    assert ok.exit_code == 0, ok.output
    assert ": 16 of 20 samples, batches of 16, T=4" in ok.stdout and "1 batch(es) of <= 16" in ok.stdout


def test_one_sample_too_large_names_T(tmp_path):
    data = npz(tmp_path, (1, 8, 8), 4)
    r = _evaluate("--data", data, "--T", 10 ** 8)
    assert r.exit_code == 2
    line = r.stderr.strip()
    assert line.startswith("error: evaluate on target 'torch': batches of 4 samples need about ")
    assert line.endswith("at T=100,000,000 time steps; use a smaller --T") and "--batch-size" not in line


# defaults that fit (issue 27): a default count or lowering that does not fit is lowered to what
# fits, and the output says so; what was asked for is refused, naming an option that would help


def _verify(*argv, budget):
    r = CliRunner().invoke(main, ["verify", D, *map(str, argv)], env={ENV: str(budget)})
    assert "Traceback" not in r.output
    return r


@functools.lru_cache(maxsize=1)
def _digits_graph():
    from exporters.torch_to_nir import export_model
    from resformer_deploy.model.checkpoint import load_checkpoint
    model = load_checkpoint(DIGITS_CKPT).model
    return model, export_model(model.float().eval(), "float32")


def _verify_fits(n, budget, target="reference", precisions=("float64", "float32"), dssa=None):
    """Whether verify's own estimate of n samples fits ``budget``, asked directly."""
    from resformer_deploy.analysis.equivalence import DTYPES, estimate_verification
    from targets import get_target
    model, graph = _digits_graph()
    opts = {"dssa": dssa} if dssa else {}
    return all(estimate_verification(model, n, graph, get_target(target), DTYPES[p], **opts).peak_bytes <= budget
               for p in precisions)


def test_verify_default_samples_lowered_asked_samples_refused_with_the_count_that_fits():
    budget = 5_000_000
    most = max(n for n in range(1, 9) if _verify_fits(n, budget))
    assert most < 8 and not _verify_fits(most + 1, budget)
    ok = _verify(budget=budget)
    assert ok.exit_code == 0, ok.output
    assert (f"note: the default --samples 8 does not fit the memory budget 4.8 MiB: running {most} sample(s), the "
            f"most that fit") in ok.stderr
    assert f"on target 'reference' (extension form): {most} samples of digits held-out split" in ok.stdout
    asked = _verify("--samples", 8, budget=budget)
    assert asked.exit_code == 2
    line = asked.stderr.strip()
    assert line.startswith("error: verify on target 'reference' [float64] needs about ")
    assert line.endswith(f"; use --samples {most} (the most that fit)")


def test_verify_asked_synaptic_on_one_sample_is_told_to_use_fused():
    fused = next(b for b in range(900_000_000, 2_000_000_000, 10_000_000)
                 if _verify_fits(1, b, "lava-cpu", ("float64",), "fused"))
    assert not _verify_fits(1, fused, "lava-cpu", ("float64",), "synaptic")
    r = _verify("--target", "lava-cpu", "--samples", 1, "--precision", "float64", "--dssa", "synaptic", budget=fused)
    assert r.exit_code == 2  # refused before any Lava run
    assert r.stderr.strip().endswith("; use --dssa fused (the synaptic lowering does not fit even on 1 sample)")
    assert "use fewer --samples" not in r.stderr


def test_ladder_default_evaluation_lowered_and_samples_bound_every_rung():
    budget = 14_000_000  # the emulator ladder's records and run: a handful of the 359 held-out samples
    ok = _verify("--target", "loihi2-emu", "--dssa", "fused", "--calib-samples", 16, budget=budget)
    assert ok.exit_code == 0, ok.output
    note = [ln for ln in ok.stderr.splitlines() if ln.startswith("note: the default 359 evaluation samples")]
    assert len(note) == 1 and note[0].endswith("the most that fit"), ok.stderr
    n = int(note[0].split("running ")[1].split(",")[0])
    assert 1 <= n < 359
    rows = [ln for ln in ok.stdout.splitlines() if ln.startswith(("PyTorch float64 ", "fixed-point emulator"))]
    assert len(rows) == 2 and all(ln.split()[ln.split().index("torch" if "PyTorch" in ln else "loihi2-emu") + 1]
                                  == str(n) for ln in rows), ok.stdout
    # --samples given: it bounds the evaluation (and Lava) samples, which are then asked for: refused
    # with the evaluation count that fits, not lowered
    asked = _verify("--target", "loihi2-emu", "--dssa", "fused", "--samples", 400, budget=budget)
    assert asked.exit_code == 2
    assert "--samples 400 bounds the ladder: 359 evaluation samples, 10 Lava samples" in asked.stderr
    assert asked.stderr.strip().splitlines()[-1].endswith("(the most that fit)")
    assert "use --eval-samples " in asked.stderr


def test_simulate_default_samples_lowered_asked_samples_refused(tmp_path):
    from exporters.nir_io import read_nir
    from resformer_deploy.analysis.equivalence import estimate_run
    from targets import get_target
    nir = tmp_path / "d.nir"
    assert CliRunner().invoke(main, ["export", D, "-o", str(nir)]).exit_code == 0
    graph, budget = read_nir(nir), 2_000_000
    need = [estimate_run(get_target("reference"), graph, n, 4, record_spikes=False).peak_bytes for n in range(1, 11)]
    most = max(n for n in range(1, 11) if need[n - 1] <= budget)
    assert most < 10
    ok = CliRunner().invoke(main, ["simulate", str(nir), "--target", "reference"], env={ENV: str(budget)})
    assert ok.exit_code == 0, ok.output
    assert (f"note: the default --samples 10 does not fit the memory budget 1.9 MiB: running {most}, the most that "
            f"fit") in ok.stderr
    assert re.search(rf"^samples +{most}$", ok.stdout, re.M), ok.stdout
    asked = CliRunner().invoke(main, ["simulate", str(nir), "--target", "reference", "--samples", "10"],
                               env={ENV: str(budget)})
    assert asked.exit_code == 2
    assert asked.stderr.strip().endswith(f"; use --samples {most} (the most that fit)")
