"""Outputs against input trees and report-directory ownership (resformer_deploy/util/outputs.py):
no output is an input or lies inside an input directory (a data set's root), and a file set
replaces a directory only when it holds nothing but regular files of the set's names."""
import os
import shutil
import subprocess
import sys

import pytest

from resformer_deploy.util import outputs
from resformer_deploy.util.outputs import OutputError, check_outputs, write_file_set
from tests.conftest import REPO

INSIDE = "lies inside the input"


def _data(tmp):
    """A data-set tree: root/<class>/<file> and a file at the root (like CIFAR's test_batch)."""
    root = tmp / "imgs"
    for c in ("0", "1"):
        (root / c).mkdir(parents=True)
        (root / c / "img0.png").write_bytes(b"png")
    (root / "test_batch").write_bytes(b"cifar")
    return root


def _refused(fragments, **kw):
    with pytest.raises(OutputError) as e:
        check_outputs(**kw)
    msg = str(e.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


@pytest.mark.parametrize("rel", ["0/img0.png", "test_batch", "new.json", "0/new/deep/x.json", "0/../1/img0.png"])
def test_file_in_input_tree_is_refused(tmp_path, rel):
    root = _data(tmp_path)
    out = f"{root}/{rel}"
    _refused([out, INSIDE, str(root)], inputs=[str(root)], files=[out])
    assert (root / "0" / "img0.png").read_bytes() == b"png"


def test_tree_reached_through_symlinks_is_refused(tmp_path):
    root = _data(tmp_path)
    os.symlink(root, tmp_path / "view")  # the input named through a link, the output through the real name
    _refused([INSIDE], inputs=[str(tmp_path / "view")], files=[str(root / "1" / "x.json")])
    os.symlink(root / "0", tmp_path / "cls")  # the output named through a link into the tree
    _refused([INSIDE], inputs=[str(root)], files=[str(tmp_path / "cls" / "x.json")])


def test_sibling_with_the_same_prefix_is_allowed(tmp_path):
    root = _data(tmp_path)
    (tmp_path / "imgs2").mkdir()
    check_outputs(inputs=[str(root)], files=[str(tmp_path / "imgs2" / "x.json"), str(tmp_path / "imgs.json")],
                  dirs=[str(tmp_path / "out")])


@pytest.mark.parametrize("rel", ["", "0", "shards", "0/../new"])
def test_directory_output_in_input_tree_is_refused(tmp_path, rel):
    """A Ray run's --out-dir (or compile -o) that is the data root or below it."""
    root = _data(tmp_path)
    out = str(root / rel) if rel else str(root)
    msg = _refused([out], inputs=[str(root)], dirs=[out])
    assert ("it is the input" in msg) if not rel else (INSIDE in msg)
    assert not (root / "shards").exists() and not (root / "new").exists()


def test_directory_holding_the_input_tree_is_allowed_for_plain_dirs(tmp_path):
    root = _data(tmp_path)
    check_outputs(inputs=[str(root)], dirs=[str(tmp_path)])  # files are written beside the data set


def test_file_set_inside_or_around_an_input_tree_is_refused(tmp_path):
    root = _data(tmp_path)
    _refused([INSIDE], inputs=[str(root)], file_sets={str(root / "report"): ("report.json",)})
    _refused(["contains the input"], inputs=[str(root / "0")], file_sets={str(root): ("report.json",)})


def test_input_directory_not_yet_created_is_a_tree_too(tmp_path):
    """A Ray run's shard directory is read on --resume; before its first shard it does not exist."""
    shards = tmp_path / "runs" / "shards"
    _refused([INSIDE, str(shards)], inputs=[str(shards)], files=[str(shards / "shard-00000.json")])
    check_outputs(inputs=[str(shards)], files=[str(tmp_path / "runs" / "result.json")])


def _linked_data(tmp):
    """imgs/0/link.png -> ext/real.png and imgs/1 -> ext/cls: both outside the root, both read."""
    root = _data(tmp)
    (tmp / "ext" / "cls").mkdir(parents=True)
    (tmp / "ext" / "real.png").write_bytes(b"png")
    os.symlink(tmp / "ext" / "real.png", root / "0" / "link.png")
    shutil.rmtree(root / "1")
    os.symlink(tmp / "ext" / "cls", root / "1")
    return root


def test_file_a_symlink_in_the_tree_leads_to_is_refused(tmp_path):
    root = _linked_data(tmp_path)
    out = str(tmp_path / "ext" / "real.png")
    _refused([out, f"the input {root} links to it"], inputs=[str(root)], files=[out])
    _refused([f"which the input {root} links to"], inputs=[str(root)],
             files=[str(tmp_path / "ext" / "cls" / "new.json")], dirs=[])
    _refused([f"which the input {root} links to"], inputs=[str(root)], dirs=[str(tmp_path / "ext" / "cls" / "o")])
    check_outputs(inputs=[str(root)], files=[str(tmp_path / "ext" / "other.json")])  # not linked: allowed


def test_link_walk_is_bounded_and_skipped_without_outputs(tmp_path, monkeypatch):
    root = _linked_data(tmp_path)
    monkeypatch.setattr(outputs, "MAX_WALK_ENTRIES", 1)  # stops before the links: only the root is checked
    check_outputs(inputs=[str(root)], files=[str(tmp_path / "ext" / "real.png")])
    monkeypatch.setattr(outputs, "_linked_inputs", lambda tree: pytest.fail("walked without an output"))
    check_outputs(inputs=[str(root)], files=[None], dirs=[None])


def test_input_file_is_still_refused_as_output(tmp_path):
    root = _data(tmp_path)
    npz = tmp_path / "d.npz"
    npz.write_bytes(b"npz")
    _refused(["it is the input", "d.npz"], inputs=[str(npz), str(root)], files=[str(npz)])


def _unshare_ok():
    try:
        return shutil.which("unshare") and subprocess.run(["unshare", "-m", "true"], capture_output=True,
                                                          timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _unshare_ok(), reason="needs a private mount namespace (unshare -m)")
def test_tree_reached_through_a_bind_mount_is_refused(tmp_path):
    """Names differ (no symlink to resolve): only the (device, inode) of the ancestors shows it."""
    root = _data(tmp_path)
    (tmp_path / "view").mkdir()
    code = ("import sys; from resformer_deploy.util.outputs import OutputError, check_outputs\n"
            "try:\n    check_outputs(inputs=[sys.argv[1]], files=[sys.argv[2]])\n"
            "except OutputError as e:\n    print(e); sys.exit(3)\n")
    script = (f"mount --bind '{root}' '{tmp_path / 'view'}' && "
              f"'{sys.executable}' -c \"$CODE\" '{root}' '{tmp_path / 'view' / '0' / 'x.json'}'")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=REPO,
                       timeout=120, env=dict(os.environ, CODE=code))
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert INSIDE in r.stdout


# --- report directories: only the exact files the toolchain writes -------------------------------

SET = ("report.json", "report.html")


def test_directory_named_as_a_set_file_is_refused_and_kept(tmp_path):
    out = tmp_path / "out"
    (out / "report.html").mkdir(parents=True)
    (out / "report.html" / "thesis.txt").write_text("years of work\n")
    (out / "report.json").write_text("{}")
    _refused(["out/report.html is a directory", "not a file this toolchain wrote"], file_sets={str(out): SET})
    with pytest.raises(OutputError):
        write_file_set(out, {"report.json": b"{}", "report.html": b"<html>"}, SET)
    assert (out / "report.html" / "thesis.txt").read_text() == "years of work\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary directory left


def test_symlink_named_as_a_set_file_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "mine.html").write_text("user file\n")
    os.symlink(tmp_path / "mine.html", out / "report.html")
    _refused(["report.html is a symbolic link"], file_sets={str(out): SET})


def test_previous_set_of_regular_files_is_replaced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("old")
    check_outputs(file_sets={str(out): SET})
    write_file_set(out, {"report.json": b"new", "report.html": b"<html>"}, SET)
    assert (out / "report.json").read_bytes() == b"new" and (out / "report.html").read_bytes() == b"<html>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
