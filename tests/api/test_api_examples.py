"""The usage examples in the docstrings of resformer_deploy.api and of every job module are true:
run as doctests (in a temporary directory holding a link to examples/, where they write their
files). api/report.py's example (a whole report, ~30 s) is checked by test_api_report.py's
figures instead; api/sizing.py's needs a target and graph of the caller's (marked SKIP)."""
import doctest
import importlib
import pkgutil
import re

import pytest

import resformer_deploy.api
from tests.conftest import REPO

NOT_RUN = {"report", "sizing"}  # see above
MODULES = sorted(m.name for m in pkgutil.iter_modules(resformer_deploy.api.__path__) if m.name not in NOT_RUN)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    (tmp_path / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", MODULES)
def test_module_example_is_true(name, in_tmp):
    mod = importlib.import_module(f"resformer_deploy.api.{name}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS, report=True)
    assert result.attempted >= 2 and result.failed == 0, result


def test_package_example_is_true(in_tmp):
    """The example of resformer_deploy/api/__init__.py (a literal block, not a doctest) run as
    written; its printed line is the one its comment shows."""
    import resformer_deploy.api as api_pkg
    block = api_pkg.__doc__.split("::", 1)[1].split("\n\n")[1]
    code = "\n".join(line[4:] for line in block.splitlines())
    want = re.search(r"print\(.*\)  # (.*):", code).group(1)
    printed = []
    exec(code, {"print": lambda *a: printed.append(" ".join(map(str, a)))})
    assert printed == [want]
