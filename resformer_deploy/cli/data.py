"""``--data`` / ``--calib-data`` for the commands of cli/main.py and cli/compile.py: open and check
the data sets for a model, say what is used, and hand back the inputs and calibration data."""
import click

from resformer_deploy.analysis.data_inputs import calibration_data, evaluation_data, refuse_calibration


def open_data_args(args, cfg, variant, calib_samples: int, quantizes: bool, why_not: str = "", out=click.echo):
    """(evaluation ModelData or None, CalibrationData or None) of a command's data options.

    ``quantizes``: the command calibrates a quantization (else ``--calib-data`` is refused with
    ``why_not``, never silently unused). Says which data is used; without ``--data`` / ``--calib-data``
    the command's own inputs and the flow's calibration choice stay (and are said by the command)."""
    md = evaluation_data(args, cfg, variant)
    if md is not None:
        out(f"data: {md.describe()}")
        if md.source.class_mapping is not None:
            out(md.source.class_mapping.line())
    if not quantizes:
        refuse_calibration(args, why_not)
        return md, None
    cal = calibration_data(args, cfg, variant, calib_samples, md)
    out(f"calibration data: {cal.source}" if cal is not None else
        "calibration data: none given (--calib-data): the flow's choice, digits training split or random inputs")
    return md, cal


def ladder_inputs(md, eval_samples: int):
    """The drift ladder's evaluation inputs (x, y, description) from ``--data`` (``eval_samples`` 0:
    all of it), or None for its own (digits held-out split or random inputs)."""
    if md is None:
        return None
    n = eval_samples or len(md.source)
    x, y, _ = md.take(n, "--eval-samples")
    return x, y, md.describe()


def calibration_json(prepared) -> dict:
    """What calibrated a prepared quantized network (JSON), or None when nothing was quantized."""
    qn = prepared.get("quantized_net")
    return None if qn is None else qn.calibration
