"""The usage examples in the docstrings of the evaluate, compile, deploy, drift, demo and data jobs
(resformer_deploy/api/<job>.py) are true: run as doctests in a temporary directory holding a link
to examples/ (where they write their files), as tests/api/test_api_examples.py does for the others."""
import doctest
import importlib

import pytest

from tests.conftest import REPO

MODULES = ["data", "evaluate", "compile", "deploy", "drift", "demo", "demo_split"]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    (tmp_path / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", MODULES)
def test_module_example_is_true(name, in_tmp):
    mod = importlib.import_module(f"resformer_deploy.api.{name}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS, report=True)
    assert result.attempted >= 3 and result.failed == 0, result
