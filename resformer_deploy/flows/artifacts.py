"""What ``flows.prepare`` returns: the flow's artifacts with typed accessors for the common ones,
read instead of string keys (``prepared.quantized_net``, not ``prepared["quantized_net"]``);
outside the flows and passes no code reads an artifact by its name (tests/test_no_artifact_keys.py).
A Prepared is what targets receive as targets.base.FlowArtifacts.

Here, not in passes/manager.py, because the types belong to later stages (Lava plan, fixed
point, Loihi 2 core plan) that the pass manager below them does not import."""
from typing import Any, Dict, List, Optional, Tuple

import nir

from resformer_deploy.fixed_point.network import QuantNet
from resformer_deploy.flows.fixed_point import CalibrationData
from resformer_deploy.hardware.loihi2.core_plan import CorePlan
from resformer_deploy.lava.plan import LavaPlan
from resformer_deploy.passes.manager import Artifacts


class Prepared(Artifacts):
    """A flow's artifacts; every accessor is None when the flow did not make it."""

    @classmethod
    def sizing(cls, plan: LavaPlan) -> "Prepared":
        """The plan alone: what a fixed-point target is sized from before calibration (a quantized
        network has its plan's sizes)."""
        return cls(lava_plan=plan)

    @property
    def nir_graph(self) -> nir.NIRGraph:
        return self["nir_graph"]

    @property
    def lava_plan(self) -> Optional[LavaPlan]:
        return self.get("lava_plan")

    @property
    def calibration_inputs(self) -> Optional[CalibrationData]:
        return self.get("calibration_inputs")

    @property
    def quantized_net(self) -> Optional[QuantNet]:
        return self.get("quantized_net")

    @property
    def core_plan(self) -> Optional[CorePlan]:
        return self.get("core_plan")

    @property
    def product_lowerings(self) -> Optional[Dict[str, Any]]:
        return self.get("product_lowerings")

    @property
    def drc(self) -> Optional[Tuple[List[str], List[str]]]:
        return self.get("drc")

    @property
    def stock_models(self) -> Optional[List[str]]:
        return self.get("stock_models")
