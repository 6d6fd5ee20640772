"""The one-line DeployError a call raises (tests of readers and plans)."""
import pytest

from resformer_deploy.errors import DeployError


def error(fn, *args, **kwargs) -> str:
    """The message of the DeployError ``fn(*args, **kwargs)`` raises, checked to be one line."""
    with pytest.raises(DeployError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    return msg
