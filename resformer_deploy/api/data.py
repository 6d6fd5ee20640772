"""Data sets as model inputs for the API's jobs: a command's ``--data`` / ``--calib-data``
(analysis.data_inputs.DataArgs) opened and checked against a model, with what is used said
through a callback (the API prints nothing itself).

    >>> from resformer_deploy import api
    >>> model = api.load("examples/digits/digits_resformer.pt")
    >>> data, calibration = api.open_data(api.DataArgs(data="digits"), model)
    >>> len(data.source), calibration
    (359, None)
"""
from typing import Callable, Optional, Tuple

from resformer_deploy.analysis.data_inputs import (DataArgs, ModelData, calibration_data, evaluation_data,
                                                   refuse_calibration)

__all__ = ["DataArgs", "ModelData", "open_data"]


def open_data(args: DataArgs, model, calib_samples: int = 128, quantizes: bool = False, why_not: str = "",
              say: Callable[[str], None] = lambda m: None, config=None, variant: Optional[str] = None
              ) -> Tuple[Optional[ModelData], object]:
    """(evaluation data or None, flows.fixed_point.CalibrationData or None) of ``args`` for
    ``model`` (a loaded checkpoint; or ``config`` and ``variant`` for a graph read from NIR).

    ``quantizes``: the job calibrates a quantization (else ``calib_data`` is refused with
    ``why_not``, never silently unused). Without ``data`` / ``calib_data`` the job keeps its own
    inputs and the flow's calibration choice."""
    cfg, var = (model.config, model.variant) if model is not None else (config, str(variant))
    md = evaluation_data(args, cfg, var)
    if md is not None:
        say(f"data: {md.describe()}")
        mapping = getattr(md.source, "class_mapping", None)
        if mapping is not None:
            say(mapping.line())
    if not quantizes:
        refuse_calibration(args, why_not)
        return md, None
    cal = calibration_data(args, cfg, var, calib_samples, md)
    say(f"calibration data: {cal.source}" if cal is not None else
        "calibration data: none given (--calib-data): the flow's choice, digits training split or random inputs")
    return md, cal
