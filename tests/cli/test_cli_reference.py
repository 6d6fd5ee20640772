"""docs/cli.md is the generated CLI reference (resformer_deploy/cli/reference.py): it must equal
the generator's output, cover every command and option that ``--help`` shows, and not depend on
the terminal width."""
import difflib
import os
import re
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from resformer_deploy.cli.main import main
from resformer_deploy.cli.reference import REGENERATE, render

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cli.md"


def test_docs_cli_md_is_up_to_date():
    assert DOC.is_file(), f"docs/cli.md is missing: run `{REGENERATE}`"
    have, want = DOC.read_text(encoding="utf-8"), render()
    diff = [line for line in difflib.unified_diff(have.splitlines(), want.splitlines(), lineterm="",
                                                  n=0) if line[:1] in "+-"][2:8]
    assert have == want, (f"docs/cli.md is stale (the click commands changed): run `{REGENERATE}`; "
                          "first differences: " + " / ".join(diff))


def _sections(text):
    """Command path -> its section of the Markdown reference."""
    parts = re.split(r"^#+ `([^`]+)`$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_every_command_and_option_of_help_is_in_the_reference():
    # independent of the generator: click's own --help output of every command
    sections = _sections(render())
    runner = CliRunner()
    names = sorted(main.commands)
    assert len(names) >= 10
    for name in names:
        path = f"resformer-deploy {name}"
        assert path in sections, f"{path} has no section"
        shown = runner.invoke(main, [name, "--help"], terminal_width=200).output
        flags = set(re.findall(r"^\s+((?:-\w, )?--[\w-]+)", shown, flags=re.M))
        assert flags, f"no options parsed from {path} --help"
        for flag in flags:
            assert f"`{flag}" in sections[path], f"{path}: option {flag} missing from docs/cli.md"
        usage = shown.splitlines()[0].removeprefix("Usage: ")
        assert usage in sections[path]


def test_output_does_not_depend_on_the_terminal_width():
    code = "from resformer_deploy.cli.reference import render; import sys; sys.stdout.write(render())"
    outs = []
    for columns in ("40", "250"):
        env = dict(os.environ, COLUMNS=columns)
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, cwd=ROOT, check=True)
        outs.append(p.stdout)
    assert outs[0] == outs[1] == render()


def test_rendering_of_choices_literal_blocks_and_sub_groups():
    @click.group()
    def tool():
        """A tool."""

    @tool.group()
    def sub():
        """Nested commands."""

    @sub.command()
    @click.argument("path")
    @click.option("--mode", type=click.Choice(["a", "b"]), default="a", show_default=True,
                  help="Mode.")
    def run(path, mode):
        """Run it.

        \b
        keep   these
        lines  apart
        """

    text = render(tool, "tool")
    assert "### `tool sub`" in text and "#### `tool sub run`" in text
    assert "tool sub run [OPTIONS] PATH" in text
    assert "| `--mode [a\\|b]` | Mode.  [default: a] |" in text
    assert "```text\nkeep   these\nlines  apart\n```" in text
    assert "`PATH`" not in text  # arguments are in the usage line, not in the option table
