"""Class folders that cannot be labelled (issue 30, resformer_deploy/data/imagenet_classes.py): a
WordNet-ID-like folder outside ImageNet-1k, WNID folders mixed with others, and bad --class-map
files; each refused in one line naming the folder, entry or file, before any evaluation."""
import functools
import os
import tempfile

import numpy as np

from tests.bad_inputs import Case, args
from tests.conftest import DIGITS_CKPT

D = str(DIGITS_CKPT)


@functools.lru_cache(maxsize=1)
def _imagenet_ckpt_bytes() -> bytes:
    """A tiny ti-topology model with the 1000 ImageNet classes, built once per run."""
    from resformer_deploy.model.checkpoint import save_checkpoint
    from tests.support.small_models import small_model
    with tempfile.TemporaryDirectory() as d:
        save_checkpoint(os.path.join(d, "ti1k.pt"), small_model("ti32k"))
        with open(os.path.join(d, "ti1k.pt"), "rb") as f:
            return f.read()


def _imagenet_ckpt(tmp):
    p = tmp / "ti1k.pt"
    p.write_bytes(_imagenet_ckpt_bytes())
    return str(p)


def _folders(tmp, names):
    from resformer_deploy.data.writers import write_image_folder
    rng = np.random.RandomState(0)
    return write_image_folder(os.path.join(tmp, "imgs"), [rng.randint(0, 256, (8, 8, 3)) for _ in names],
                              list(range(len(names))), list(names), fmt="PNG")


def _evaluate(names, class_map=None):
    def setup(tmp):
        argv = ["evaluate", _imagenet_ckpt(tmp), "--data", _folders(tmp, names)]
        if class_map is not None:
            (tmp / "map.txt").write_text(class_map)
            argv += ["--class-map", str(tmp / "map.txt")]
        return argv
    return setup


CASES = [
    Case("wnid_not_in_imagenet_1k", _evaluate(["n01440764", "n12345678"]),
         ["class folder n12345678 looks like a WordNet ID but is not one of the 1000 ImageNet-1k classes"]),
    Case("wnid_mixed_with_other_folders", _evaluate(["n01440764", "n01443537", "cats"]),
         ["mixed class folders, 2 named by ImageNet WordNet ID (n01440764, n01443537) and 1 not (cats)",
          "--class-map"]),
    Case("class_map_index_out_of_range", _evaluate(["cats", "dogs"], "cats 0\ndogs 1000\n"),
         ["--class-map", "map.txt: index out of range 0..999 (the classifier has 1000 classes): dogs 1000"]),
    Case("class_map_misses_a_folder", _evaluate(["cats", "dogs"], "cats 0\nbirds 1\n"),
         ["map.txt: class folder(s) of ImageFolder", "not in the map: dogs (1 of 2)"]),
    Case("class_map_bad_line", _evaluate(["cats", "dogs"], "cats 0\ndogs\n"),
         ["map.txt line 2: expected 'folder index', got 'dogs'"]),
    Case("class_map_missing_file", args("evaluate", D, "--data", "digits", "--class-map", "{tmp}/none.txt"),
         ["--class-map", "none.txt: cannot read: No such file or directory"]),
    Case("class_map_on_labelled_data", lambda tmp: (tmp / "m.txt").write_text("a 0\n") and
         ["evaluate", D, "--data", "digits", "--class-map", str(tmp / "m.txt")],
         ["digits (scikit-learn, test split)", "--class-map applies to ImageFolder and frames directories"]),
    Case("class_map_without_data", lambda tmp: (tmp / "m.txt").write_text("a 0\n") and
         ["verify", D, "--class-map", str(tmp / "m.txt")], ["m.txt: only with --data"]),
]
