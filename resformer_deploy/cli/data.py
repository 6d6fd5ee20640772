"""``--data`` / ``--calib-data`` for the commands of cli/main.py and cli/compile.py: open and check
the data sets for a model, say what is used, and hand back the inputs and calibration data."""
import click


def open_data_args(args, cfg, variant, calib_samples: int, quantizes: bool, why_not: str = "", out=click.echo):
    """(evaluation ModelData or None, CalibrationData or None) of a command's data options, what
    is used said on ``out`` (resformer_deploy.api.data.open_data)."""
    from resformer_deploy.api.data import open_data
    return open_data(args, None, calib_samples, quantizes, why_not, say=out, config=cfg, variant=variant)
