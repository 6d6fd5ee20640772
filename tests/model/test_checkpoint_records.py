"""Checkpoint integrity (zip CRC of every record, regular files only) and the defensive reading
of training/evaluation records that `info` shows (model/checkpoint.py, model/summary.py)."""
import json
import math
import os
import struct
import threading
import zipfile

import pytest
import torch
from click.testing import CliRunner

from resformer_deploy.cli.main import main
from resformer_deploy.errors import CheckpointError
from resformer_deploy.model.checkpoint import load_checkpoint, read_checkpoint_file, record
from resformer_deploy.model.summary import checkpoint_summary, plain, recorded_accuracy
from tests.conftest import DIGITS_CKPT, REPO

SHIPPED = {"cifar": REPO / "examples" / "cifar_digits" / "cifar_digits_resformer.pt",
           "dvs": REPO / "examples" / "dvs_digits" / "dvs_digits_resformer.pt",
           "digits": DIGITS_CKPT}


def _raw(path=DIGITS_CKPT):
    return torch.load(str(path), map_location="cpu", weights_only=True)


def _flip(src, dst, pick):
    """Copy ``src`` with one bit flipped inside the data of the first record ``pick`` accepts;
    returns the record's name. Offsets from the zip's own headers (APPNOTE 4.3.7: 30-byte local
    header, then the name and the extra field)."""
    raw = bytearray(open(src, "rb").read())
    with zipfile.ZipFile(src) as z:
        info = next(i for i in z.infolist() if pick(i))
    h = info.header_offset
    name_len, extra_len = struct.unpack("<HH", raw[h + 26:h + 30])
    raw[h + 30 + name_len + extra_len + info.file_size // 2] ^= 0x10
    open(dst, "wb").write(raw)
    return info.filename


@pytest.mark.parametrize("which", ["tensor", "pickle"])
def test_flipped_byte_in_any_record_is_refused(tmp_path, which):
    pick = (lambda i: "/data/" in i.filename and i.file_size > 256) if which == "tensor" else \
        (lambda i: i.filename.endswith("data.pkl"))
    bad = tmp_path / "flip.pt"
    name = _flip(DIGITS_CKPT, bad, pick)
    with zipfile.ZipFile(bad) as z:
        assert z.testzip() == name  # the independent reference: zipfile's own CRC test names it
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(bad)
    msg = str(e.value)
    assert "\n" not in msg and str(bad) in msg and f"record '{name}'" in msg and "CRC-32" in msg


def test_intact_checkpoint_passes_the_check():
    with zipfile.ZipFile(DIGITS_CKPT) as z:
        assert z.testzip() is None
    sd = read_checkpoint_file(DIGITS_CKPT)["model"]
    assert all(torch.equal(sd[k], v) for k, v in _raw()["model"].items())


def _in_thread(fn, seconds=20):
    out = {}

    def run():
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - handed to the test
            out["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "reading the checkpoint blocked"
    return out.get("error")


def test_fifo_is_not_a_regular_file_and_never_blocks(tmp_path):
    fifo = tmp_path / "ck.pt"
    os.mkfifo(fifo)
    e = _in_thread(lambda: read_checkpoint_file(fifo))
    assert isinstance(e, CheckpointError)
    assert str(e) == f"checkpoint {fifo} is not a regular file (it is a FIFO)"


def test_dev_zero_is_not_a_regular_file():
    e = _in_thread(lambda: read_checkpoint_file("/dev/zero"))
    assert isinstance(e, CheckpointError)
    assert str(e) == "checkpoint /dev/zero is not a regular file (it is a character device)"


# --- records -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_info_on_every_shipped_checkpoint(name):
    """The two record layouts the example trainers write (n_test under 'split' or at the top)."""
    ev = _raw(SHIPPED[name])["resformer_deploy"]["evaluation"]
    n = ev["n_test"] if "n_test" in ev else ev["split"]["n_test"]
    data = ev["dataset"] if isinstance(ev["dataset"], str) else ev["dataset"]["generator"]
    r = CliRunner().invoke(main, ["info", str(SHIPPED[name])])
    assert r.exit_code == 0, (r.output, r.exception)
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("recorded eval"))
    assert line.split(None, 2)[2] == f"{100 * ev['test_accuracy']:.2f}% on {n:,} held-out samples ({data})"


def _crafted(tmp_path, edit, name="c.pt"):
    obj = _raw()
    edit(obj)
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _info(path, *extra):
    r = CliRunner().invoke(main, ["info", str(path), *extra])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output
    return r


@pytest.mark.parametrize("value, shown", [("high", None), (float("nan"), None), ([1, 2], None),
                                          (torch.tensor(97.5), 97.5), (True, None), (12, 12.0)])
def test_max_acc1_of_any_type(tmp_path, value, shown):
    path = _crafted(tmp_path, lambda o: o.__setitem__("max_acc1", value))
    assert load_checkpoint(path).meta.get("max_acc1") == shown
    r = _info(path)
    assert r.exit_code == 0
    training = next(ln for ln in r.stdout.splitlines() if ln.startswith("training"))
    assert training.split(None, 1)[1] == "epoch 40" + ("" if shown is None else f", max_acc1 {shown:.2f}")


@pytest.mark.parametrize("evaluation", [{"test_accuracy": "x", "split": 5}, {"test_accuracy": 1.5},
                                        {"test_accuracy": float("nan")}, "text", [0.9], {"split": {"n_test": 3}}])
def test_unusable_evaluation_record_is_noted_not_shown(tmp_path, evaluation):
    path = _crafted(tmp_path, lambda o: o["resformer_deploy"].__setitem__("evaluation", evaluation))
    r = _info(path)
    assert r.exit_code == 0
    assert "recorded eval" not in r.stdout
    noted = "note: the checkpoint's evaluation record has no accuracy in [0, 1]: not shown"
    assert (noted in r.stderr) == isinstance(evaluation, dict)  # a non-mapping is no record at all


def test_partial_evaluation_record_shows_what_it_states(tmp_path):
    path = _crafted(tmp_path, lambda o: o["resformer_deploy"].__setitem__(
        "evaluation", {"test_accuracy": 0.5, "n_test": -3, "dataset": {"path": "/data/x\nline"}}))
    r = _info(path)
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("recorded eval"))
    assert line.split(None, 2)[2] == "50.00% (/data/x line)"


def test_odd_training_record_in_json(tmp_path):
    deep = {}
    node = deep
    for _ in range(20):
        node["d"] = {}
        node = node["d"]
    record_ = {"big": torch.zeros(1000), "small": torch.arange(3), "cplx": torch.ones(2, dtype=torch.complex64),
               "nan": float("nan"), "deep": deep, 7: "int key"}
    path = _crafted(tmp_path, lambda o: o["resformer_deploy"].__setitem__("training", record_))
    r = _info(path, "--json")
    assert r.exit_code == 0
    t = json.loads(r.stdout)["training_record"]
    assert t["big"] == "<tensor (1000,) float32>" and t["small"] == [0, 1, 2]
    assert t["cplx"] == "<tensor (2,) complex64>"
    assert t["nan"] is None and t["7"] == "int key"
    depth, node = 0, t["deep"]
    while isinstance(node, dict):
        node, depth = node["d"], depth + 1
    assert node == "<dict nested deeper than 8>" and depth == 7  # the record is level 1, "deep" level 2


@pytest.mark.parametrize("training", [[1, 2], "text", None])
def test_training_record_that_is_no_mapping(tmp_path, training):
    path = _crafted(tmp_path, lambda o: o["resformer_deploy"].__setitem__("training", training))
    assert record(load_checkpoint(path).meta, "training") is None
    assert json.loads(_info(path, "--json").stdout)["training_record"] is None


@pytest.mark.parametrize("config, fragment", [
    ("abc", "stored config is invalid (a str, not a mapping of fields)"),
    ({"T": 1e9}, "stored config is invalid (T = 1000000000.0 is not an integer)"),
    ({"planes": "ab"}, "stored config is invalid")])
def test_invalid_stored_config_is_one_line(tmp_path, config, fragment):
    def edit(o):
        if isinstance(config, dict):
            o["resformer_deploy"]["config"].update(config)
        else:
            o["resformer_deploy"]["config"] = config
    path = _crafted(tmp_path, edit)
    r = _info(path)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {path}: "), r.stderr
    assert fragment in lines[0]


def test_recorded_accuracy_and_plain_directly():
    assert recorded_accuracy({"test_accuracy": 1, "split": {"n_test": 7}, "dataset": "d"}) == \
        {"test_accuracy": 1.0, "n_test": 7, "dataset": "d"}
    assert recorded_accuracy({"test_accuracy": True}) is None
    assert plain((1, 2.5, math.inf)) == [1, 2.5, None]
    s = checkpoint_summary(load_checkpoint(DIGITS_CKPT))
    ev = _raw()["resformer_deploy"]["evaluation"]
    assert s["recorded_evaluation"] == {"test_accuracy": ev["test_accuracy"], "n_test": ev["split"]["n_test"],
                                        "dataset": ev["dataset"]}


def test_evaluation_record_keeps_fields_of_the_expected_types():
    from resformer_deploy.model.checkpoint import META_KEY, evaluation_record
    ev = {"split": {"n_test": 3}, "dataset": "d", "preset": "x", "test_label_sha256": 5, "n_test": True,
          "test_accuracy": 0.5, "extra": 1}
    assert evaluation_record({META_KEY: {"evaluation": ev}}) == {"split": {"n_test": 3}, "dataset": "d",
                                                                 "test_accuracy": 0.5}
    assert evaluation_record({META_KEY: {"evaluation": "text"}}) == {} == evaluation_record({})
