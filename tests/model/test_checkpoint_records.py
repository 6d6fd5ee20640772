"""Checkpoint integrity (zip CRC of every record, regular files only) and the typed, versioned
training/evaluation records that `info` shows (model/checkpoint.py, model/checkpoint_records.py,
model/summary.py): a malformed, unknown or newer record is one line naming the file, record and key."""
import dataclasses
import json
import os
import struct
import threading
import zipfile

import pytest
import torch
from click.testing import CliRunner

from resformer_deploy.cli.main import main
from resformer_deploy.errors import CheckpointError
from resformer_deploy.model.checkpoint import load_checkpoint, read_checkpoint_file, record, save_checkpoint
from resformer_deploy.model.checkpoint_records import (FORMAT, DatasetRecord, EvaluationRecord, PresetRecord, SplitRecord,
                                                       to_plain)
from resformer_deploy.model.summary import RecordedEvaluation, checkpoint_summary, recorded_accuracy
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


def _refused(path, *extra):
    """`info` on ``path``: exit 2 with one line ``error: <path>: checkpoint record ...``; the line."""
    r = _info(path, *extra)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {path}: checkpoint record "), r.stderr
    return lines[0]


EVAL_V1 = "checkpoint record 'evaluation' (version 1)"


@pytest.mark.parametrize("evaluation, fragment", [
    ({"test_accuracy": "x"}, f"{EVAL_V1}: key 'test_accuracy' is a str, not a number"),
    ({"test_accuracy": 0.5, "split": 5}, f"{EVAL_V1}: key 'split' is an int, not a mapping"),
    ({"test_accuracy": 1.5}, f"{EVAL_V1}: key 'test_accuracy' = 1.5 is not an accuracy in [0, 1]"),
    ({"test_accuracy": float("nan")}, f"{EVAL_V1}: key 'test_accuracy' is nan, not a finite number"),
    ({"test_accuracy": True}, f"{EVAL_V1}: key 'test_accuracy' is a bool, not a number"),
    ({"split": {"n_test": 3}}, f"{EVAL_V1}: key 'test_accuracy' is missing"),
    ({"test_accuracy": 0.5, "n_test": -3}, f"{EVAL_V1}: key 'n_test' = -3 is not a count >= 0"),
    ({"test_accuracy": 0.5, "test_label_sha256": "abc"}, f"{EVAL_V1}: key 'test_label_sha256' = 'abc' is not a sha256"),
    ({"test_accuracy": 0.5, "dataset": 7}, f"{EVAL_V1}: key 'dataset' is an int, not text"),
    ({"test_accuracy": 0.5, "dataset": {"generator": 5}},
     "checkpoint record 'evaluation.dataset' (version 1): key 'generator' is an int, not text"),
    ({"test_accuracy": 0.5, "split": {"test_index_sha256": "abc"}},
     "checkpoint record 'evaluation.split' (version 1): key 'test_index_sha256' = 'abc' is not a sha256 hex digest"),
    ({"test_accuracy": 0.5, "preset": {"preset": ["cifar10"]}},
     "checkpoint record 'evaluation.preset' (version 1): key 'preset' is a list, not text"),
    ({"test_accuracy": 0.5, "preset": "cifar10"}, f"{EVAL_V1}: key 'preset' is a str, not a mapping"),
    ({"test_accuracy": 0.5, "seconds": torch.zeros(3)},
     f"{EVAL_V1}: key 'seconds' is a tensor of shape (3,), not a plain value"),
    ("text", "checkpoint record 'evaluation' is a str, not a mapping"),
    ([0.9], "checkpoint record 'evaluation' is a list, not a mapping")])
def test_malformed_evaluation_record_is_one_line_naming_the_key(tmp_path, evaluation, fragment):
    path = _crafted(tmp_path, lambda o: o["resformer_deploy"].__setitem__("evaluation", evaluation))
    assert fragment in _refused(path)


def test_partial_evaluation_record_shows_what_it_states(tmp_path):
    path = _crafted(tmp_path, lambda o: o["resformer_deploy"].__setitem__(
        "evaluation", {"test_accuracy": 0.5, "dataset": {"path": "/data/x\nline"}}))
    r = _info(path)
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("recorded eval"))
    assert line.split(None, 2)[2] == "50.00% (/data/x line)"


def _nested(depth):
    node = top = {}
    for _ in range(depth):
        node["d"] = {}
        node = node["d"]
    return top


@pytest.mark.parametrize("key, value, fragment", [
    ("big", torch.zeros(1000), "key 'big' is a tensor of shape (1000,), not a plain value"),
    ("nan", float("nan"), "key 'nan' is nan, not a finite number"),
    ("deep", _nested(20), "key 'deep" + ".d" * 8 + "' nests deeper than 8 levels"),  # 'deep' is level 1
    ("odd", {7: "int key"}, "key 'odd.7' is not a string key"),
    ("seed", "zero", "key 'seed' is a str, not an integer"),
    ("seconds", -1.0, "key 'seconds' = -1.0 is not a duration >= 0")])
def test_malformed_training_record_is_one_line_naming_the_key(tmp_path, key, value, fragment):
    path = _crafted(tmp_path, lambda o: o["resformer_deploy"]["training"].__setitem__(key, value))
    assert f"checkpoint record 'training' (version 1): {fragment}" in _refused(path, "--json")


@pytest.mark.parametrize("training", [[1, 2], "text"])
def test_training_record_that_is_no_mapping(tmp_path, training):
    path = _crafted(tmp_path, lambda o: o["resformer_deploy"].__setitem__("training", training))
    assert f"checkpoint record 'training' is a {type(training).__name__}, not a mapping" in _refused(path)


def test_absent_training_record_is_none(tmp_path):
    path = _crafted(tmp_path, lambda o: o["resformer_deploy"].pop("training"))
    assert load_checkpoint(path).records.training is None and record(load_checkpoint(path).meta, "training") is None
    assert json.loads(_info(path, "--json").stdout)["training_record"] is None


@pytest.mark.parametrize("edit, fragment", [
    (lambda r: r.__setitem__("format", 3), "record 'resformer_deploy': key 'format' is 3: written by a newer "
                                           "resformer-deploy (this one reads formats 1 to 2); not loaded"),
    (lambda r: r.update(format=2, training=dict(r["training"], version=2), evaluation=dict(r["evaluation"], version=3)),
     "record 'evaluation': key 'version' is 3: written by a newer resformer-deploy (this one reads versions 1 to 2)"),
    (lambda r: r.update(format=2), "record 'training': key 'version' is missing"),
    (lambda r: r.__setitem__("format", "1"), "record 'resformer_deploy': key 'format' is a str, not an integer"),
    (lambda r: r.__setitem__("format", 0), "record 'resformer_deploy': key 'format' is 0, which no resformer-deploy "
                                           "writes"),
    (lambda r: r.update(format=2, training=dict(r["training"], version=1)),
     "record 'training': key 'version' is 1, which no resformer-deploy writes in a format-2 file"),
    (lambda r: r.pop("format"), "record 'resformer_deploy': key 'format' is missing"),
    (lambda r: r.__setitem__("calibration", {}), "record 'resformer_deploy': key 'calibration' is no record this "
                                                 "package knows"),
    (lambda r: r.pop("config"), "record 'resformer_deploy': key 'config' is missing")])
def test_future_old_or_unknown_records_are_refused(tmp_path, edit, fragment):
    path = _crafted(tmp_path, lambda o: edit(o["resformer_deploy"]))
    assert fragment in _refused(path)


def test_our_entry_that_is_no_mapping(tmp_path):
    path = _crafted(tmp_path, lambda o: o.__setitem__("resformer_deploy", [1]))
    assert "checkpoint record 'resformer_deploy' is a list, not a mapping" in _refused(path)


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


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoints_are_format_1_read_as_version_1(name):
    """The shipped files predate versioned records: their layout is read as version 1, as stored."""
    raw = _raw(SHIPPED[name])["resformer_deploy"]
    recs = load_checkpoint(SHIPPED[name]).records
    assert raw["format"] == 1 and recs.format == 1 and "version" not in raw["evaluation"]
    assert recs.training.version == recs.evaluation.version == 1
    ev = raw["evaluation"]
    assert recs.evaluation.test_accuracy == ev["test_accuracy"]
    assert recs.evaluation.n_test == (ev["n_test"] if "n_test" in ev else ev["split"]["n_test"])
    assert to_plain(recs.training) == dict(raw["training"], version=1)  # nothing lost, nothing added


def test_round_trip_writes_the_current_version(tmp_path):
    ck = load_checkpoint(DIGITS_CKPT)
    old = ck.records
    path = tmp_path / "again.pt"
    save_checkpoint(path, ck.model, epoch=40, max_acc1=98.6, record={"training": old.training,
                                                                      "evaluation": old.evaluation})
    raw = torch.load(str(path), map_location="cpu", weights_only=True)["resformer_deploy"]  # plain values only
    assert raw["format"] == FORMAT == 2 and raw["training"]["version"] == raw["evaluation"]["version"] == 2
    assert raw["evaluation"]["n_test"] == old.evaluation.n_test == 359  # version 2 keeps it at the top
    new = load_checkpoint(path).records
    assert new.training == dataclasses.replace(old.training, version=2)
    assert new.evaluation == dataclasses.replace(old.evaluation, version=2)
    assert new.config == old.config
    r = _info(path)
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("recorded eval"))
    assert line.split(None, 2)[2] == f"{100 * old.evaluation.test_accuracy:.2f}% on 359 held-out samples " \
                                     f"(sklearn.datasets.load_digits)"


@pytest.mark.parametrize("record_, fragment", [
    ({"training": {"seed": "0"}}, "checkpoint record 'training' (version 2): key 'seed' is a str, not an integer"),
    ({"evaluation": {"test_accuracy": 2.0}}, "key 'test_accuracy' = 2.0 is not an accuracy in [0, 1]"),
    ({"calibration": {}}, "no checkpoint record named 'calibration'")])
def test_a_writer_cannot_write_a_bad_record(tmp_path, record_, fragment):
    path = tmp_path / "w.pt"
    with pytest.raises(CheckpointError) as e:
        save_checkpoint(path, load_checkpoint(DIGITS_CKPT).model, record=record_)
    assert fragment in str(e.value) and "\n" not in str(e.value) and not path.exists()


def test_recorded_accuracy_directly():
    ev = EvaluationRecord(version=2, test_accuracy=1.0, n_test=7, dataset=DatasetRecord.of({"generator": "g", "path": "p"}))
    assert recorded_accuracy(ev) == RecordedEvaluation(1.0, 7, "g")
    assert recorded_accuracy(None) is None
    s = checkpoint_summary(load_checkpoint(DIGITS_CKPT))
    ev = _raw()["resformer_deploy"]["evaluation"]
    assert s.recorded_evaluation == RecordedEvaluation(ev["test_accuracy"], ev["split"]["n_test"], ev["dataset"])


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_evaluation_record_types_the_fields_the_tools_read(name):
    """The data set, split and preset of every shipped record, typed; written back key for key."""
    ck = load_checkpoint(SHIPPED[name])
    raw = _raw(SHIPPED[name])["resformer_deploy"]["evaluation"]
    ev = ck.evaluation
    assert ev is ck.records.evaluation and ev.test_label_sha256 == raw.get("test_label_sha256")
    ds = raw["dataset"]  # digits: a named set; the generated sets: their recipe
    assert isinstance(ev.dataset, DatasetRecord) and ev.dataset.stored == ds
    if isinstance(ds, str):
        assert (ev.dataset.name, ev.dataset.generator, ev.dataset.recipe) == (ds, None, {})
    else:
        assert (ev.dataset.name, ev.dataset.generator, ev.dataset.path) == (None, ds["generator"], ds.get("path"))
        assert ev.dataset.recipe == ds
    if "split" in raw:
        assert isinstance(ev.split, SplitRecord) and ev.split.stored == raw["split"]
        assert (ev.split.test_index_sha256, ev.split.n_test) == (raw["split"]["test_index_sha256"],
                                                                raw["split"]["n_test"])
    else:
        assert ev.split is None
    if "preset" in raw:
        assert isinstance(ev.preset, PresetRecord) and ev.preset.preset == raw["preset"]["preset"]
    else:
        assert ev.preset is None
    # nothing lost, nothing added, nothing reordered (info --json prints it)
    plain = to_plain(ev)
    assert plain == dict(raw, version=1, n_test=ev.n_test)  # version 1 may keep n_test under split only
    assert [json.dumps(plain[k]) for k in ("dataset", "split", "preset") if k in raw] == \
        [json.dumps(raw[k]) for k in ("dataset", "split", "preset") if k in raw]


def test_a_checkpoint_without_our_records_has_no_evaluation(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(load_checkpoint(DIGITS_CKPT).model.state_dict(), path)
    assert load_checkpoint(path, variant="digits", img_size=8, T=4).evaluation is None
