"""Sizing messages name the real cause (issue 24, defect 15): a batch never counts more samples
than the run reads, and when one sample cannot fit the advice names T, not the batch size."""
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
