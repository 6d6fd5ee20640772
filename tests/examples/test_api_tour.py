"""examples/api_tour.py, the notebook-style tour of resformer_deploy.api, run as a user runs it (a
subprocess); every figure it prints checked against an independent computation or the CLI."""
import json
import os
import subprocess
import sys

from click.testing import CliRunner

from resformer_deploy.cli.main import main
from tests.conftest import DIGITS_CKPT, REPO

TOUR = REPO / "examples" / "api_tour.py"


def _figures(stdout: str) -> dict:
    return dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)


def test_the_tour_runs_and_prints_true_figures(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, str(TOUR), str(tmp_path / "out")], capture_output=True, text=True,
                       timeout=600, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    f = _figures(p.stdout)
    assert f["model"] == "digits, T=4, 10 classes"
    # verify on the reference target: the CLI's verdicts and mismatch counts
    r = CliRunner().invoke(main, ["verify", str(DIGITS_CKPT), "--target", "reference", "--samples", "8",
                                  "--precision", "float64", "--json-out", str(tmp_path / "verify.json")])
    assert r.exit_code == 0, r.output
    reports = json.loads((tmp_path / "verify.json").read_text())["reports"]
    assert f["verify reference verdicts"] == ",".join(rep["verdict"] for rep in reports) == "exact"
    assert int(f["verify reference mismatches"]) == sum(rep["total_mismatches"] for rep in reports) == 0
    # verify fixed point: the fixed-point rung of the same ladder, from the CLI
    r = CliRunner().invoke(main, ["drift", str(DIGITS_CKPT), "--lava-samples", "0", "--eval-samples", "64",
                                  "--json-out", str(tmp_path / "drift.json")])
    assert r.exit_code == 0, r.output
    lad = json.loads((tmp_path / "drift.json").read_text())["ladders"][0]
    fixed = lad["rungs"][-1]
    assert (f["verify passed"], int(f["verify samples"])) == ("True", 64)
    assert float(f["verify fixed-point accuracy"]) == round(fixed["accuracy"], 6)
    assert float(f["verify accuracy drop pp"]) == round(lad["accuracy_drop_pp"], 6)
    # evaluate: top-1 of the CLI's JSON, and the worst class from its per-class counts
    r = CliRunner().invoke(main, ["evaluate", str(DIGITS_CKPT), "--data", "digits", "--json-out",
                                  str(tmp_path / "ev.json")])
    assert r.exit_code == 0, r.output
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert int(f["evaluate samples"]) == ev["samples"] == 359
    assert float(f["evaluate top1"]) == round(ev["top1"], 6)
    worst = min(ev["per_class"], key=lambda c: c["correct"] / c["samples"])
    assert f["evaluate worst class"] == (f"{worst['class']} ({worst['correct'] / worst['samples']:.6f} of "
                                         f"{worst['samples']})")
    # compile: the CLI's plan
    r = CliRunner().invoke(main, ["compile", str(DIGITS_CKPT), "-o", str(tmp_path / "plan"), "--json"])
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    assert int(f["compile neuro cores"]) == plan["totals"]["neuro_cores"]
    assert int(f["compile violations"]) == len(plan["violations"]) == 0
    # deploy: the artifact written where asked, as the CLI reads it back
    art = tmp_path / "out" / "digits.h5"
    assert f["deploy artifact"] == str(art) and art.is_file()
    r = CliRunner().invoke(main, ["deploy", "--artifact", str(art)])
    assert r.exit_code == 0, r.output
    assert f" {f['deploy layer groups']} layer groups ({f['deploy netx layers']} in netx schema)" in r.stdout
    assert f["deploy calibrated on"] in r.stdout
