"""Helpers for Lava tests."""
from resformer_deploy.util.processes import descendants  # noqa: F401
