"""Bad output destinations: refused before any work starts (resformer_deploy/outputs.py
check_outputs), one line naming the path and the problem, nothing created in the case's directory.

Every command with outputs is covered: export -o, ops/verify/simulate --json-out, report -o,
compile -o, demo --json-out/--out-dir.
"""
import os
import shutil
import socket
import stat

import pytest

from tests.bad_inputs import Case, args
from tests.conftest import DIGITS_CKPT

D = str(DIGITS_CKPT)
LONG = "n" * 300  # NAME_MAX is 255 bytes on the usual Linux file systems


def _file(tmp, name="file.txt"):
    (tmp / name).write_text("not a directory\n")
    return tmp / name


def _ckpt(tmp, rel="d.pt"):
    p = tmp / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(D, p)
    return str(p)


def _export_parent_is_file(tmp):
    _file(tmp)
    return ["export", D, "-o", tmp / "file.txt" / "x.nir"]


def _export_deep_parent_is_file(tmp):
    _file(tmp)
    return ["export", D, "-o", tmp / "file.txt" / "a" / "b" / "x.nir"]


def _export_is_input(tmp):
    return ["export", _ckpt(tmp), "-o", tmp / "d.pt"]


def _export_is_input_symlink(tmp):
    c = _ckpt(tmp)
    os.symlink("d.pt", tmp / "link.pt")
    return ["export", c, "-o", tmp / "link.pt"]


def _export_is_input_dotdot(tmp):
    c = _ckpt(tmp)
    (tmp / "sub").mkdir()
    return ["export", c, "-o", f"{tmp}/sub/../d.pt"]


def _export_is_input_hardlink(tmp):
    c = _ckpt(tmp)
    os.link(c, tmp / "hard.pt")
    return ["export", c, "-o", tmp / "hard.pt"]


def _export_symlink_loop(tmp):
    os.symlink("loop.nir", tmp / "loop.nir")
    return ["export", D, "-o", tmp / "loop.nir"]


def _export_block_device(tmp):
    if os.geteuid() != 0:
        pytest.skip("mknod of a block device needs root")
    os.mknod(tmp / "disk", 0o600 | stat.S_IFBLK, os.makedev(7, 255))  # a loop device node
    return ["export", D, "-o", tmp / "disk"]


def _export_socket(tmp):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(tmp / "sock"))
    except OSError as e:  # e.g. the socket path limit (108 bytes) on deep temp directories
        pytest.skip(f"cannot bind a unix socket: {e}")
    s.close()  # the socket file stays
    return ["export", D, "-o", tmp / "sock"]


def _ops_json_is_input(tmp):
    return ["ops", _ckpt(tmp), "--samples", "2", "--json-out", tmp / "d.pt"]


def _ops_json_parent_is_file(tmp):
    _file(tmp)
    return ["ops", D, "--samples", "2", "--json-out", tmp / "file.txt" / "ops.json"]


def _verify_json_parent_is_file(tmp):
    _file(tmp)
    return ["verify", D, "--json-out", tmp / "file.txt" / "v.json"]


def _simulate_json_is_input(tmp):
    m = _ckpt(tmp, "model.nir")  # never read: the destination check comes first
    return ["simulate", m, "--json-out", m]


def _report_parent_is_file(tmp):
    _file(tmp)
    return ["report", D, "-o", tmp / "file.txt" / "report"]


def _report_foreign_files(tmp):
    (tmp / "out").mkdir()
    (tmp / "out" / "notes.txt").write_text("mine\n")
    (tmp / "out" / "report.json").write_text("{}\n")
    return ["report", D, "-o", tmp / "out"]


def _report_contains_input(tmp):
    return ["report", _ckpt(tmp, "out/d.pt"), "-o", tmp / "out"]


def _report_contains_input_deep(tmp):
    return ["report", _ckpt(tmp, "out/models/d.pt"), "-o", tmp / "out"]


def _compile_plan_is_directory(tmp):
    (tmp / "out" / "loihi2_plan.json").mkdir(parents=True)
    return ["compile", D, "--target", "loihi2", "-o", tmp / "out"]


def _compile_parent_is_file(tmp):
    _file(tmp)
    return ["compile", D, "--target", "loihi2", "-o", tmp / "file.txt" / "out"]


def _compile_input_is_plan(tmp):
    return ["compile", _ckpt(tmp, "out/loihi2_plan.json"), "--target", "loihi2", "-o", tmp / "out"]


def _demo_json_is_checkpoint(tmp):
    c = _ckpt(tmp)
    return ["demo", "--checkpoint", c, "--json-out", c, "--out-dir", tmp / "build"]


def _demo_out_dir_parent_is_file(tmp):
    _file(tmp)
    return ["demo", "--out-dir", tmp / "file.txt" / "build"]


def _demo_nir_is_directory(tmp):
    (tmp / "build" / "digits_resformer.nir").mkdir(parents=True)
    return ["demo", "--out-dir", tmp / "build"]


def _demo_json_inside_report(tmp):
    return ["demo", "--out-dir", tmp / "build", "--json-out", tmp / "build" / "report" / "demo.json"]


def _demo_report_foreign_files(tmp):
    (tmp / "build" / "report").mkdir(parents=True)
    (tmp / "build" / "report" / "old-notes.md").write_text("mine\n")
    return ["demo", "--out-dir", tmp / "build"]


NOT_DIR = "Not a directory"
TOO_LONG = "File name too long"

CASES = [
    Case("export_output_parent_is_file", _export_parent_is_file, ["file.txt/x.nir", NOT_DIR, "file.txt is not"]),
    Case("export_output_deep_parent_is_file", _export_deep_parent_is_file, ["a/b/x.nir", NOT_DIR]),
    Case("export_output_name_too_long", args("export", D, "-o", "{tmp}/" + LONG + ".nir"), [LONG, TOO_LONG]),
    Case("export_output_dir_name_too_long", args("export", D, "-o", "{tmp}/" + LONG + "/x.nir"), [TOO_LONG]),
    Case("export_output_path_too_long", args("export", D, "-o", "{tmp}/" + "p/" * 2100 + "x.nir"),
         [TOO_LONG, "path longer than"]),
    Case("export_output_empty_name", args("export", D, "-o", ""), ["''", "No such file or directory"]),
    Case("export_output_is_input", _export_is_input, ["d.pt", "it is the input"]),
    Case("export_output_is_input_via_symlink", _export_is_input_symlink, ["link.pt", "it is the input"]),
    Case("export_output_is_input_via_dotdot", _export_is_input_dotdot, ["sub/../d.pt", "it is the input"]),
    Case("export_output_is_input_hardlink", _export_is_input_hardlink, ["hard.pt", "it is the input"]),
    Case("export_output_symlink_loop", _export_symlink_loop, ["loop.nir", "Too many levels of symbolic links"]),
    Case("export_output_block_device", _export_block_device, ["disk", "block device", "refusing"]),
    Case("export_output_socket", _export_socket, ["sock", "a socket", "refusing"]),
    Case("ops_json_out_is_input", _ops_json_is_input, ["d.pt", "it is the input"]),
    Case("ops_json_out_parent_is_file", _ops_json_parent_is_file, ["ops.json", NOT_DIR]),
    Case("verify_json_out_parent_is_file", _verify_json_parent_is_file, ["v.json", NOT_DIR]),
    Case("simulate_json_out_is_input", _simulate_json_is_input, ["model.nir", "it is the input"]),
    Case("report_out_dir_parent_is_file", _report_parent_is_file, ["file.txt/report", NOT_DIR]),
    Case("report_out_dir_name_too_long", args("report", D, "-o", "{tmp}/" + LONG), [TOO_LONG]),
    Case("report_out_dir_has_foreign_files", _report_foreign_files, ["out", "notes.txt", "not part of"]),
    Case("report_out_dir_contains_input", _report_contains_input, ["out", "contains the input", "d.pt"]),
    Case("report_out_dir_contains_input_deep", _report_contains_input_deep, ["contains the input", "models/d.pt"]),
    Case("compile_plan_is_directory", _compile_plan_is_directory, ["loihi2_plan.json", "Is a directory"]),
    Case("compile_out_dir_parent_is_file", _compile_parent_is_file, ["file.txt/out", NOT_DIR]),
    Case("compile_input_is_plan", _compile_input_is_plan, ["loihi2_plan.json", "it is the input"]),
    Case("demo_json_out_is_checkpoint", _demo_json_is_checkpoint, ["d.pt", "it is the input"]),
    Case("demo_out_dir_parent_is_file", _demo_out_dir_parent_is_file, ["file.txt/build", NOT_DIR]),
    Case("demo_nir_is_directory", _demo_nir_is_directory, ["digits_resformer.nir", "Is a directory"]),
    Case("demo_json_out_inside_report", _demo_json_inside_report, ["demo.json", "replaced as a whole"]),
    Case("demo_report_dir_has_foreign_files", _demo_report_foreign_files, ["old-notes.md", "not part of"]),
]
