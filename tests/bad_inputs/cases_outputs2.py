"""Issue 24, outputs and integrity: no output is, or lies inside, an input (a data set's root and
every file in it, --calib-data, the checkpoint, a Ray run's --out-dir); a report directory is
replaced only if it holds nothing but regular files of the report's names; a damaged zip record,
a FIFO or a device as checkpoint, a bad stored config, a bad memory budget, a graph cycle and
sizes that cannot fit are each one line naming the real cause; a FIFO or device as NIR file is
refused before it is opened.

Each case is refused before any output is written (the catalogue checks the tree is unchanged).
"""
import os
import struct
import zipfile

import numpy as np
import torch

from tests.bad_inputs import Case, args
from tests.conftest import DIGITS_CKPT, REPO
from tests.support.datasets import cifar10, image_folder, npz

D = str(DIGITS_CKPT)
CIFAR_CKPT = REPO / "examples" / "cifar_digits" / "cifar_digits_resformer.pt"
BUDGET = "RESFORMER_DEPLOY_MEMORY_BUDGET"
INSIDE = "lies inside the input"
NOT_OWNED = "not a file this toolchain wrote"


def _imgs(tmp):
    return image_folder(tmp, n_per_class=1, classes=2, sizes=((8, 8),), gray=True)


def _first_image(root):
    cls = os.path.join(root, sorted(os.listdir(root))[0])
    return os.path.join(cls, sorted(os.listdir(cls))[0])


def _npz(tmp):
    return npz(tmp, (1, 8, 8), 16, name="d.npz")


# --- outputs inside input trees (defects 5 and 6) --------------------------------------------------

def _json_is_image(tmp):
    root = _imgs(tmp)
    return ["evaluate", D, "--data", root, "--json-out", _first_image(root)]


def _json_is_cifar_test_batch(tmp):
    root = cifar10(tmp, n=4, n_train_batches=1)
    return ["evaluate", D, "--data", root, "--json-out", os.path.join(root, "cifar-10-batches-py", "test_batch")]


def _json_new_in_data_root(tmp):
    root = _imgs(tmp)
    return ["evaluate", D, "--data", root, "--json-out", os.path.join(root, "results.json")]


def _json_via_symlink_into_data(tmp):
    root = _imgs(tmp)
    os.symlink(os.path.join(root, sorted(os.listdir(root))[0]), tmp / "cls")
    return ["evaluate", D, "--data", root, "--json-out", tmp / "cls" / "x.json"]


def _json_in_data_named_via_symlink(tmp):
    root = _imgs(tmp)
    os.symlink(root, tmp / "view")
    return ["evaluate", D, "--data", tmp / "view", "--json-out", os.path.join(root, "x.json")]


def _linked(tmp):
    """A data set whose class 'apple' has an image that is a symlink to a file outside the root,
    and a class 'kiwi' that is a symlink to a directory outside it (the readers follow both)."""
    root = _imgs(tmp)
    (tmp / "ext").mkdir()
    img = _first_image(root)
    os.replace(img, tmp / "ext" / "real.png")
    os.symlink(tmp / "ext" / "real.png", img)
    os.rename(os.path.join(root, "zebra"), tmp / "ext" / "zebra")
    os.symlink(tmp / "ext" / "zebra", os.path.join(root, "kiwi"))
    return root


def _json_is_linked_image(tmp):
    return ["evaluate", D, "--data", _linked(tmp), "--json-out", tmp / "ext" / "real.png"]


def _json_inside_linked_class(tmp):
    return ["evaluate", D, "--data", _linked(tmp), "--json-out", tmp / "ext" / "zebra" / "x.json"]


def _json_inside_calib_data(tmp):
    root = _imgs(tmp)
    return ["evaluate", D, "--data", _npz(tmp), "--calib-data", root, "--target", "loihi2-emu",
            "--json-out", os.path.join(root, "x.json")]


def _json_is_npz_data(tmp):
    p = _npz(tmp)
    return ["evaluate", D, "--data", p, "--json-out", p]


def _ray_out_dir_is_data_root(tmp):
    root = _imgs(tmp)
    return ["evaluate", D, "--data", root, "--engine", "ray", "--out-dir", root]


def _ray_out_dir_inside_data_root(tmp):
    root = _imgs(tmp)
    return ["evaluate", D, "--data", root, "--engine", "ray", "--out-dir", os.path.join(root, "runs", "1")]


def _json_is_ray_manifest(tmp):
    return ["evaluate", D, "--data", _npz(tmp), "--engine", "ray", "--out-dir", tmp / "runs",
            "--json-out", tmp / "runs" / "run.json"]


def _json_inside_ray_shards(tmp):
    return ["evaluate", D, "--data", _npz(tmp), "--engine", "ray", "--out-dir", tmp / "runs",
            "--json-out", tmp / "runs" / "shards" / "shard-00000.json"]


def _verify_json_inside_data(tmp):
    root = _imgs(tmp)
    return ["verify", D, "--data", root, "--json-out", os.path.join(root, "v.json")]


def _ops_json_inside_data(tmp):
    root = _imgs(tmp)
    return ["ops", D, "--data", root, "--json-out", _first_image(root)]


def _report_inside_data(tmp):
    root = _imgs(tmp)
    return ["report", D, "--data", root, "-o", os.path.join(root, "report")]


def _compile_inside_calib_data(tmp):
    root = _imgs(tmp)
    return ["compile", D, "--calib-data", root, "-o", os.path.join(root, "plan")]


def _tiny_nir(tmp, name="m.nir", cycle=False):
    import nir
    lif = dict(tau=np.full(4, 2e-3), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4))
    nodes = {"input": nir.Input(input_type=np.array([4])), "fc1": nir.Affine(weight=np.eye(4), bias=np.zeros(4)),
             "lif1": nir.LIF(**lif), "fc2": nir.Affine(weight=np.eye(4), bias=np.zeros(4)), "lif2": nir.LIF(**lif),
             "output": nir.Output(output_type=np.array([4]))}
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    nir.write(str(tmp / name), nir.NIRGraph(nodes=nodes, edges=edges + ([("lif2", "fc1")] if cycle else [])))
    return str(tmp / name)


def _simulate_json_inside_data(tmp):
    root = _imgs(tmp)
    return ["simulate", _tiny_nir(tmp), "--data", root, "--json-out", os.path.join(root, "s.json")]


# --- report directories: only the exact files the toolchain writes (defect 4) ---------------------

def _report_dir_holds_dir_named_report_html(tmp):
    (tmp / "out" / "report.html").mkdir(parents=True)
    (tmp / "out" / "report.html" / "thesis.txt").write_text("years of work\n")
    return ["report", D, "-o", tmp / "out"]


def _report_dir_holds_symlink_named_report_json(tmp):
    (tmp / "out").mkdir()
    (tmp / "mine.json").write_text("{}\n")
    os.symlink(tmp / "mine.json", tmp / "out" / "report.json")
    return ["report", D, "-o", tmp / "out"]


def _demo_report_holds_dir_named_report_json(tmp):
    (tmp / "build" / "report" / "report.json" / "deep").mkdir(parents=True)
    (tmp / "build" / "report" / "report.json" / "deep" / "notes.md").write_text("mine\n")
    return ["demo", "--out-dir", tmp / "build"]


# --- checkpoints: integrity and special files (defects 7 and 15) ----------------------------------

def _flipped(tmp, pick):
    """The digits checkpoint with one bit flipped inside the first record ``pick`` accepts
    (offsets from the zip's local header: 30 bytes, the name, the extra field)."""
    raw = bytearray(DIGITS_CKPT.read_bytes())
    with zipfile.ZipFile(DIGITS_CKPT) as z:
        info = next(i for i in z.infolist() if pick(i.filename) and i.file_size > 16)
    h = info.header_offset
    n, m = struct.unpack("<HH", raw[h + 26:h + 30])
    raw[h + 30 + n + m + info.file_size // 2] ^= 0x04
    (tmp / "flip.pt").write_bytes(raw)
    return str(tmp / "flip.pt"), info.filename


def _crc_tensor(tmp):
    path, _ = _flipped(tmp, lambda name: "/data/" in name)
    return ["info", path]


def _crc_pickle_export(tmp):
    path, _ = _flipped(tmp, lambda name: name.endswith("data.pkl"))
    return ["export", path, "-o", tmp / "x.nir"]


def _fifo_checkpoint(tmp):
    os.mkfifo(tmp / "ck.pt")
    return ["info", tmp / "ck.pt"]


def _fifo_nir(tmp):
    os.mkfifo(tmp / "m.nir")
    return ["inspect", tmp / "m.nir"]


def _stored(tmp, edit):
    obj = torch.load(D, map_location="cpu", weights_only=True)
    edit(obj["resformer_deploy"])
    torch.save(obj, tmp / "c.pt")
    return str(tmp / "c.pt")


def _demo_digits_split_hash_is_a_number(tmp):
    path = _stored(tmp, lambda r: r["evaluation"]["split"].__setitem__("test_index_sha256", 5))
    return ["demo", "--checkpoint", path, "--out-dir", tmp / "build"]


def _demo_cifar_dataset_is_a_string(tmp):
    obj = torch.load(str(CIFAR_CKPT), map_location="cpu", weights_only=True)
    obj["resformer_deploy"]["evaluation"]["dataset"] = "my own images"
    torch.save(obj, tmp / "c.pt")
    return ["demo", "--checkpoint", tmp / "c.pt", "--out-dir", tmp / "build"]


def _record_from_a_newer_version(tmp):
    return ["export", _stored(tmp, lambda r: r.__setitem__("format", 3)), "-o", tmp / "x.nir"]


def _record_key_of_wrong_type(tmp):
    return ["info", _stored(tmp, lambda r: r["evaluation"].__setitem__("test_accuracy", "98%"))]


def _stored_config_string(tmp):
    return ["info", _stored(tmp, lambda r: r.__setitem__("config", "abc"))]


def _stored_T_float(tmp):
    return ["info", _stored(tmp, lambda r: r["config"].__setitem__("T", 1e9))]


def _stored_T_huge(tmp):
    return ["evaluate", _stored(tmp, lambda r: r["config"].__setitem__("T", 10 ** 9)), "--data", _npz(tmp)]


def _batch_huge_limit_16(tmp):
    return ["evaluate", D, "--data", _npz(tmp), "--batch-size", "1000000000", "--limit", "16"]


def _cycle(tmp):
    return ["inspect", _tiny_nir(tmp, cycle=True)]


def _cycle_simulate(tmp):
    return ["simulate", _tiny_nir(tmp, cycle=True), "--json-out", tmp / "out" / "s.json"]


BACK_EDGE = "edge lif2 -> fc1 closes the cycle fc1 -> lif1 -> fc2 -> lif2 -> fc1"

CASES = [
    Case("evaluate_json_out_is_image_of_data_set", _json_is_image, ["images/apple/000001.png", INSIDE]),
    Case("evaluate_json_out_is_cifar_test_batch", _json_is_cifar_test_batch, ["test_batch", INSIDE, "cifar10"]),
    Case("evaluate_json_out_new_file_in_data_root", _json_new_in_data_root, ["results.json", INSIDE]),
    Case("evaluate_json_out_via_symlink_into_data", _json_via_symlink_into_data, ["cls/x.json", INSIDE]),
    Case("evaluate_json_out_in_data_named_via_symlink", _json_in_data_named_via_symlink, ["x.json", INSIDE, "view"]),
    Case("evaluate_json_out_is_image_linked_from_data", _json_is_linked_image,
         ["ext/real.png", "the input", "links to it"]),
    Case("evaluate_json_out_inside_class_linked_from_data", _json_inside_linked_class,
         ["zebra/x.json", "which the input", "links to"]),
    Case("evaluate_json_out_inside_calib_data", _json_inside_calib_data, ["x.json", INSIDE]),
    Case("evaluate_json_out_is_npz_data", _json_is_npz_data, ["d.npz", "it is the input"]),
    Case("evaluate_ray_out_dir_is_data_root", _ray_out_dir_is_data_root, ["images", "it is the input"]),
    Case("evaluate_ray_out_dir_inside_data_root", _ray_out_dir_inside_data_root, ["runs/1", INSIDE]),
    Case("evaluate_json_out_is_ray_manifest", _json_is_ray_manifest, ["runs/run.json", "it is the input"]),
    Case("evaluate_json_out_inside_ray_shards", _json_inside_ray_shards, ["shard-00000.json", INSIDE, "runs/shards"]),
    Case("verify_json_out_inside_data", _verify_json_inside_data, ["v.json", INSIDE]),
    Case("ops_json_out_is_image_of_data_set", _ops_json_inside_data, ["images/apple/000001.png", INSIDE]),
    Case("report_out_dir_inside_data", _report_inside_data, ["report", INSIDE]),
    Case("compile_out_dir_inside_calib_data", _compile_inside_calib_data, ["plan", INSIDE]),
    Case("simulate_json_out_inside_data", _simulate_json_inside_data, ["s.json", INSIDE]),
    Case("report_dir_holds_directory_named_report_html", _report_dir_holds_dir_named_report_html,
         ["out/report.html is a directory", NOT_OWNED]),
    Case("report_dir_holds_symlink_named_report_json", _report_dir_holds_symlink_named_report_json,
         ["out/report.json is a symbolic link", NOT_OWNED]),
    Case("demo_report_dir_holds_directory_named_report_json", _demo_report_holds_dir_named_report_json,
         ["report/report.json is a directory", NOT_OWNED]),
    Case("checkpoint_crc_mismatch_in_tensor_record", _crc_tensor, ["flip.pt", "record '", "/data/", "CRC-32"]),
    Case("checkpoint_crc_mismatch_in_pickle_record", _crc_pickle_export, ["flip.pt", "data.pkl'", "CRC-32"]),
    Case("checkpoint_is_fifo", _fifo_checkpoint, ["ck.pt is not a regular file (it is a FIFO)"]),
    Case("checkpoint_is_dev_zero", args("info", "/dev/zero"),
         ["/dev/zero is not a regular file (it is a character device)"]),
    Case("nir_file_is_fifo", _fifo_nir, ["NIR file", "m.nir is not a regular file"]),
    Case("nir_file_is_dev_zero", args("simulate", "/dev/zero"), ["NIR file /dev/zero is not a regular file"]),
    Case("demo_record_split_hash_is_a_number", _demo_digits_split_hash_is_a_number,
         ["c.pt", "checkpoint record 'evaluation.split' (version 1)", "key 'test_index_sha256' is an int, not text"]),
    Case("demo_record_dataset_is_a_string", _demo_cifar_dataset_is_a_string,
         ["c.pt", "3x32x32 input", "names a generated data set"]),
    Case("stored_config_is_a_string", _stored_config_string, ["c.pt", "stored config is invalid (a str"]),
    Case("checkpoint_record_from_a_newer_version", _record_from_a_newer_version,
         ["c.pt: checkpoint record 'resformer_deploy': key 'format' is 3: written by a newer resformer-deploy"]),
    Case("checkpoint_record_key_of_wrong_type", _record_key_of_wrong_type,
         ["c.pt: checkpoint record 'evaluation' (version 1): key 'test_accuracy' is a str, not a number"]),
    Case("stored_config_T_is_a_float", _stored_T_float, ["T = 1000000000.0 is not an integer"]),
    Case("stored_config_T_1e9_advice_names_T", _stored_T_huge,
         ["T=1,000,000,000 time steps", "use a smaller --T"]),
    Case("batch_size_1e9_limit_16_sized_as_16", _batch_huge_limit_16,
         ["batches of 16 samples", "use a smaller --batch-size"], env={BUDGET: "4000000"}),
    Case("memory_budget_negative", args("info", D), [f"{BUDGET}='-5' is not a valid memory budget"],
         env={BUDGET: "-5"}),
    Case("memory_budget_zero", args("info", D), [f"{BUDGET}='0' is not a valid memory budget"], env={BUDGET: "0"}),
    Case("memory_budget_nan", args("info", D), [f"{BUDGET}='nan' is not a valid memory budget"],
         env={BUDGET: "nan"}),
    Case("memory_budget_inf", args("info", D), [f"{BUDGET}='inf' is not a valid memory budget"],
         env={BUDGET: "inf"}),
    Case("nir_cycle_names_the_back_edge", _cycle, [BACK_EDGE, "(4 nodes;"]),
    Case("simulate_cycle_names_the_back_edge", _cycle_simulate, [BACK_EDGE]),
]
