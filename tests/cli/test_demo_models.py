"""`demo --model cifar`: the shipped 32x32 model through the whole chain on its own re-generated
held-out split (PyTorch, NIR, Lava float with both DSSA lowerings, Loihi 2 fixed point with
the emulator, core plan, report), checked against the checkpoint's training record."""
import json
from pathlib import Path

from click.testing import CliRunner

from resformer_deploy.cli.main import main

RECORD = Path(__file__).resolve().parents[2] / "examples" / "cifar_digits" / "cifar_digits_resformer.json"
FLIPS = 2  # held-out predictions that float32 rounding on another CPU may change (tests/model)


def test_demo_cifar_runs_the_chain_on_its_generated_split(tmp_path):
    out, data = tmp_path / "demo.json", tmp_path / "data"
    r = CliRunner().invoke(main, ["demo", "--model", "cifar", "--out-dir", str(tmp_path / "build"), "--data-dir",
                                  str(data), "--json-out", str(out), "--lava-samples", "1", "--dssa", "fused",
                                  "--eval-samples", "12", "--calib-samples", "16"])
    assert r.exit_code == 0, r.stderr
    j = json.loads(out.read_text())
    ev = json.loads(RECORD.read_text())["evaluation"]
    # the data set was re-generated from the record, and the whole held-out split evaluated
    stamp = json.loads((data / "digits_images" / "generated.json").read_text())
    assert stamp == {k: ev["dataset"][k] for k in ("generator", "generator_version", "seed", "train_copies",
                                                   "test_copies")}
    assert j["samples"] == len(j["predictions"]) == ev["n_test"] == 718
    assert abs(j["accuracy"] - ev["test_accuracy"]) <= FLIPS / 718 + 1e-9
    assert (tmp_path / "build" / "cifar_digits_resformer.nir").is_file()
    # Lava float (the fused lowering; both run in tests/lava) against PyTorch on the same sample
    assert [(rep["target_options"]["dssa"], rep["samples"], rep["passed"]) for rep in j["lava"]] == \
        [("fused", 1, True)]
    fp = j["fixed_point"]
    lad = fp["ladder"]
    assert [(rung["target"], rung["samples"]) for rung in lad["rungs"]] == \
        [("torch", 12), ("lava-cpu", 1), ("loihi2-sim", 1), ("loihi2-emu", 12)]
    assert lad["emulator_bit_exact_vs_lava"] is True
    assert fp["mapping"]["totals"]["neuro_cores"] > 0 and fp["mapping"]["violations"] == []
    assert fp["energy"]["fixed"]["sops"] > 0
    assert (tmp_path / "build" / "report" / "report.html").is_file()
    assert "held-out data: CIFAR-10" in r.output and "cifar10" in r.output
