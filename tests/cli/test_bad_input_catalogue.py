"""Runs every case of tests/bad_inputs: exit 2, exactly one line ``error: ...`` containing the
expected fragments, no traceback, and no file created or left behind in the case's directory."""
import pytest
from click.testing import CliRunner

from resformer_deploy.cli.main import main
from tests.bad_inputs import cases_artifact, cases_classes, cases_data, cases_inputs, cases_outputs, cases_outputs2
from tests.bad_inputs import cases_engines

CASES = cases_inputs.CASES + cases_outputs.CASES + cases_classes.CASES + cases_outputs2.CASES + cases_data.CASES + cases_artifact.CASES + cases_engines.CASES


def _tree(root):
    return {p.relative_to(root): (p.stat().st_size if p.is_file() else None) for p in root.rglob("*")}


def test_catalogue_is_large_and_names_are_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, tmp_path):
    argv = [str(a) for a in case.setup(tmp_path)]
    before = _tree(tmp_path)
    r = case.invoke(argv) if hasattr(case, "invoke") else CliRunner().invoke(main, argv, env=case.env or None)
    assert r.exit_code == 2, (r.exit_code, r.output, r.stderr, r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr + r.output
    for fragment in case.expect:
        assert fragment in lines[0], (fragment, lines[0])
    assert _tree(tmp_path) == before  # nothing written, nothing half-written, inputs untouched
