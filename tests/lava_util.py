"""Helpers for Lava tests."""
from resformer_deploy.proc_util import descendants  # noqa: F401
