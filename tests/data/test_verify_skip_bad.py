"""`verify --skip-bad` names the files it left out, as `evaluate` does (issue 24, defect 10):
one stderr warning per skipped file (up to evaluate's SKIPPED_SHOWN, then a count), and the
JSON lists them."""
import json
import os

import numpy as np
from click.testing import CliRunner
from PIL import Image

from resformer_deploy.cli.evaluate import SKIPPED_SHOWN, skipped_warnings
from resformer_deploy.cli.main import main
from tests.conftest import DIGITS_CKPT


def digit_folder(tmp_path, bad):
    """10 class folders (the digits model's), one 8x8 grayscale PNG each; files ``bad`` garbled."""
    paths = []
    for c in range(10):
        os.makedirs(tmp_path / "imgs" / str(c))
        paths.append(str(tmp_path / "imgs" / str(c) / "a.png"))
        Image.fromarray(np.full((8, 8), 25 * c, np.uint8)).save(paths[-1])
    for i in bad:
        with open(paths[i], "wb") as f:
            f.write(b"not a png")
    return str(tmp_path / "imgs"), paths


def test_verify_lists_skipped_files(tmp_path):
    root, paths = digit_folder(tmp_path, bad=(1, 2))
    out = tmp_path / "v.json"
    r = CliRunner().invoke(main, ["verify", str(DIGITS_CKPT), "--data", root, "--skip-bad", "--samples", "5",
                                  "--precision", "float64", "--json-out", str(out)])
    assert r.exit_code == 0, (r.output, r.stderr)
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning: skipped ")]
    assert len(warnings) == 2
    for w, path in zip(warnings, (paths[1], paths[2])):
        assert w.startswith(f"warning: skipped {path}: cannot decode image: ")
    j = json.loads(out.read_text())
    assert [s["name"] for s in j["skipped"]] == [paths[1], paths[2]]
    assert "3 samples of ImageFolder" in r.output  # 5 asked, 2 left out


def test_skipped_warnings_show_the_first_then_a_count():
    reasons = [f"f{i}.png: cannot decode image" for i in range(SKIPPED_SHOWN + 3)]
    lines = skipped_warnings(reasons)
    assert lines[:SKIPPED_SHOWN] == [f"warning: skipped f{i}.png: cannot decode image" for i in range(SKIPPED_SHOWN)]
    assert lines[SKIPPED_SHOWN:] == ["warning: ... 3 more skipped (listed in the JSON)"]
    assert skipped_warnings([]) == []


def test_simulate_lists_skipped_files(tmp_path):
    root, paths = digit_folder(tmp_path, bad=(0,))
    nir_path = str(tmp_path / "d.nir")
    assert CliRunner().invoke(main, ["export", str(DIGITS_CKPT), "-o", nir_path]).exit_code == 0
    r = CliRunner().invoke(main, ["simulate", nir_path, "--target", "reference", "--data", root, "--skip-bad",
                                  "--samples", "3"])
    assert r.exit_code == 0, (r.output, r.stderr)
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning: skipped ")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: skipped {paths[0]}: cannot decode image: ")
