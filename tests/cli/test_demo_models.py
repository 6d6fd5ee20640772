"""`demo --model cifar`: the shipped 32x32 model through the whole chain on its own re-generated
held-out split (PyTorch, NIR, Lava float with both DSSA lowerings, Loihi 2 fixed point with
the emulator, core plan, report), checked against the checkpoint's training record."""
import json
from pathlib import Path

from click.testing import CliRunner

from resformer_deploy.cli.main import main
from resformer_deploy.data.generators.recorded import STAMP
from tests.support import shared_passes

RECORD = Path(__file__).resolve().parents[2] / "examples" / "cifar_digits" / "cifar_digits_resformer.json"
FLIPS = 2  # held-out predictions that float32 rounding on another CPU may change (tests/model)


def test_demo_cifar_runs_the_chain_on_its_generated_split(tmp_path, monkeypatch):
    import resformer_deploy.training.loop as loop
    # the PyTorch pass over the split is shared with tests/model's by-hand accuracy test when the
    # reader's inputs are bit for bit the ones computed there (tests/support/shared_passes.py)
    monkeypatch.setattr(loop, "predict", shared_passes.sharing_predict(loop.predict))
    out, data = tmp_path / "demo.json", tmp_path / "data"
    r = CliRunner().invoke(main, ["demo", "--model", "cifar", "--out-dir", str(tmp_path / "build"), "--data-dir",
                                  str(data), "--json-out", str(out), "--lava-samples", "1", "--dssa", "fused",
                                  "--eval-samples", "12", "--calib-samples", "16", "--no-whole-split"])
    assert r.exit_code == 0, r.stderr
    j = json.loads(out.read_text())
    ev = json.loads(RECORD.read_text())["evaluation"]
    # the data set was re-generated from the record, and the whole held-out split evaluated
    stamp = json.loads((data / "digits_images" / "generated.json").read_text())
    assert {k: v for k, v in stamp.items() if k != "files"} == {
        k: ev["dataset"][k] for k in ("generator", "generator_version", "seed", "train_copies", "test_copies")}
    assert stamp["files"] == sorted(str(p.relative_to(data / "digits_images"))
                                    for p in (data / "digits_images").rglob("*") if p.is_file() and p.name != STAMP)
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
    assert "whole_split" not in fp  # --no-whole-split (the streamed path: the test below)


def test_whole_split_streams_every_sample_through_the_emulator(tmp_path, monkeypatch):
    """demo's whole-split rung on a small generated set (20 held-out images): every sample
    evaluated, PyTorch's accuracy as computed here, the emulator beside it; it runs the drift
    ladder's quantized network as it is (issue 27: no second quantization)."""
    import torch
    from exporters.nir_io import read_nir, write_nir
    from exporters.torch_to_nir import export_model
    from resformer_deploy.analysis.data_inputs import DataArgs
    from resformer_deploy.cli.data import open_data_args
    from resformer_deploy.api.demo import DemoSplit, whole_split
    from resformer_deploy.data.generators import digits_images
    from resformer_deploy.flows import fixed_point, prepare
    from resformer_deploy.model.checkpoint import load_checkpoint
    from resformer_deploy.model.precision import model_in_dtype

    digits_images.build(tmp_path, limit=20)
    ck = load_checkpoint(RECORD.with_suffix(".pt"))
    md, cal = open_data_args(DataArgs(data=str(tmp_path), calib_data=str(tmp_path)), ck.config, ck.variant, 16, True,
                             out=lambda m: None)
    x, y, _ = md.take(20, "test")
    with torch.no_grad():
        scores = ck.model(x).mean(0)
    torch_acc = int((scores.argmax(-1) == y).sum()) / len(y)
    calls = []
    quantize = fixed_point.quantize
    monkeypatch.setattr(fixed_point, "quantize", lambda *a, **k: calls.append(1) or quantize(*a, **k))
    # the ladder's network: its fixed-point rung's flow on the file read back, the split's calibration
    with model_in_dtype(ck.model, torch.float64) as m:
        write_nir(export_model(m.eval(), "float64"), tmp_path / "m.nir")
    ladder_qn = prepare("loihi2-emu", read_nir(tmp_path / "m.nir"), samples=x[:1].double(), T=ck.config.T,
                        dssa="fused", calib_samples=16, calibration=cal)["quantized_net"]
    assert len(calls) == 1
    w = whole_split(ck, str(RECORD.with_suffix(".pt")), DemoSplit(x, y, md.describe(), cal, True, md), 16, 8,
                    scores, ladder_qn)
    assert len(calls) == 1  # the ladder's network run as it is: quantized once
    assert w.samples == 20 and w.target == "loihi2-emu"  # chosen by capability: the fixed-point rung's
    assert w.torch_top1 == torch_acc  # the scores computed here are the comparison's PyTorch side
    assert w.agreement_with_torch >= 0.85 and abs(w.top1 - w.torch_top1) <= 0.15


def test_demo_refuses_a_ladder_that_cannot_fit_before_any_work(tmp_path, monkeypatch):
    import resformer_deploy.training.loop as loop
    from resformer_deploy.util.memory_budget import ENV
    monkeypatch.setattr(loop, "predict", lambda *a, **k: (_ for _ in ()).throw(AssertionError("PyTorch ran")))
    monkeypatch.setenv(ENV, str(4_000_000))  # the digits ladder's emulator rung needs more
    r = CliRunner().invoke(main, ["demo", "--out-dir", str(tmp_path / "build"), "--json-out", str(tmp_path / "d.json")])
    assert r.exit_code == 2, r.output
    err = r.stderr.splitlines()[-1]  # every rung that does not fit, in one line
    assert err.startswith("error: drift ladder: 3 rung(s) do not fit the memory budget 3.8 MiB: lava-cpu on 20 "
                          "samples needs about"), err
    assert "; loihi2-sim on 20 samples needs about" in err and "; loihi2-emu on 359 samples needs about" in err
    assert not (tmp_path / "d.json").exists()
