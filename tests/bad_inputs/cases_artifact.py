"""Bad deployment artifacts and `deploy` arguments: `deploy --artifact FILE` on a file that is not
a readable artifact of a version this toolchain reads (targets/artifact/store.py read_artifact)
is one line naming the file and the problem; nothing is written."""
import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tests.bad_inputs import Case, args
from tests.conftest import DIGITS_CKPT

D = str(DIGITS_CKPT)
_GOOD = {}


def _good() -> Path:
    """A valid digits artifact, written once per session outside any case's directory."""
    if "path" not in _GOOD:
        from exporters.torch_to_nir import export_model
        from resformer_deploy.flows import prepare
        from resformer_deploy.model.checkpoint import load_checkpoint
        from targets.artifact import artifact_meta, write_artifact
        g = export_model(load_checkpoint(DIGITS_CKPT).model)
        q = prepare("loihi2", g, dssa="synaptic", quantize=True, calib_samples=16)["quantized_net"]
        home = tempfile.mkdtemp(prefix="bad-artifacts-")
        atexit.register(shutil.rmtree, home, ignore_errors=True)  # the session's copy, gone with it
        path = Path(home) / "good.h5"
        write_artifact(path, q, g, artifact_meta(g, q, D))
        _GOOD["path"] = path
    return _GOOD["path"]


def _edited(tmp, edit):
    import h5py
    p = tmp / "a.h5"
    shutil.copy(_good(), p)
    with h5py.File(p, "r+") as f:
        edit(f)
    return ["deploy", "--artifact", p]


def _text(tmp):
    (tmp / "a.h5").write_text("not an artifact\n")
    return ["deploy", "--artifact", tmp / "a.h5"]


def _truncated(tmp):
    data = _good().read_bytes()
    (tmp / "a.h5").write_bytes(data[: len(data) // 3])
    return ["deploy", "--artifact", tmp / "a.h5"]


def _corrupt(tmp):
    data = _good().read_bytes()
    (tmp / "a.h5").write_bytes(data[:8] + b"\xff" * (len(data) - 8))
    return ["deploy", "--artifact", tmp / "a.h5"]


def _foreign(tmp):
    import h5py
    with h5py.File(tmp / "a.h5", "w") as f:
        f.create_dataset("weights", data=np.arange(4))
    return ["deploy", "--artifact", tmp / "a.h5"]


def _newer(tmp):
    return _edited(tmp, lambda f: f.attrs.modify("format_version", 2))


def _no_version(tmp):
    return _edited(tmp, lambda f: f.attrs.__delitem__("format_version"))


def _missing_layer(tmp):
    return _edited(tmp, lambda f: f["layer"].pop(str(len(f["layer"]) - 1)))


def _bad_weight(tmp):
    def edit(f):
        g = next(f["layer"][k] for k in f["layer"] if f["layer"][k]["type"][()] == b"x-conv")
        w = g["weight"][()]
        del g["weight"]
        g.create_dataset("weight", data=np.full_like(w, 300))  # outside the 8-bit mantissa range
    return _edited(tmp, edit)


def _meta_missing(tmp):
    return _edited(tmp, lambda f: f["meta"].attrs.__delitem__("T"))


CASES = [
    Case("deploy_artifact_missing", args("deploy", "--artifact", "{tmp}/none.h5"), ["none.h5", "no such file"]),
    Case("deploy_artifact_not_hdf5", _text, ["a.h5", "not an HDF5 file"]),
    Case("deploy_artifact_truncated", _truncated, ["a.h5", "corrupt or truncated HDF5 file"]),
    Case("deploy_artifact_corrupt", _corrupt, ["a.h5", "corrupt"]),
    Case("deploy_artifact_foreign_hdf5", _foreign, ["a.h5", "not a resformer-deploy artifact"]),
    Case("deploy_artifact_newer_format", _newer, ["a.h5", "format version 2 is newer", "upgrade"]),
    Case("deploy_artifact_no_format_version", _no_version, ["a.h5", "no valid format_version"]),
    Case("deploy_artifact_missing_layer", _missing_layer, ["a.h5", "have no layer group"]),
    Case("deploy_artifact_weight_out_of_range", _bad_weight, ["a.h5", "layer/", "weight mantissas"]),
    Case("deploy_artifact_meta_missing", _meta_missing, ["a.h5", "meta attribute 'T' missing"]),
    Case("deploy_model_and_artifact", args("deploy", D, "--artifact", "{tmp}/x.h5"), ["not both"]),
    Case("deploy_nothing", args("deploy"), ["not neither"]),
    Case("deploy_model_without_output", args("deploy", D), ["-o/--output"]),
    Case("deploy_artifact_with_output", args("deploy", "--artifact", D, "-o", "{tmp}/y.h5"), ["is read, not written"]),
    Case("deploy_output_is_input", args("deploy", D, "-o", D), ["it is the input"]),
    Case("deploy_model_missing", args("deploy", "{tmp}/none.pt", "-o", "{tmp}/o.h5"), ["none.pt"]),
]
