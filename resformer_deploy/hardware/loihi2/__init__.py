"""Loihi 2 resource mapping: per-core limits, partitioning and design-rule checks."""
from resformer_deploy.hardware.loihi2.drc import DRC_CHECKS, run_drc  # noqa: F401
from resformer_deploy.hardware.loihi2.core_plan import CorePlan  # noqa: F401
from resformer_deploy.hardware.loihi2.partition import map_to_loihi2  # noqa: F401
