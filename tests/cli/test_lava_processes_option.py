"""`--lava-processes merged` on simulate, verify and evaluate: lava-cpu's ``merge`` option
(targets/lava_processes/cluster.py) reached from the CLI. The merged run is checked against the
PyTorch model (classes, and spike for spike through verify), it must really be merged (no Lava
shared memory, which Lava's own runtime always allocates), and targets or engines without Lava
processes refuse the option before any work with one line and exit status 2."""
import json

import pytest
import torch
from click.testing import CliRunner

from resformer_deploy.cli.main import main
from resformer_deploy.data.digits import load_digits_split
from resformer_deploy.model.checkpoint import load_checkpoint
from tests.conftest import DIGITS_CKPT


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def digits_nir(tmp_path_factory):
    path = tmp_path_factory.mktemp("nir") / "digits.nir"
    r = run("export", DIGITS_CKPT, "-o", path)
    assert r.exit_code == 0, r.output
    return path


def pytorch_classes(n):
    model = load_checkpoint(DIGITS_CKPT).model.double().eval()
    with torch.no_grad():
        return model(load_digits_split().x_test[:n].double()).mean(0).argmax(-1).tolist()


def test_simulate_merged_gives_pytorch_classes_without_lava_shared_memory(digits_nir, tmp_path):
    out = tmp_path / "sim.json"
    r = run("simulate", digits_nir, "--target", "lava-cpu", "--samples", 5, "--lava-processes", "merged",
            "--json-out", out)
    assert r.exit_code == 0, r.output
    j = json.loads(out.read_text())
    assert j["lava_processes"] == "merged"
    assert j["predictions"] == pytorch_classes(5)
    assert j["info"]["shm_bytes"] == 0 and j["info"]["processes"] == 66  # the 66 models, no runtime


def test_verify_merged_is_exact_for_both_lowerings(tmp_path):
    out = tmp_path / "verify.json"
    r = run("verify", DIGITS_CKPT, "--target", "lava-cpu", "--samples", 2, "--precision", "float64",
            "--lava-processes", "merged", "--json-out", out)
    assert r.exit_code == 0, r.output
    reports = json.loads(out.read_text())["reports"]
    assert [rep["target_options"] for rep in reports] == [{"merge": True, "dssa": "fused"},
                                                          {"merge": True, "dssa": "synaptic"}]
    assert [rep["verdict"] for rep in reports] == ["exact", "exact"]
    assert all(rep["target_info"]["shm_bytes"] == 0 for rep in reports)


def test_evaluate_merged_agrees_with_pytorch_and_records_the_option(tmp_path):
    out = tmp_path / "ev.json"
    r = run("evaluate", DIGITS_CKPT, "--data", "digits", "--target", "lava-cpu", "--limit", 4, "--batch-size", 2,
            "--lava-processes", "merged", "--json-out", out)
    assert r.exit_code == 0, r.output
    j = json.loads(out.read_text())
    assert j["target_options"] == {"dssa": "fused", "merge": True} and j["target_info"]["shm_bytes"] == 0
    assert [p["prediction"] for p in j["predictions"]] == [p["torch_prediction"] for p in j["predictions"]]
    assert len(j["predictions"]) == 4


@pytest.mark.parametrize("args, message", [
    (("simulate", "{nir}", "--target", "loihi2-sim"),
     "error: --lava-processes merged: target 'loihi2-sim' does not run merged Lava processes "
     "(targets that do: lava-cpu)"),
    (("verify", DIGITS_CKPT, "--target", "loihi2-sim"),
     "error: --lava-processes merged: target 'loihi2-sim' does not run merged Lava processes "
     "(targets that do: lava-cpu)"),
    (("evaluate", DIGITS_CKPT, "--data", "digits"),
     "error: --lava-processes merged: the PyTorch model runs no Lava process (give a Lava --target, e.g. lava-cpu)"),
])
def test_merged_without_lava_processes_is_refused_before_work(digits_nir, tmp_path, args, message):
    out = tmp_path / "out.json"
    r = run(*[str(a).format(nir=digits_nir) for a in args], "--lava-processes", "merged", "--json-out", out)
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [message]
    assert not out.exists()
