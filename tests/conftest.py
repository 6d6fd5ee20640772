from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DIGITS_CKPT = REPO / "examples" / "digits" / "digits_resformer.pt"


@pytest.fixture
def digits_ckpt():
    assert DIGITS_CKPT.exists(), f"shipped checkpoint missing: {DIGITS_CKPT}"
    return DIGITS_CKPT
