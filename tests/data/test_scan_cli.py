"""`evaluate --limit` bounds the folder scan, and what a scan skipped reaches the output and the
JSON (issue 24, defect 2: two '..' links made the scan endless even with --limit 5)."""
import json
import os

import numpy as np
from click.testing import CliRunner
from PIL import Image

from resformer_deploy.analysis.data_inputs import open_data
from resformer_deploy.cli.main import main
from resformer_deploy.data import scan
from tests.conftest import DIGITS_CKPT


def linked_digits(tmp_path):
    """10 class folders of two 8x8 PNGs each, a '..' link in class 0 and a '../..' link in class 1."""
    root = tmp_path / "imgs"
    for c in range(10):
        os.makedirs(root / str(c))
        for i in range(2):
            Image.fromarray(np.full((8, 8), 25 * c, np.uint8)).save(root / str(c) / f"img{i}.png")
    os.symlink("..", root / "0" / "up")
    os.symlink("../..", root / "1" / "up2")
    return root


def test_evaluate_limit_stops_the_scan(tmp_path, tmp_path_factory, monkeypatch):
    root = linked_digits(tmp_path)
    # classes 0..2 hold 3 + 3 + 2 entries; the whole tree 22: the scan must stop at the 5th image
    monkeypatch.setattr(scan, "MAX_ENTRIES", 10)
    out = tmp_path_factory.mktemp("out") / "e.json"  # outside tmp_path, which '../..' links to
    r = CliRunner().invoke(main, ["evaluate", str(DIGITS_CKPT), "--data", str(root), "--limit", "5",
                                  "--json-out", str(out)])
    assert r.exit_code == 0, (r.output, r.stderr)
    j = json.loads(out.read_text())
    assert [p["name"] for p in j["predictions"]] == [str(root / c / f"img{i}.png")
                                                    for c, i in (("0", 0), ("0", 1), ("1", 0), ("1", 1), ("2", 0))]
    assert j["data"]["scan_skipped"] == [{"path": str(root / "0" / "up"), "reason": "symlink into the data set"},
                                         {"path": str(root / "1" / "up2"), "reason": "symlink into the data set"}]
    assert "scan stopped at --limit 5; 2 link(s) not followed" in r.output
    r = CliRunner().invoke(main, ["evaluate", str(DIGITS_CKPT), "--data", str(root)])
    assert r.exit_code == 2 and "scan stopped after 12 directory entries (more than 10)" in r.stderr


def test_whole_scan_reads_each_image_once(tmp_path, ck):
    md = open_data(str(linked_digits(tmp_path)), ck.config, ck.variant)
    assert len(md.source) == 20  # not 820: the links are not followed
    assert [s["reason"] for s in md.to_json()["scan_skipped"]] == ["symlink into the data set"] * 2
