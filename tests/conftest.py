from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DIGITS_CKPT = REPO / "examples" / "digits" / "digits_resformer.pt"


@pytest.fixture
def digits_ckpt():
    assert DIGITS_CKPT.exists(), f"shipped checkpoint missing: {DIGITS_CKPT}"
    return DIGITS_CKPT


@pytest.fixture(scope="module")
def ck():
    """The shipped digits checkpoint, loaded once per test module."""
    from resformer_deploy.model.checkpoint import load_checkpoint
    return load_checkpoint(DIGITS_CKPT)


@pytest.fixture(scope="module")
def digits_heldout(ck):
    """The digits model's held-out split as ``--data digits`` opens it."""
    from resformer_deploy.analysis.data_inputs import open_data
    return open_data("digits", ck.config, ck.variant)
