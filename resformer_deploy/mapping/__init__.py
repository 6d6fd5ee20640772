"""Loihi 2 resource mapping: per-core limits, partitioning and design-rule checks."""
from .drc import DRC_CHECKS, run_drc  # noqa: F401
from .partition import CorePlan, map_to_loihi2  # noqa: F401
