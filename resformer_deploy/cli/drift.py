"""`resformer-deploy verify --target loihi2-sim|loihi2-emu`: the drift ladder per DSSA lowering,
printed, optionally written as JSON, and failed (exit 2) when fixed point does not hold up."""
import click

from resformer_deploy.errors import DeployError
from resformer_deploy.reporting.drift import ladder_text
from resformer_deploy.reporting.tables import write_json


def run_drift(ck, checkpoint, lowerings, lava_samples, eval_samples, calib_samples, seed, json_out, lava=True):
    from resformer_deploy.analysis.drift import drift_ladder

    reports = []
    for low in lowerings:
        click.echo(f"verify {ck.variant} fixed point ({low} DSSA): drift ladder", err=True)
        rep = drift_ladder(ck.model, eval_samples, lava_samples if lava else 0, calib_samples, low, seed=seed,
                           progress=lambda m: click.echo(f"  {m} ...", err=True), lava=lava)
        click.echo(ladder_text(rep))
        reports.append(rep)
    if json_out:
        write_json(json_out, {"checkpoint": checkpoint, "variant": ck.variant, "ladders": reports})
        click.echo(f"wrote {json_out}")
    bad = [why for rep in reports for why in rep.failures()]
    if bad:
        raise DeployError("fixed-point verification failed: " + "; ".join(bad))
