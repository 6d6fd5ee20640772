"""`resformer-deploy` command line.

Every user error (``DeployError``) is printed as one line ``error: ...`` with
exit code 2; a bug (``InternalError`` or any other exception) as one line
``error: internal error: ...`` with exit code 1, its traceback under ``--debug``
(cli.failures); Ctrl-C exits 130. Machine-readable output: ``--json``.

This module holds the group, its signal and error handling and the list of commands; each
command is a module of cli/ (option parsing and rendering) over a job of resformer_deploy.api.
"""
import signal
import sys

import click

from resformer_deploy import __version__
from resformer_deploy.cli.failures import CLICK_CONTROL, report_failure
from resformer_deploy.errors import DEBUG_ENV, one_line


class Terminated(BaseException):
    """SIGTERM/SIGHUP turned into an exception, so every ``finally`` (temp files, Lava workers)
    runs as it does for Ctrl-C; Python's default for these signals exits without cleanup."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received = []  # signals seen: an exception raised inside a __del__/GC callback is swallowed


def _raise_terminated(signum, _frame):
    _received.append(signum)
    raise Terminated(signum)


class Group(click.Group):
    def list_commands(self, ctx):
        """`deploy` first (what a user of a deployment tool looks for), then the rest by name."""
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: (n != "deploy", n))

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Click's usage errors (bad option values, missing arguments) as one line ``error: ...``
        with exit 2, like every other user error, instead of its Usage/Try/Error block.

        Runs click's main with ``standalone_mode=False``: it then raises ClickException and Abort
        and *returns* the code of an Exit (``--help``, ``--version``, ``ctx.exit`` in ``invoke``
        below) instead of calling sys.exit (click/core.py, ``Command.main``). CliRunner.invoke and
        the console script both call ``main()``, so both get this handling."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:  # bare `resformer-deploy`: the help, as click shows it
            e.show()
            sys.exit(e.exit_code)
        except click.UsageError as e:  # BadParameter, MissingParameter, NoSuchOption, ...
            cmd = e.ctx.command_path if e.ctx else "resformer-deploy"
            click.echo(f"error: {cmd}: {one_line(e.format_message())} (see '{cmd} --help')", err=True)
            sys.exit(2)
        except click.ClickException as e:  # e.g. FileError
            click.echo(f"error: {one_line(e.format_message())}", err=True)
            sys.exit(e.exit_code)
        except click.Abort as e:  # Ctrl-C / EOF while click itself prompts or parses
            if isinstance(e.__context__, KeyboardInterrupt):
                click.echo("error: interrupted (SIGINT)", err=True)
                sys.exit(130)
            click.echo("error: aborted", err=True)
            sys.exit(1)
        # our commands return None; an int is the code of an Exit that click returned
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx):
        caught = (signal.SIGTERM, signal.SIGHUP)
        _received.clear()
        previous = {s: signal.signal(s, _raise_terminated) for s in caught}
        try:
            rv = super().invoke(ctx)
            if _received:  # the exception was swallowed somewhere: the user still asked to stop
                raise Terminated(_received[0])
            return rv
        except CLICK_CONTROL:  # ctx.exit, click.BadParameter, ... in a command: main() handles them
            raise
        except Exception as e:  # a DeployError (user error, exit 2), or a bug (exit 1)
            ctx.exit(report_failure(ctx, e))
        except KeyboardInterrupt:
            click.echo("error: interrupted (SIGINT)", err=True)
            ctx.exit(130)
        except Terminated as e:
            click.echo(f"error: terminated by {e}", err=True)
            ctx.exit(128 + e.signum)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


@click.group("resformer-deploy", cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="resformer-deploy")
@click.option("--debug", is_flag=True, envvar=DEBUG_ENV, show_envvar=True,
              help="On an error, print its traceback before the one-line message.")
def main(debug):
    """Deploy trained SpikingResformer models to neuromorphic targets.

    Pipeline: checkpoint -> model -> NIR -> passes -> Lava -> target -> report.
    """


from resformer_deploy.cli.compile import compile_cmd  # noqa: E402
from resformer_deploy.cli.demo import demo  # noqa: E402
from resformer_deploy.cli.deploy import deploy_cmd  # noqa: E402
from resformer_deploy.cli.drift import drift_cmd  # noqa: E402
from resformer_deploy.cli.evaluate import evaluate_cmd  # noqa: E402
from resformer_deploy.cli.export import export  # noqa: E402
from resformer_deploy.cli.info import info  # noqa: E402
from resformer_deploy.cli.inspect import inspect  # noqa: E402
from resformer_deploy.cli.ops import ops  # noqa: E402
from resformer_deploy.cli.report import report  # noqa: E402
from resformer_deploy.cli.simulate import simulate  # noqa: E402
from resformer_deploy.cli.verify import verify  # noqa: E402
from resformer_deploy.cli.targets import targets_cmd  # noqa: E402
main.add_command(compile_cmd)
main.add_command(demo)
main.add_command(deploy_cmd)
main.add_command(drift_cmd)
main.add_command(evaluate_cmd)
main.add_command(export)
main.add_command(info)
main.add_command(inspect)
main.add_command(ops)
main.add_command(report)
main.add_command(simulate)
main.add_command(verify)
main.add_command(targets_cmd)


if __name__ == "__main__":
    main()
