"""The shipped trained models of `demo` and the held-out split a checkpoint was trained for.

`digits` runs on scikit-learn's 8x8 digits split; `cifar` and `dvsg` on the data set their
training record names, re-generated (deterministically, data.generators.recorded) under
``data_dir`` and checked against the recorded labels before anything runs.

    >>> from resformer_deploy import api
    >>> from resformer_deploy.api.demo_split import demo_split
    >>> model = api.load("examples/digits/digits_resformer.pt")
    >>> split = demo_split(model, "examples/digits/digits_resformer.pt", "data")
    >>> len(split.y), split.source
    (359, 'digits held-out split')
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from resformer_deploy.errors import DeployError, InternalError
from resformer_deploy.model.checkpoint_records import DatasetRecord, EvaluationRecord

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass(frozen=True)
class DemoModel:
    checkpoint: Path
    lava_samples: int  # default samples on Lava (float, each lowering; and fixed point)
    batch_size: int    # PyTorch evaluation batch (the 64x64 attention maps bound dvsg's)
    dssa: str          # DSSA lowerings run on float Lava
    ladder_samples: int  # held-out samples of the drift ladder's fixed-point rung (0: all)


# dvsg at 64x64, T=16 (6.5 M neurons a step): the synaptic lowering's product neurons need ~43 GiB
# on float Lava even for one sample (the preflight estimate), so its demo runs fused; the ladder's
# per-neuron records of all 359 held-out samples would take 43.7 GiB (check_ladder_recording), so
# the ladder runs on 48 of them and the whole split streams through the emulator (evaluate); with 96
# the emulator rung's spike record and working memory (15.1 GiB, its estimate) did not fit beside
# the 7.9 GiB the ladder holds by then (budget 11.4 GiB on a 24 GiB machine)
DEMO_MODELS = {
    "digits": DemoModel(EXAMPLES / "digits" / "digits_resformer.pt", 20, 64, "both", 0),
    "cifar": DemoModel(EXAMPLES / "cifar_digits" / "cifar_digits_resformer.pt", 4, 64, "both", 0),
    "dvsg": DemoModel(EXAMPLES / "dvs_digits" / "dvs_digits_resformer.pt", 2, 16, "fused", 48),
}
DEFAULT_DIGITS_CHECKPOINT = DEMO_MODELS["digits"].checkpoint


@dataclass
class DemoSplit:
    x: Any             # torch.Tensor: the held-out inputs, preprocessed
    y: Any             # torch.Tensor: their labels
    source: str        # what they are
    calibration: Any = None  # flows.fixed_point.CalibrationData (None: the flow's choice, digits training)
    given: bool = False  # the inputs are handed to the drift ladder (else it takes the digits split itself)
    data: Any = None  # analysis.data_inputs.ModelData of a generated split (streamed by evaluate)


def _digits_split(checkpoint, ev: Optional[EvaluationRecord], check) -> DemoSplit:
    from resformer_deploy.data.digits import load_digits_split
    split = load_digits_split()
    check(len(split.y_test), "the digits held-out split")
    fp = ev.split.test_index_sha256 if ev is not None and ev.split is not None else None
    if fp and fp != split.fingerprint():
        raise DeployError(f"{checkpoint}: held-out split differs from the one recorded at training "
                          f"(index hash {fp[:12]} vs {split.fingerprint()[:12]})")
    return DemoSplit(split.x_test, split.y_test, "digits held-out split")


def _generated_split(ck, checkpoint, ev: EvaluationRecord, dataset: DatasetRecord, data_dir, calib_samples, check,
                     say) -> DemoSplit:
    from resformer_deploy.api.data import DataArgs, open_data
    from resformer_deploy.data.generators.recorded import ensure_generated, labels_sha256, recipe

    want = recipe(dataset.recipe, checkpoint)
    if ev.n_test is not None:  # the options checked before minutes of generation
        check(ev.n_test, f"{want['generator'].rsplit('.', 1)[-1]} (training record)")
    root = ensure_generated(want, Path(data_dir) / want["generator"].rsplit(".", 1)[-1], checkpoint, say=say)
    preset = (ev.preset.preset if ev.preset is not None else None) or "auto"
    args = DataArgs(data=str(root), preset=preset, calib_data=str(root), calib_split="train")
    md, cal = open_data(args, ck, calib_samples, True, say=say)
    if md is None:
        raise InternalError(f"{root}: a generated data set that opened as no data")
    source: Any = md.source  # data.sources.DataSource
    x, y, _ = md.take(len(source), "demo")
    want_labels = ev.test_label_sha256
    if want_labels and labels_sha256(y) != want_labels:
        raise DeployError(f"{checkpoint}: the labels of {source.describe()} differ from those recorded at "
                          f"training (sha256 {labels_sha256(y)[:12]} vs {want_labels[:12]})")
    return DemoSplit(x, y, md.describe(), cal, given=True, data=md)


def demo_split(ck, checkpoint, data_dir, calib_samples: int = 128, check=lambda n, what: None,
               say: Callable[[str], None] = lambda m: None) -> DemoSplit:
    """The held-out split a checkpoint was trained for: the digits split for a 1x8x8 digits
    model, else the generated data set its training record names. ``check(n, what)``: called
    with the split's size as soon as it is known (before any data is generated)."""
    c = ck.config
    ev = ck.evaluation  # typed, checked when the file was loaded (model/checkpoint_records.py)
    if (c.in_channels, c.img_size, c.num_classes) == (1, 8, 10):
        return _digits_split(checkpoint, ev, check)
    dataset = ev.dataset if ev is not None else None
    if ev is None or dataset is None or not dataset.generator:
        raise DeployError(f"{checkpoint}: variant '{ck.variant}' ({c.in_channels}x{c.img_size}x{c.img_size} input, "
                          f"{c.num_classes} classes); demo needs a model of the digits split (1x8x8 input, 10 "
                          f"classes) or one whose training record names a generated data set (evaluation.dataset."
                          f"generator), e.g. the shipped {', '.join(m.checkpoint.name for m in DEMO_MODELS.values())}")
    return _generated_split(ck, checkpoint, ev, dataset, data_dir, calib_samples, check, say)
