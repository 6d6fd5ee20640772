"""The CLI reference (docs/cli.md), generated from the click commands themselves.

    python -m resformer_deploy.cli.reference > docs/cli.md

Every command of the ``resformer-deploy`` group (and of any sub-group) is rendered as Markdown:
its usage line, its help text and one table row per option, as ``--help`` shows them.
tests/cli/test_cli_reference.py fails when docs/cli.md differs from this output, so the
reference cannot drift from the code. The output must not depend on the terminal: help text is
taken from the parameters (never wrapped by click's formatter) and the context gets a fixed width
anyway, so ``COLUMNS`` or a narrow terminal change nothing.
"""
import inspect
import sys

import click

WIDTH = 100  # fixed formatter width: click would otherwise read the terminal's
REGENERATE = "python -m resformer_deploy.cli.reference > docs/cli.md"


def _context(command: click.Command, name: str, parent: click.Context | None) -> click.Context:
    # the command's own context_settings (the group's help_option_names), as make_context applies
    # them: click caches each command's help option with the names of the first context it sees
    settings = {k: v for k, v in command.context_settings.items()
                if k not in ("terminal_width", "max_content_width")}
    return click.Context(command, info_name=name, parent=parent, terminal_width=WIDTH,
                         max_content_width=WIDTH, **settings)


def _paragraphs(text: str) -> list[str]:
    """Click help text as Markdown paragraphs. A paragraph click must not re-wrap (``\\b``) is a
    literal block; the others are joined into one line each (Markdown re-flows them anyway)."""
    out = []
    for para in inspect.cleandoc(text).split("\n\n"):
        lines = para.splitlines()
        if lines and lines[0].strip() == "\b":
            out.append("```text\n" + "\n".join(lines[1:]) + "\n```")
        else:
            out.append(" ".join(line.strip() for line in lines))
    return out


def _cell(text: str) -> str:
    # a pipe would end the table cell (GitHub Markdown accepts \| inside code spans too)
    return text.replace("|", "\\|").replace("\n", " ")


def _command(command: click.Command, ctx: click.Context, level: int) -> list[str]:
    path = ctx.command_path
    lines = [f"{'#' * level} `{path}`", ""]
    usage = " ".join([path, *command.collect_usage_pieces(ctx)])
    lines += ["```text", usage, "```", ""]
    if command.help:
        for para in _paragraphs(command.help):
            lines += [para, ""]
    # arguments are in the usage line; click gives them no help text
    rows = [p.get_help_record(ctx) for p in command.get_params(ctx) if isinstance(p, click.Option)]
    rows = [r for r in rows if r is not None]
    if rows:
        lines += ["| option | description |", "|---|---|"]
        lines += [f"| `{_cell(opts)}` | {_cell(help_)} |" for opts, help_ in rows]
        lines.append("")
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            lines += _command(sub, _context(sub, name, ctx), level + 1)
    return lines


def render(group: click.Group | None = None, name: str = "resformer-deploy") -> str:
    """The Markdown reference of ``group`` (default: the resformer-deploy CLI)."""
    if group is None:
        from resformer_deploy.cli.main import main as group
    header = [
        "# Command-line reference",
        "",
        f"Generated from the click commands by `{REGENERATE}`; do not edit by hand "
        "(tests/cli/test_cli_reference.py fails when this file is stale). The same text is "
        "printed by `resformer-deploy COMMAND --help`.",
        "",
    ]
    body = _command(group, _context(group, name, None), 2)
    return "\n".join(header + body).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
