"""Re-creating a checkpoint's generated data set from its training record
(resformer_deploy.data.generators.recorded): exactly the generator's output, written atomically,
reused only when its stamp matches, and refused with one line naming what is wrong."""
import hashlib
import json

import numpy as np
import pytest

from resformer_deploy.data.generators import digits_images
from resformer_deploy.data.generators.recorded import STAMP, ensure_generated, labels_sha256, recipe
from resformer_deploy.errors import DeployError

# a small set: 1 rendering of each source digit (1,438 training + 359 held-out images, ~2 s)
RECORD = {"generator": "resformer_deploy.data.generators.digits_images", "generator_version": 1, "seed": 13,
          "train_copies": 1, "test_copies": 1, "n_train": 1438, "path": "/elsewhere", "seconds": 1.0}


def tree_digest(root):
    """SHA-256 over the relative names and bytes of every data file under root (stamp excluded)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != STAMP:
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    base = tmp_path_factory.mktemp("recorded")
    said = []
    root = ensure_generated(RECORD, base / "digits_images", "ck.pt", say=said.append)
    return base, root, said


def test_generated_set_is_the_generators_output(made, tmp_path):
    base, root, said = made
    direct = tmp_path / "direct"
    digits_images.build(direct, seed=13, train_copies=1, test_copies=1)
    assert tree_digest(root) == tree_digest(direct)
    stamp = json.loads((root / STAMP).read_text())
    assert stamp == {**{k: RECORD[k] for k in ("generator", "generator_version", "seed", "train_copies",
                                               "test_copies")},
                     "files": sorted(str(p.relative_to(direct)) for p in direct.rglob("*") if p.is_file())}
    assert sorted(p.name for p in base.iterdir()) == ["digits_images"]  # no temporary directory left
    assert any("generating" in s for s in said)


def test_matching_stamp_is_reused_and_other_seed_regenerates(made):
    base, root, _ = made
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    said = []
    ensure_generated(dict(RECORD, seconds=99.0), root, "ck.pt", say=said.append)  # timings do not matter
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == before
    assert said and "reusing" in said[0]
    digest = tree_digest(root)
    ensure_generated(dict(RECORD, seed=14), root, "ck.pt")
    assert tree_digest(root) != digest and json.loads((root / STAMP).read_text())["seed"] == 14
    ensure_generated(RECORD, root, "ck.pt")  # back to the module fixture's data for other tests
    assert tree_digest(root) == digest


def test_foreign_directory_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(DeployError, match=r"mine: exists and holds no generated.json"):
        ensure_generated(RECORD, tmp_path / "mine", "ck.pt")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize("where", ["top", "nested"])
def test_user_files_in_a_stale_generated_set_are_never_deleted(made, where):
    base, root, _ = made
    inside = root if where == "top" else next(p for p in root.iterdir() if p.is_dir())
    (inside / "thesis.txt").write_text("keep")
    digest = tree_digest(root)
    try:
        with pytest.raises(DeployError, match=r"holds another generated data set and 1 entry its generator did not "
                                              r"write \(.*thesis\.txt\): not replaced"):
            ensure_generated(dict(RECORD, seed=15), root, "ck.pt")
        assert tree_digest(root) == digest and sorted(p.name for p in base.iterdir()) == ["digits_images"]
    finally:
        (inside / "thesis.txt").unlink()


@pytest.mark.parametrize("change, message", [
    ({"generator_version": "1"}, "ck.pt: its training record's data set has non-integer "
                                 "evaluation.dataset.generator_version='1'"),
    ({"seed": 1.5}, "ck.pt: its training record's data set has non-integer evaluation.dataset.seed=1.5"),
    ({"seed": None}, "ck.pt: its training record names no generated data set (missing evaluation.dataset.seed)"),
    ({"generator": "os"}, "ck.pt: data generator 'os' is not one of resformer_deploy.data.generators.digits_images"),
    ({"generator_version": 7}, "ck.pt: trained on version 7 of resformer_deploy.data.generators.digits_images, "
                               "this package has version 1"),
])
def test_bad_records_are_refused(change, message):
    rec = {k: v for k, v in dict(RECORD, **change).items() if v is not None}
    with pytest.raises(DeployError) as e:
        recipe(rec, "ck.pt")
    assert str(e.value).startswith(message)


def test_missing_fields_are_listed_at_once():
    with pytest.raises(DeployError, match=r"missing evaluation\.dataset\.generator, evaluation\.dataset\.generator_"
                                          r"version, evaluation\.dataset\.seed"):
        recipe({"train_copies": 1, "test_copies": 1}, "ck.pt")


def test_labels_digest_is_sha256_of_int64_bytes():
    y = [3, 1, 4]
    assert labels_sha256(np.array(y, np.int32)) == hashlib.sha256(np.array(y, "<i8").tobytes()).hexdigest()
