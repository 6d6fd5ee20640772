"""How a command's failure is shown: a user error in one line (exit 2), a bug (InternalError or
any unexpected exception) in one line saying so (exit 1); under ``--debug`` (or
RESFORMER_DEPLOY_DEBUG=1) the traceback first, for both. Used by cli.main's Group.invoke."""
import traceback

import click

from resformer_deploy.errors import DeployError, internal_error_line, one_line

# click's own control flow, raised inside a command body (ctx.exit, click.BadParameter, Abort):
# Group.main handles these; they are neither user errors of ours nor bugs
CLICK_CONTROL = (click.exceptions.Exit, click.ClickException, click.exceptions.Abort)


def debug_enabled(ctx: click.Context) -> bool:
    return bool(ctx.find_root().params.get("debug"))


def _print_traceback(e: BaseException) -> None:
    click.echo("".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip(), err=True)
    remote = getattr(e, "remote_traceback", "")
    if remote:  # the exception arose in another process (a Lava worker): its own traceback too
        click.echo("The exception in the other process:\n" + remote.rstrip(), err=True)


def report_failure(ctx: click.Context, e: Exception) -> int:
    """Print ``e`` as the CLI states it; return the exit code."""
    if debug_enabled(ctx):
        _print_traceback(e)
    if isinstance(e, DeployError):
        click.echo(f"error: {one_line(e)}", err=True)
        return e.exit_code
    click.echo(internal_error_line(e), err=True)
    return 1
